"""Schema drift on the real stack: DDL on the source of a streaming migration while a writer runs.

(a) additive: `ALTER TABLE … ADD COLUMN` (then writes that use it), a new index and a `CREATE TABLE` with a
primary key, rows and writes, in the migrated schema -> the monitor raises one P1 `schema_mismatch` naming
them -> `scripts/migration schema-sync` succeeds -> writer stopped -> the independent comparison finds both
sides identical (new column values and new table included), the alert resolved, a rerun does nothing.
(b) non-additive: a column type changed on the source -> `pg_migration_schema_sync` fails naming the
statement and halts the migration -> the statement run on the target, `pg_migration_restart` -> identical.
"""

from __future__ import annotations

import subprocess
import time
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
    run_dag,
    run_other_dag,
    task_log,
    tear_down_migration,
    wait_until_identical,
)

from devtools.databases import drop_database, recreate_database
from devtools.local_stack import connect_client
from pgmigrate.cli.airflow_api import AirflowApiError, put_postgres_connection
from pgmigrate.control.alert_store import AlertStore
from pgmigrate.control.state import MigrationStateStore
from pgmigrate.core.endpoints import PgEndpoint
from pgmigrate.core.naming import MigrationNames

MIGRATION_ID = "drift-e2e"
SRC_DB, DST_DB = "drift_src", "drift_dst"
NAMES = MigrationNames(MIGRATION_ID)
CONNECT = connect_client()
CONTROL = PgEndpoint("127.0.0.1", 5435, "migration_control", "postgres", "postgres")
STORE = MigrationStateStore(CONTROL)
REPO = Path(__file__).resolve().parents[2]
SCHEMAS = ["public"]

SCHEMA = """
CREATE TABLE items (id int PRIMARY KEY, qty int NOT NULL, name text);
INSERT INTO items SELECT g, g, 'item ' || g FROM generate_series(1, 200) g;
CREATE TABLE orders (id bigserial PRIMARY KEY, item_id int NOT NULL, at timestamptz NOT NULL DEFAULT clock_timestamp());
"""


def _forget() -> None:
    tear_down_migration(MIGRATION_ID, SRC_DB, DST_DB)


class Drift:
    """What the writer may use: set once the DDL committed."""

    note_column = False
    extras_table = False


def writes(i: int) -> list[tuple[str, tuple]]:
    item = i % 200 + 1
    statements = [("INSERT INTO orders (item_id) VALUES (%s)", (item,))]
    if Drift.note_column:
        statements.append(("UPDATE items SET qty = qty + 1, note = %s WHERE id = %s", (f"note {i}", item)))
    else:
        statements.append(("UPDATE items SET qty = qty + 1 WHERE id = %s", (item,)))
    if Drift.extras_table:
        upsert = "INSERT INTO extras (id, item_id, label) VALUES (%s, %s, %s) ON CONFLICT (id) DO UPDATE SET label = %s"
        statements.append((upsert, (i % 80 + 1, item, f"w{i}", f"w{i}")))
    return statements


@pytest.fixture(scope="module")
def migration():
    api = airflow_api()
    _forget()
    STORE.ensure_schema()
    with CONTROL.connect(autocommit=True) as conn:  # a rerun starts without an earlier run's alerts
        conn.execute("DELETE FROM alert WHERE migration_id = %s", (MIGRATION_ID,))
    recreate_database(endpoint(SOURCE_PORT, SRC_DB))
    recreate_database(endpoint(TARGET_PORT, DST_DB))
    with psycopg.connect(conninfo(SOURCE_PORT, SRC_DB), autocommit=True) as conn:
        conn.execute(SCHEMA)
    put_postgres_connection(api, "drift_source", endpoint(SOURCE_PORT, SRC_DB))
    put_postgres_connection(api, "drift_target", endpoint(TARGET_PORT, DST_DB))
    Drift.note_column = Drift.extras_table = False
    writer = ConcurrentWriter(SRC_DB, writes, rate=10)
    try:
        run_id, run, states = run_dag(
            api, {"migration_id": MIGRATION_ID, "source_conn_id": "drift_source", "target_conn_id": "drift_target"}
        )
        assert run["state"] == "success", f"pg_migration {run_id}: {states}"
        writer.start()
        yield api, writer
    finally:
        writer.stop()
        _forget()
        for conn_id in ("drift_source", "drift_target"):
            try:
                api.request("DELETE", f"/connections/{conn_id}")
            except AirflowApiError:
                pass
        drop_database(endpoint(SOURCE_PORT, SRC_DB))
        drop_database(endpoint(TARGET_PORT, DST_DB))
    assert not writer.errors, writer.errors[:3]


def run_monitor(api) -> None:
    run_id, run, states = run_other_dag(api, "pg_migration_monitor", {"migration_ids": [MIGRATION_ID]}, timeout=180)
    assert run["state"] == "success", f"pg_migration_monitor {run_id}: {states}"


def schema_alerts(open_only: bool = True) -> list[dict]:
    return [
        r for r in AlertStore(CONTROL).alerts(MIGRATION_ID, open_only=open_only) if r["condition"] == "schema_mismatch"
    ]


def on_source(*statements: str) -> None:
    with psycopg.connect(conninfo(SOURCE_PORT, SRC_DB), autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)


def wait_writes(writer: ConcurrentWriter, count: int = 20, timeout: float = 60) -> None:
    """Let the writer commit `count` more transactions (the ones that use the change)."""
    target, deadline = writer.committed + count, time.monotonic() + timeout
    while writer.committed < target:
        assert time.monotonic() < deadline and not writer.errors, f"writer stalled: {writer.errors[:3]}"
        time.sleep(0.2)


def test_additive_drift_is_alerted_synced_and_identical(migration):
    api, writer = migration
    on_source(
        "ALTER TABLE items ADD COLUMN note text NOT NULL DEFAULT 'none'", "CREATE INDEX items_note_idx ON items (note)"
    )
    Drift.note_column = True
    on_source(
        "CREATE TABLE extras (id int PRIMARY KEY, item_id int NOT NULL, label text, "
        "created timestamptz NOT NULL DEFAULT '2026-01-01 00:00:00+00')",
        "INSERT INTO extras (id, item_id, label) SELECT g, g, 'seed ' || g FROM generate_series(1, 50) g",
    )
    Drift.extras_table = True
    wait_writes(writer)

    run_monitor(api)
    alerts = schema_alerts()
    assert len(alerts) == 1 and alerts[0]["severity"] == "P1", alerts
    message = alerts[0]["message"]
    assert "column public.items.note" in message and "table public.extras" in message, message
    assert "index public.items_note_idx" in message, message
    run_monitor(api)  # still drifting: the same open row, not a second one
    assert len(schema_alerts(open_only=False)) == 1

    started = time.monotonic()
    sync = subprocess.run(
        [str(REPO / "scripts/with-stack-env"), "scripts/migration", "schema-sync", "--migration-id", MIGRATION_ID],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    print(sync.stdout[-2000:], f"schema-sync took {time.monotonic() - started:.0f}s")
    assert sync.returncode == 0, sync.stdout[-3000:] + sync.stderr[-3000:]
    wait_writes(writer)  # writes using the new column and table flow after the sync too

    writer.stop()
    assert not writer.errors, writer.errors[:3]
    assert wait_until_identical(SRC_DB, DST_DB, SCHEMAS) == {}
    with psycopg.connect(conninfo(TARGET_PORT, DST_DB)) as conn:
        used = conn.execute("SELECT count(*) FROM items WHERE note LIKE 'note %'").fetchone()[0]
        extras = conn.execute("SELECT count(*) FROM extras").fetchone()[0]
    assert used > 0 and extras >= 50, (used, extras)

    run_monitor(api)
    assert schema_alerts() == [], "schema_mismatch still open after the sync"

    # Idempotent: a rerun after success finds nothing to do and succeeds.
    run_id, run, states = run_other_dag(api, "pg_migration_schema_sync", {"migration_id": MIGRATION_ID})
    assert run["state"] == "success", f"rerun {run_id}: {states}"
    assert "schemas match: nothing to sync" in task_log(api, run_id, "plan", dag_id="pg_migration_schema_sync")


def test_non_additive_drift_halts_with_the_statement(migration):
    api, writer = migration
    writer.stop()
    on_source("ALTER TABLE items ALTER COLUMN qty TYPE bigint")
    run_id, run, states = run_other_dag(api, "pg_migration_schema_sync", {"migration_id": MIGRATION_ID})
    assert run["state"] == "failed" and states["plan"] == "failed", states
    statement = 'ALTER TABLE "public"."items" ALTER COLUMN "qty" TYPE bigint USING "qty"::bigint;'
    log = task_log(api, run_id, "plan", dag_id="pg_migration_schema_sync")
    assert statement in log and "scripts/migration restart" in log, log[-3000:]
    assert CONNECT.get_status(NAMES.source_connector)["connector"]["state"] == "PAUSED"
    assert (STORE.get(MIGRATION_ID)["last_error"] or "").startswith("halted")

    # Put things back as the message says: the statement on the target, then restart.
    with psycopg.connect(conninfo(TARGET_PORT, DST_DB), autocommit=True) as conn:
        conn.execute(statement)
    run_id, run, states = run_other_dag(api, "pg_migration_restart", {"migration_id": MIGRATION_ID})
    assert run["state"] == "success", f"pg_migration_restart {run_id}: {states}"
    on_source("UPDATE items SET qty = qty + 10000000000 WHERE id = 1")  # a value only bigint holds
    assert wait_until_identical(SRC_DB, DST_DB, SCHEMAS) == {}
    run_monitor(api)
    assert schema_alerts() == []
