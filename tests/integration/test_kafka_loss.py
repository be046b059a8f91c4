"""Kafka loses its data while a migration streams: the broker's storage is wiped and reformatted, so the records
the slot had confirmed but the sink had not applied are gone, and with Connect's own topics every connector
too. `scripts/migration recover` must bring the target back to identical (lost inserts, updates and deletes,
a keyless table, TOASTed values) with one slot and both connectors RUNNING.

DESTRUCTIVE: it stops Kafka Connect and the broker, deletes the broker's log dir and brings the stack back
(`scripts/stack.sh up` formats empty storage). Run it under the EXCLUSIVE stack lock
(`flock -x /tmp/pgmigrate-stack.lock …`). Wiping Kafka removes EVERY migration's connectors, offsets and topics,
not only this test's: acceptable in `make test`, where modules run one after another and each builds its own
pipeline, but never run it beside someone else's live migration.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from datetime import UTC, datetime
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
    tear_down_migration,
    wait_until_identical,
)

from devtools.databases import drop_database, recreate_database
from devtools.local_stack import connect_client
from pgmigrate.cli.airflow_api import put_postgres_connection
from pgmigrate.control.state import MigrationStateStore
from pgmigrate.core.endpoints import PgEndpoint
from pgmigrate.core.naming import MigrationNames

MIGRATION_ID = "kloss-e2e"
SRC_DB, DST_DB = "kloss_src", "kloss_dst"
REPO = Path(__file__).resolve().parents[2]
STACK = REPO / "scripts" / "stack.sh"
KAFKA_DATA = REPO / ".stack" / "kafka" / "data"  # log.dirs of include/stack/kafka-server.properties
CONTROL = PgEndpoint("127.0.0.1", 5435, "migration_control", "postgres", "postgres")
CONNECT = connect_client()
NAMES = MigrationNames(MIGRATION_ID)

SCHEMA = """
CREATE TABLE accounts (id int PRIMARY KEY, balance bigint NOT NULL, note text);
INSERT INTO accounts SELECT g, g * 10, 'n' || g FROM generate_series(1, 3000) g;
CREATE TABLE docs (id int PRIMARY KEY, version int NOT NULL DEFAULT 0, body text NOT NULL);
INSERT INTO docs SELECT g, 0, (SELECT string_agg(md5(g::text || s::text), '') FROM generate_series(1, 300) s)
FROM generate_series(1, 60) g;
CREATE TABLE audit (at timestamptz NOT NULL DEFAULT clock_timestamp(), what text);
ALTER TABLE audit REPLICA IDENTITY FULL;
INSERT INTO audit (what) SELECT 'seed' || g FROM generate_series(1, 50) g;
"""


def live_writes(i: int) -> list[tuple[str, tuple]]:
    """Inserts, updates and deletes on every table; docs updates leave the TOASTed body untouched (Debezium
    sends a placeholder the reselector must fill) and every 10th rewrites it."""
    statements = [
        ("INSERT INTO accounts VALUES (%s, 0, 'live')", (100_000 + i,)),
        ("UPDATE accounts SET balance = balance + 1 WHERE id = %s", (i % 900 + 1,)),
        ("DELETE FROM accounts WHERE id = %s", (1000 + i,)),
        ("UPDATE docs SET version = version + 1 WHERE id = %s", (i % 60 + 1,)),
        ("INSERT INTO audit (what) VALUES (%s)", (f"live{i}",)),
    ]
    if i % 10 == 0:
        statements.append(("UPDATE docs SET body = md5(%s) || body WHERE id = %s", (str(i), i % 60 + 1)))
    if i % 5 == 0:
        statements.append(("DELETE FROM audit WHERE ctid = (SELECT min(ctid) FROM audit)", ()))
    if i % 7 == 0:
        statements.append(("DELETE FROM accounts WHERE id = %s", (100_000 + i - 3,)))
    return statements


def _reset() -> None:
    tear_down_migration(MIGRATION_ID, SRC_DB, DST_DB)


def _stack(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(STACK), *args], capture_output=True, text=True, timeout=400)


def _stop(component: str) -> None:
    """Stop one stack component by its recorded pid, as `stack.sh down` does (stack.d/common.sh)."""
    script = f'. "{REPO}/scripts/stack.d/common.sh"; stop_daemon {component}'
    subprocess.run(["bash", "-c", script], check=True, timeout=120)


def _wipe_kafka() -> None:
    """Broker storage lost: Connect and the broker stopped, the log dir deleted; `stack.sh up` formats the
    empty storage (a new cluster id) and starts both again."""
    _stop("connect")
    _stop("kafka")
    shutil.rmtree(KAFKA_DATA)
    up = _stack("up")
    assert up.returncode == 0, up.stdout[-2000:] + up.stderr[-2000:]


def _slots() -> list[str]:
    with psycopg.connect(conninfo(SOURCE_PORT, SRC_DB), autocommit=True) as conn:
        rows = conn.execute(
            "SELECT slot_name FROM pg_replication_slots WHERE database = current_database() ORDER BY 1"
        ).fetchall()
    return [r[0] for r in rows]


def _wait_for_slot_past(lsn: str, timeout: float = 60) -> None:
    """Until the source connector has committed offsets past `lsn` (the slot confirms what Kafka holds)."""
    deadline = time.monotonic() + timeout
    with psycopg.connect(conninfo(SOURCE_PORT, SRC_DB), autocommit=True) as conn:
        while time.monotonic() < deadline:
            done = conn.execute(
                "SELECT confirmed_flush_lsn >= %s::pg_lsn FROM pg_replication_slots WHERE slot_name = %s",
                (lsn, NAMES.slot),
            ).fetchone()
            if done and done[0]:
                return
            time.sleep(0.5)
    pytest.fail(f"slot {NAMES.slot} did not confirm {lsn} within {timeout}s")


def _wait_for_commits(writer: ConcurrentWriter, n: int, timeout: float = 60) -> None:
    goal, deadline = writer.committed + n, time.monotonic() + timeout
    while writer.committed < goal and time.monotonic() < deadline:
        time.sleep(0.2)
    assert writer.committed >= goal, f"the writer committed too little: {writer.committed} {writer.errors[:3]}"


@pytest.fixture(scope="module")
def streaming_migration():
    api = airflow_api()
    # While Kafka is gone the target misses rows: the monitor must not halt the pipeline during the recovery.
    override_alert_thresholds(api, MIGRATION_ID, {"halt_on_data_loss": False})
    _reset()
    recreate_database(endpoint(SOURCE_PORT, SRC_DB))
    recreate_database(endpoint(TARGET_PORT, DST_DB))
    with psycopg.connect(conninfo(SOURCE_PORT, SRC_DB), autocommit=True) as conn:
        conn.execute(SCHEMA)
    put_postgres_connection(api, "kloss_source", endpoint(SOURCE_PORT, SRC_DB))
    put_postgres_connection(api, "kloss_target", endpoint(TARGET_PORT, DST_DB))
    run_id, run, states = run_dag(
        api, {"migration_id": MIGRATION_ID, "source_conn_id": "kloss_source", "target_conn_id": "kloss_target"}
    )
    assert run["state"] == "success", f"pg_migration {run_id}: {states}"
    api.request("PATCH", "/dags/pg_migration_recover", json={"is_paused": False})
    yield api
    up = _stack("up")  # whatever happened above, leave every component running
    override_alert_thresholds(api, MIGRATION_ID, None)
    MigrationStateStore(CONTROL).upsert(MIGRATION_ID, phase="torn_down")  # the monitor stops watching it
    _reset()
    drop_database(endpoint(SOURCE_PORT, SRC_DB))
    drop_database(endpoint(TARGET_PORT, DST_DB))
    assert up.returncode == 0, up.stdout[-2000:] + up.stderr[-2000:]


def test_wiped_kafka_is_recovered_to_an_identical_target(streaming_migration):
    since = datetime.now(UTC)
    writer = ConcurrentWriter(SRC_DB, live_writes, rate=15).start()
    try:
        # Changes that reach Kafka but never the target: the sink paused, the source keeps producing and the
        # slot confirms them. The wipe makes them (deletes included) lost for good.
        CONNECT.pause(NAMES.sink_connector)
        CONNECT.wait_for_state(NAMES.sink_connector, "PAUSED", timeout=60)
        _wait_for_commits(writer, 40)  # transactions (inserts, updates, deletes) that land in Kafka only
        with psycopg.connect(conninfo(SOURCE_PORT, SRC_DB), autocommit=True) as conn:
            lsn = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()[0]
        _wait_for_slot_past(lsn)
        _wipe_kafka()  # the writer keeps writing while Kafka is down and while it is empty
        assert not CONNECT.exists(NAMES.source_connector) and not CONNECT.exists(NAMES.sink_connector), (
            "Connect's config topic was wiped: the connectors must be gone"
        )
        started = time.monotonic()
        recover = subprocess.run(
            [str(REPO / "scripts" / "migration"), "recover", "--migration-id", MIGRATION_ID],
            capture_output=True,
            text=True,
            timeout=900,
        )
        print(f"recover took {time.monotonic() - started:.0f}s:\n{recover.stdout}")
        assert recover.returncode == 0, recover.stdout[-3000:] + recover.stderr[-3000:]
    finally:
        writer.stop()
    assert writer.committed > 100 and not writer.errors, writer.errors[:3]

    assert wait_until_identical(SRC_DB, DST_DB, ["public"], timeout=180) == {}
    assert _slots() == sorted([NAMES.slot, NAMES.native_subscription]), "exactly one slot per channel"
    for name in (NAMES.source_connector, NAMES.sink_connector):
        assert CONNECT.get_status(name)["connector"]["state"] == "RUNNING", name
    # The timeline of this recovery (events of an earlier run of this test are older than `since`).
    events = {e["phase"]: e["details"] for e in MigrationStateStore(CONTROL).events(MIGRATION_ID) if e["at"] >= since}
    assert {"recover_started", "recover_snapshot_requested", "recover_deletes_removed", "recovered"} <= set(events)
    removed = {t["table"]: t["deleted"] for t in events["recover_deletes_removed"]["tables"]}
    assert removed["public.accounts"] > 0, f"the deletes made while the sink was paused were lost: {removed}"
