"""`pg_validate` on a real streaming migration: no false difference under live writes; a damaged target
(row deleted, value changed, extra row, TOASTed value changed, keyless duplicate removed) is named down
to keys and columns by the row diff and fails the GE checkpoint; the CLI's `compare` prints the same
keys; after `resync` everything validates again, and the report is written."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import psycopg
import pytest
from harness import (
    SOURCE_PORT,
    TARGET_PORT,
    ConcurrentWriter,
    airflow_api,
    conninfo,
    endpoint,
    override_alert_thresholds,
    run_dag,
    run_other_dag,
    tear_down_migration,
    wait_until_identical,
)

from devtools.databases import drop_database, recreate_database
from pgmigrate.cli.airflow_api import put_postgres_connection
from pgmigrate.control.state import MigrationStateStore
from pgmigrate.core.endpoints import PgEndpoint

MIGRATION_ID = "val-test"
SRC_DB, DST_DB = "val_src", "val_dst"
REPO = Path(__file__).resolve().parents[2]
STORE = MigrationStateStore(PgEndpoint("127.0.0.1", 5435, "migration_control", "postgres", "postgres"))

SCHEMA = """
CREATE TYPE mood AS ENUM ('calm', 'busy');
CREATE TABLE accounts (id int PRIMARY KEY, balance bigint NOT NULL, note text, mood mood NOT NULL DEFAULT 'calm');
INSERT INTO accounts SELECT g, g * 10, 'n' || g, 'calm' FROM generate_series(1, 2000) g;
CREATE TABLE docs (id int PRIMARY KEY, body text NOT NULL, owner int REFERENCES accounts (id),
                   body_length int GENERATED ALWAYS AS (length(body)) STORED);  -- resync must leave it out
INSERT INTO docs SELECT g, repeat(md5(g::text), 200), g FROM generate_series(1, 50) g;
CREATE TABLE audit (at timestamptz NOT NULL DEFAULT clock_timestamp(), what text);
ALTER TABLE audit REPLICA IDENTITY FULL;
INSERT INTO audit (what) VALUES ('dup'), ('dup'), ('one');
CREATE TABLE ticks (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, at timestamptz NOT NULL DEFAULT now());
"""


def live_writes(i: int) -> list[tuple[str, tuple]]:
    return [
        ("UPDATE accounts SET balance = balance + 1 WHERE id = %s", (i % 1500 + 1,)),
        ("INSERT INTO ticks DEFAULT VALUES", ()),
    ]


def _reset() -> None:
    tear_down_migration(MIGRATION_ID, SRC_DB, DST_DB)


@pytest.fixture(scope="module")
def streaming_migration():
    api = airflow_api()
    # This test damages the target on purpose: the monitor must not halt the migration for it (data loss).
    override_alert_thresholds(api, MIGRATION_ID, {"halt_on_data_loss": False})
    _reset()
    recreate_database(endpoint(SOURCE_PORT, SRC_DB))
    recreate_database(endpoint(TARGET_PORT, DST_DB))
    with psycopg.connect(conninfo(SOURCE_PORT, SRC_DB), autocommit=True) as conn:
        conn.execute(SCHEMA)
    put_postgres_connection(api, "val_source", endpoint(SOURCE_PORT, SRC_DB))
    put_postgres_connection(api, "val_target", endpoint(TARGET_PORT, DST_DB))
    run_id, run, states = run_dag(
        api, {"migration_id": MIGRATION_ID, "source_conn_id": "val_source", "target_conn_id": "val_target"}
    )
    assert run["state"] == "success", f"pg_migration {run_id}: {states}"
    # As streaming can leave it (a child before its parent): NOT VALID on the target until the cutover.
    with psycopg.connect(conninfo(TARGET_PORT, DST_DB), autocommit=True) as conn:
        conn.execute("ALTER TABLE docs DROP CONSTRAINT docs_owner_fkey")
        conn.execute(
            "ALTER TABLE docs ADD CONSTRAINT docs_owner_fkey FOREIGN KEY (owner) REFERENCES accounts (id) NOT VALID"
        )
    api.request("PATCH", "/dags/pg_validate", json={"is_paused": False})
    yield api
    shutil.rmtree(REPO / "include" / "great_expectations" / MIGRATION_ID, ignore_errors=True)
    override_alert_thresholds(api, MIGRATION_ID, None)
    STORE.upsert(MIGRATION_ID, phase="torn_down")  # the monitor stops watching it
    _reset()
    drop_database(endpoint(SOURCE_PORT, SRC_DB))
    drop_database(endpoint(TARGET_PORT, DST_DB))


def _validate(api) -> tuple[dict, dict]:
    run_id, run, states = run_other_dag(api, "pg_validate", {"migration_id": MIGRATION_ID}, timeout=600)
    return run, {"states": states, "record": STORE.get(MIGRATION_ID)["last_validation"], "run_id": run_id}


def _by_table(record: dict) -> dict[str, dict]:
    return {t["table"]: t for t in record["tables"]}


def test_validation_under_live_writes_reports_no_difference(streaming_migration):
    writer = ConcurrentWriter(SRC_DB, live_writes, rate=20).start()
    try:
        run, result = _validate(streaming_migration)
    finally:
        writer.stop()
    assert writer.committed > 50 and not writer.errors, writer.errors[:3]
    record = result["record"]
    assert run["state"] == "success", (
        result["states"],
        [(t["table"], t.get("missing"), t.get("changed")) for t in record["tables"] if not t["ok"]],
    )
    assert sorted(_by_table(record)) == ["public.accounts", "public.audit", "public.docs", "public.ticks"]
    assert record["schema_differences"] == [], "a foreign key pending validation is expected before cutover"
    assert record["great_expectations"]["success"] is True
    assert Path(record["great_expectations"]["data_docs"]).exists()
    assert (
        REPO / "include" / "great_expectations" / MIGRATION_ID / "gx" / "expectations" / "public" / "accounts.json"
    ).exists(), "suites are kept under include/ for users to edit"


def test_damaged_target_is_named_to_keys_and_columns_and_resync_repairs_it(streaming_migration):
    api = streaming_migration
    assert wait_until_identical(SRC_DB, DST_DB, ["public"]) == {}
    with psycopg.connect(conninfo(TARGET_PORT, DST_DB), autocommit=True) as conn:
        conn.execute("SET session_replication_role = replica")
        conn.execute("DELETE FROM accounts WHERE id = 7")
        conn.execute("UPDATE accounts SET note = 'damaged' WHERE id = 12")
        conn.execute("INSERT INTO accounts VALUES (99999, 0, 'extra', 'busy')")
        conn.execute("UPDATE docs SET body = repeat('x', 9000) WHERE id = 3")
        conn.execute("DELETE FROM audit WHERE ctid = (SELECT min(ctid) FROM audit WHERE what = 'dup')")

    run, result = _validate(api)
    assert run["state"] == "failed"
    tables = _by_table(result["record"])
    accounts, docs = tables["public.accounts"], tables["public.docs"]
    assert [r["key"] for r in accounts["missing"]] == [{"id": 7}]
    assert [r["key"] for r in accounts["extra"]] == [{"id": 99999}]
    assert [(r["key"], r["columns"]) for r in accounts["changed"]] == [({"id": 12}, ["note"])]
    assert [(r["key"], r["columns"]) for r in docs["changed"]] == [({"id": 3}, ["body", "body_length"])]  # generated
    assert not tables["public.audit"]["ok"] and tables["public.ticks"]["ok"]
    ge = {t["table"]: t for t in result["record"]["great_expectations"]["tables"]}
    assert ge["public.accounts"]["status"] == "failed", ge["public.accounts"]
    report = REPO / ".stack" / "reports" / f"{MIGRATION_ID}-report.html"
    assert "id=99999" in report.read_text()

    compare = subprocess.run(
        [str(REPO / "scripts" / "migration"), "compare", "--migration-id", MIGRATION_ID, "--table", "public.accounts"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert compare.returncode == 1, compare.stdout + compare.stderr
    assert "id=7" in compare.stdout and "id=99999" in compare.stdout and "id=12 (note)" in compare.stdout

    run_id, resync, states = run_other_dag(
        api,
        "pg_migration_resync",
        {"migration_id": MIGRATION_ID, "tables": ["public.accounts", "public.docs", "public.audit"]},
    )
    assert resync["state"] == "success", states
    run, result = _validate(api)
    assert run["state"] == "success", result["states"]
    assert all(t["ok"] for t in result["record"]["tables"])
