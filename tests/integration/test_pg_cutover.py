"""Cutover and rollback on the real stack, with pgbench writing through PgBouncer the whole time.

One migration, acts in order: cutovers that must abort at each step before the switch (a row only on
the target fails the final validation; a lock held on either server fails sync_sequences and
start_reverse_replication; a held routes file fails switch_route; Connect killed fails the drain),
each leaving clients on the source with everything undone; halt and restart (repairing a corrupted
connector config); a cutover under load with zero failed transactions and a short pause; a rollback
with writes made on the target replayed to the source; teardown leaving nothing behind.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import psycopg
import pytest
from harness import (
    SOURCE_PORT,
    TARGET_PORT,
    airflow_api,
    conninfo,
    endpoint,
    fingerprints_on,
    forget_migration,
    run_dag,
    run_other_dag,
    wait_until_identical,
)

from pgmigrate.airflow_api import put_postgres_connection
from pgmigrate.connect_client import ConnectClient
from pgmigrate.databases import drop_database, recreate_database
from pgmigrate.endpoints import PgEndpoint
from pgmigrate.naming import MigrationNames
from pgmigrate.reverse_replication import remove_reverse_replication
from pgmigrate.route_switch import PgBouncerRouteSwitch
from pgmigrate.state import MigrationStateStore
from pgmigrate.teardown import teardown_migration

MIGRATION_ID = "cut-test"
SRC_DB, DST_DB = "cut_src", "cut_dst"
NAMES = MigrationNames(MIGRATION_ID)
CONNECT = ConnectClient("http://127.0.0.1:8083")
PGBENCH = "/usr/lib/postgresql/15/bin/pgbench"
STATE_DIR = Path(__file__).resolve().parents[2] / ".stack"
SWITCH = PgBouncerRouteSwitch(
    PgEndpoint("127.0.0.1", 6432, "pgbouncer", "postgres", "postgres"), STATE_DIR / "pgbouncer" / "routes.ini"
)
STORE = MigrationStateStore(PgEndpoint("127.0.0.1", 5435, "migration_control", "postgres", "postgres"))

SCHEMA = """
CREATE TABLE accounts (id int PRIMARY KEY, balance bigint NOT NULL, note text);
INSERT INTO accounts SELECT g, 0, 'n' FROM generate_series(1, 1000) g;
CREATE TABLE orders (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                     account int NOT NULL REFERENCES accounts (id), amount int,
                     at timestamptz NOT NULL DEFAULT clock_timestamp());
INSERT INTO orders (account, amount) SELECT g % 1000 + 1, g FROM generate_series(1, 500) g;
CREATE TABLE events (id serial PRIMARY KEY, kind text, at timestamptz NOT NULL DEFAULT clock_timestamp());
CREATE TABLE audit (at timestamptz NOT NULL DEFAULT clock_timestamp(), what text);
ALTER TABLE audit REPLICA IDENTITY FULL;
INSERT INTO audit (what) SELECT 'seed' FROM generate_series(1, 10);
"""

WORKLOAD = """\\set aid random(1, 1000)
\\set delta random(-100, 100)
BEGIN;
UPDATE accounts SET balance = balance + :delta WHERE id = :aid;
INSERT INTO orders (account, amount) VALUES (:aid, :delta);
INSERT INTO events (kind) VALUES ('tick');
INSERT INTO audit (what) VALUES ('tx');
END;
"""


class Pgbench:
    """pgbench through PgBouncer (the way applications connect) at a fixed rate, in the background."""

    def __init__(self, tmp_path: Path, rate: int, seconds: int) -> None:
        script = tmp_path / "workload.sql"
        script.write_text(WORKLOAD)
        self.process = subprocess.Popen(
            [PGBENCH, "-h", "127.0.0.1", "-p", "6432", "-U", "postgres", "-n", "-c", "4", "-R", str(rate),
             "-T", str(seconds), "-f", str(script), SRC_DB],  # fmt: skip
            env={"PGPASSWORD": "postgres", "PATH": "/usr/bin:/bin"},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def result(self) -> tuple[int, int, str]:
        """(processed, failed, output) once pgbench has finished."""
        output, _ = self.process.communicate(timeout=300)
        processed = int(re.search(r"number of transactions actually processed: (\d+)", output).group(1))
        failed_match = re.search(r"number of failed transactions: (\d+)", output)
        failed = int(failed_match.group(1)) if failed_match else 0
        assert self.process.returncode == 0, f"pgbench failed (clients aborted):\n{output[-2000:]}"
        return processed, failed, output


def _reset() -> None:
    source = PgEndpoint("127.0.0.1", SOURCE_PORT, SRC_DB, "postgres", "postgres")
    target = PgEndpoint("127.0.0.1", TARGET_PORT, DST_DB, "postgres", "postgres")
    SWITCH.remove_route(SRC_DB)
    SWITCH.resume(SRC_DB)
    for db_endpoint in (source, target):
        if not _exists(db_endpoint):
            return forget_migration(MIGRATION_ID)
    remove_reverse_replication(CONNECT, "127.0.0.1:9092", source, target, NAMES)
    teardown_migration(CONNECT, "127.0.0.1:9092", source, NAMES, target=target)


def _exists(db: PgEndpoint) -> bool:
    from pgmigrate.databases import database_exists

    return database_exists(db)


def _event(phase: str) -> dict:
    events = [e for e in STORE.events(MIGRATION_ID) if e["phase"] == phase]
    assert events, f"no {phase!r} event in the timeline"
    return events[-1]


@pytest.fixture(scope="module")
def streaming_migration():
    api = airflow_api()
    _reset()
    recreate_database(endpoint(SOURCE_PORT, SRC_DB))
    recreate_database(endpoint(TARGET_PORT, DST_DB))
    with psycopg.connect(conninfo(SOURCE_PORT, SRC_DB), autocommit=True) as conn:
        conn.execute(SCHEMA)
    put_postgres_connection(api, "cut_source", endpoint(SOURCE_PORT, SRC_DB))
    put_postgres_connection(api, "cut_target", endpoint(TARGET_PORT, DST_DB))
    run_id, run, states = run_dag(
        api, {"migration_id": MIGRATION_ID, "source_conn_id": "cut_source", "target_conn_id": "cut_target"}
    )
    assert run["state"] == "success", f"pg_migration {run_id}: {states}"
    yield api
    _reset()
    drop_database(endpoint(SOURCE_PORT, SRC_DB))
    drop_database(endpoint(TARGET_PORT, DST_DB))


def test_cutover_aborts_on_validation_mismatch_and_clients_stay_on_the_source(streaming_migration, tmp_path):
    api = streaming_migration
    with psycopg.connect(conninfo(TARGET_PORT, DST_DB), autocommit=True) as conn:
        conn.execute("INSERT INTO accounts VALUES (5000, 0, 'only on the target')")
    bench = Pgbench(tmp_path, rate=50, seconds=25)
    time.sleep(3)
    run_id, run, states = run_other_dag(api, "pg_cutover", {"migration_id": MIGRATION_ID, "backup": False})
    processed, failed, output = bench.result()

    assert run["state"] == "failed" and states["final_validate"] == "failed", states
    assert states["abort_cutover"] == "success" and states["switch_route"] != "success", states
    assert failed == 0 and processed > 100, output[-1500:]
    route = SWITCH.current_route(SRC_DB)
    assert (route.port, route.dbname) == (SOURCE_PORT, SRC_DB)
    assert not SWITCH.is_paused(SRC_DB)
    assert STORE.get(MIGRATION_ID)["phase"] == "streaming"
    assert _event("cutover_aborted")["details"]["pause_seconds"] < 10
    for name in (NAMES.source_connector, NAMES.sink_connector):
        CONNECT.wait_for_state(name, "RUNNING", timeout=60)
    assert not CONNECT.exists(NAMES.reversed().source_connector)
    with psycopg.connect(conninfo(TARGET_PORT, DST_DB), autocommit=True) as conn:
        conn.execute("DELETE FROM accounts WHERE id = 5000")  # the operator fixes the difference


def _wait_for_task(api, run_id: str, task_id: str, states=("running", "success")) -> None:
    deadline = time.monotonic() + 120
    while {t["task_id"]: t["state"] for t in api.task_instances("pg_cutover", run_id)}.get(task_id) not in states:
        assert time.monotonic() < deadline, f"{task_id} never started"
        time.sleep(0.1)


def _cutover_with_fault(api, tmp_path, failing_task: str, inject, release, inject_after: str | None = None) -> None:
    """Run pg_cutover under pgbench with a fault injected (before the run, or once `inject_after` has
    started); assert it aborted at `failing_task` with everything back as before the cutover."""
    bench = Pgbench(tmp_path, rate=50, seconds=25)
    time.sleep(3)
    try:
        if inject_after is None:
            inject()
        run_id = api.trigger_dag("pg_cutover", conf={"migration_id": MIGRATION_ID, "backup": False})
        if inject_after is not None:
            _wait_for_task(api, run_id, inject_after)
            inject()
        run = api.wait_for_dag_run("pg_cutover", run_id, timeout=300, poll_seconds=1)
    finally:
        release()
    states = {t["task_id"]: t["state"] for t in api.task_instances("pg_cutover", run_id)}
    processed, failed, output = bench.result()

    assert run["state"] == "failed" and states[failing_task] == "failed", states
    assert states["abort_cutover"] == "success", states
    if failing_task != "switch_route":
        assert states["switch_route"] == "upstream_failed", states
    assert failed == 0 and processed > 100, output[-1500:]
    route = SWITCH.current_route(SRC_DB)
    assert (route.port, route.dbname) == (SOURCE_PORT, SRC_DB)
    assert not SWITCH.is_paused(SRC_DB)
    assert STORE.get(MIGRATION_ID)["phase"] == "streaming"
    pause = _event("cutover_aborted")["details"]["pause_seconds"]
    print(f"pause with {failing_task} failing: {pause:.2f}s")
    assert pause <= 10.5, "the pause must end by max_pause_seconds (10)"
    for name in (NAMES.source_connector, NAMES.sink_connector):
        CONNECT.wait_for_state(name, "RUNNING", timeout=60)
    assert not CONNECT.exists(NAMES.reversed().source_connector)
    assert _slots(TARGET_PORT) == [], "the reverse slot must be gone after an abort"
    with psycopg.connect(conninfo(TARGET_PORT, DST_DB), autocommit=True) as conn:
        assert conn.execute("SELECT bool_and(subenabled) FROM pg_subscription WHERE subname = %s",
                            (NAMES.native_subscription,)).fetchone()[0] is True  # fmt: skip
    assert wait_until_identical(SRC_DB, DST_DB, ["public"]) == {}


class HeldTableLock:
    """A reporting transaction left open on one server: it holds ACCESS SHARE on a table, so any ALTER
    TABLE of it waits. A step inside the pause must give up before the deadline instead of holding clients."""

    def __init__(self, port: int, dbname: str, table: str) -> None:
        self.port, self.dbname, self.table = port, dbname, table
        self.conn: psycopg.Connection | None = None

    def hold(self) -> None:
        self.conn = psycopg.connect(conninfo(self.port, self.dbname))
        self.conn.execute(f"SELECT count(*) FROM {self.table}")  # noqa: S608 - a fixed test table

    def release(self) -> None:
        if self.conn is not None:
            self.conn.close()


def test_cutover_aborts_when_sync_sequences_cannot_lock_the_target(streaming_migration, tmp_path):
    """sync_sequences sets the target's identity columns ALWAYS (ALTER TABLE): a transaction open on the
    target blocks it; the step fails at the pause's lock budget and the cutover is undone."""
    lock = HeldTableLock(TARGET_PORT, DST_DB, "orders")
    _cutover_with_fault(streaming_migration, tmp_path, "sync_sequences", lock.hold, lock.release)


def test_cutover_aborts_when_reverse_replication_cannot_start(streaming_migration, tmp_path):
    """start_reverse_replication sets the source's identity columns BY DEFAULT (for the reverse sink): a
    reporting transaction on the source blocks it after the forward connectors stopped and the reverse
    slot exists; the abort resumes the former and drops the latter."""
    lock = HeldTableLock(SOURCE_PORT, SRC_DB, "orders")
    _cutover_with_fault(streaming_migration, tmp_path, "start_reverse_replication", lock.hold, lock.release)


def test_cutover_aborts_when_the_route_cannot_be_switched(streaming_migration, tmp_path):
    """Another process holds PgBouncer's routes file lock from the drain on: switch_route gives up within
    the pause, resumes clients on the source, and the abort undoes the reverse replication."""
    import fcntl

    routes_lock = open(SWITCH.routes_file.with_name(SWITCH.routes_file.name + ".lock"), "a")  # noqa: SIM115

    def hold() -> None:
        fcntl.flock(routes_lock.fileno(), fcntl.LOCK_EX)

    _cutover_with_fault(streaming_migration, tmp_path, "switch_route", hold, routes_lock.close, inject_after="drain")


def test_connect_killed_during_cutover_aborts_and_clients_stay_on_the_source(streaming_migration, tmp_path):
    """kill -9 of the Kafka Connect worker once writes are paused: the drain cannot finish, the cutover
    aborts, clients resume on the source without a failed transaction; `make stack-up` and
    pg_migration_restart bring the pipeline back, and nothing written meanwhile is lost."""
    api = streaming_migration
    bench = Pgbench(tmp_path, rate=50, seconds=35)
    time.sleep(3)
    run_id = api.trigger_dag("pg_cutover", conf={"migration_id": MIGRATION_ID, "backup": False})
    deadline = time.monotonic() + 120
    while {t["task_id"]: t["state"] for t in api.task_instances("pg_cutover", run_id)}.get("pause_writes") not in (
        "running", "success"
    ):
        assert time.monotonic() < deadline, "pause_writes never started"
        time.sleep(0.1)
    os.kill(int((STATE_DIR / "pids" / "connect.pid").read_text()), signal.SIGKILL)
    run = api.wait_for_dag_run("pg_cutover", run_id, timeout=300, poll_seconds=2)
    states = {t["task_id"]: t["state"] for t in api.task_instances("pg_cutover", run_id)}
    processed, failed, output = bench.result()

    assert run["state"] == "failed" and states["switch_route"] != "success", states
    assert failed == 0 and processed > 100, output[-1500:]
    route = SWITCH.current_route(SRC_DB)
    assert (route.port, route.dbname) == (SOURCE_PORT, SRC_DB)
    assert not SWITCH.is_paused(SRC_DB)
    assert STORE.get(MIGRATION_ID)["phase"] == "streaming"
    print(f"pause with Connect killed: {_event('cutover_aborted')['details']['pause_seconds']:.2f}s")
    # Recovery the way an operator does it: restart what is down, then the runbook's restart.
    subprocess.run([str(STATE_DIR.parent / "scripts" / "stack.sh"), "up"], check=True, capture_output=True)
    run_id, run, states = run_other_dag(api, "pg_migration_restart", {"migration_id": MIGRATION_ID})
    assert run["state"] == "success", states
    assert wait_until_identical(SRC_DB, DST_DB, ["public"]) == {}
    assert not CONNECT.exists(NAMES.reversed().source_connector)


def _slots(port: int) -> list[str]:
    with psycopg.connect(conninfo(port, "postgres"), autocommit=True) as conn:
        rows = conn.execute("SELECT slot_name FROM pg_replication_slots WHERE slot_name LIKE 'pgmigrate\\_cut\\_test%' "
                            "OR slot_name LIKE 'pg\\_%\\_sync\\_%' ORDER BY 1").fetchall()  # fmt: skip
    return [r[0] for r in rows]


def test_halt_then_restart_repairs_a_corrupted_connector_config(streaming_migration):
    api = streaming_migration
    slots_before = _slots(SOURCE_PORT)
    run_id, run, states = run_other_dag(api, "pg_migration_halt", {"migration_id": MIGRATION_ID, "reason": "drill"})
    assert run["state"] == "success", states
    for name in (NAMES.source_connector, NAMES.sink_connector):
        assert CONNECT.get_status(name)["connector"]["state"] == "PAUSED"
    with psycopg.connect(conninfo(SOURCE_PORT, SRC_DB), autocommit=True) as conn:
        conn.execute("UPDATE accounts SET note = 'written while halted' WHERE id <= 10")
    # Someone "fixes" the sink by hand and breaks it: plain inserts would fail on every update.
    config = CONNECT.get_config(NAMES.sink_connector)
    CONNECT.create_or_update(NAMES.sink_connector, {**config, "insert.mode": "insert"})

    run_id, run, states = run_other_dag(api, "pg_migration_restart", {"migration_id": MIGRATION_ID})
    assert run["state"] == "success", states
    assert CONNECT.get_config(NAMES.sink_connector)["insert.mode"] == "upsert"
    for name in (NAMES.source_connector, NAMES.sink_connector):
        assert CONNECT.get_status(name)["connector"]["state"] == "RUNNING"
    assert _slots(SOURCE_PORT) == slots_before, "restart must never create a second slot"
    assert wait_until_identical(SRC_DB, DST_DB, ["public"]) == {}
    assert _event("halted")["message"].startswith("halted (drill)")


def test_resync_repairs_a_damaged_table_while_streaming_continues(streaming_migration, tmp_path):
    api = streaming_migration
    with psycopg.connect(conninfo(TARGET_PORT, DST_DB), autocommit=True) as conn:
        conn.execute("SET session_replication_role = replica")
        conn.execute("DELETE FROM accounts WHERE id BETWEEN 100 AND 199")  # missing rows
        conn.execute("UPDATE accounts SET note = 'damaged' WHERE id BETWEEN 300 AND 349")  # wrong values
        conn.execute("INSERT INTO accounts VALUES (9001, 0, 'extra')")  # a row the source never had
        # The keyless table travels by the native channel (its subscription copies it again).
        conn.execute("DELETE FROM audit WHERE what = 'seed'")
        conn.execute("INSERT INTO audit (what) VALUES ('extra'), ('extra')")
    bench = Pgbench(tmp_path, rate=50, seconds=20)
    run_id, run, states = run_other_dag(
        api, "pg_migration_resync", {"migration_id": MIGRATION_ID, "tables": ["public.accounts", "public.audit"]}
    )
    processed, failed, output = bench.result()
    assert run["state"] == "success", f"pg_migration_resync {run_id}: {states}"
    assert failed == 0, output[-1500:]
    assert wait_until_identical(SRC_DB, DST_DB, ["public"]) == {}
    assert CONNECT.get_status(NAMES.source_connector)["connector"]["state"] == "RUNNING"


def test_cutover_under_load_has_zero_failed_transactions(streaming_migration, tmp_path):
    """After every aborted attempt above, the rerun of pg_cutover succeeds."""
    api = streaming_migration
    # A foreign key still NOT VALID on the target (a child row arrived before its parent while streaming):
    # the cutover validates it once everything is in.
    with psycopg.connect(conninfo(TARGET_PORT, DST_DB), autocommit=True) as conn:
        conn.execute("ALTER TABLE orders DROP CONSTRAINT orders_account_fkey")
        conn.execute("ALTER TABLE orders ADD CONSTRAINT orders_account_fkey FOREIGN KEY (account) "
                     "REFERENCES accounts (id) NOT VALID")  # fmt: skip
    bench = Pgbench(tmp_path, rate=100, seconds=40)
    time.sleep(5)
    run_id = api.trigger_dag("pg_cutover", conf={"migration_id": MIGRATION_ID, "backup": True})
    # At the pause point (drained, clients held): a snapshot of each side, compared independently later.
    _wait_for_task(api, run_id, "final_validate")
    snapshots = []
    for port, db in ((SOURCE_PORT, SRC_DB), (TARGET_PORT, DST_DB)):
        conn = psycopg.connect(conninfo(port, db))
        conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        conn.execute("SELECT 1")  # the snapshot is taken here
        snapshots.append(conn)
    assert SWITCH.is_paused(SRC_DB), "the snapshots must be taken while writes are paused"
    run = api.wait_for_dag_run("pg_cutover", run_id, timeout=300, poll_seconds=1)
    states = {t["task_id"]: t["state"] for t in api.task_instances("pg_cutover", run_id)}
    processed, failed, output = bench.result()
    at_pause = [fingerprints_on(conn, ["public"]) for conn in snapshots]
    for conn in snapshots:
        conn.close()

    assert run["state"] == "success", f"pg_cutover {run_id}: {states}"
    assert at_pause[0] == at_pause[1], "source and target differ at the pause point"
    assert at_pause[0]["public.orders"][0] > 500, "the comparison must see the rows pgbench wrote"
    assert failed == 0 and processed > 1000, output[-1500:]
    pause = _event("cut_over")["details"]["pause_seconds"]
    print(f"cutover write pause: {pause:.2f}s")
    assert pause < 10
    route = SWITCH.current_route(SRC_DB)
    assert (route.port, route.dbname) == (TARGET_PORT, DST_DB)
    assert STORE.get(MIGRATION_ID)["phase"] == "cut_over"
    switched_at = _event("cut_over")["at"]
    with psycopg.connect(conninfo(TARGET_PORT, DST_DB), autocommit=True) as conn:
        after = conn.execute("SELECT count(*) FROM events WHERE at > %s", (switched_at,)).fetchone()[0]
        target_seq = conn.execute("SELECT last_value FROM orders_id_seq").fetchone()[0]
        fk_valid = conn.execute(
            "SELECT convalidated FROM pg_constraint WHERE conname = 'orders_account_fkey'"
        ).fetchone()
    assert fk_valid == (True,), "validate_foreign_keys must validate what streaming left NOT VALID"
    assert after > 0, "pgbench's writes after the switch must land on the target"
    with psycopg.connect(conninfo(SOURCE_PORT, SRC_DB), autocommit=True) as conn:
        source_seq = conn.execute("SELECT last_value FROM orders_id_seq").fetchone()[0]
    assert target_seq >= source_seq
    # Reverse replication carried every write made on the target back to the source.
    diff = wait_until_identical(SRC_DB, DST_DB, ["public"])
    assert diff == {}, diff
    backup = Path(_event("backup_taken")["details"]["path"])
    assert (backup / "source.dump" / "toc.dat").exists() and (backup / "connectors.json").exists()


def test_rollback_replays_target_writes_and_returns_clients_to_the_source(streaming_migration, tmp_path):
    api = streaming_migration
    bench = Pgbench(tmp_path, rate=100, seconds=30)
    time.sleep(5)
    started = time.monotonic()
    run_id, run, states = run_other_dag(api, "pg_rollback", {"migration_id": MIGRATION_ID, "reason": "test drill"})
    rollback_seconds = time.monotonic() - started
    processed, failed, output = bench.result()

    assert run["state"] == "success", f"pg_rollback {run_id}: {states}"
    print(f"rollback took {rollback_seconds:.1f}s (trigger to success)")
    assert rollback_seconds < 120
    assert failed == 0 and processed > 500, output[-1500:]
    route = SWITCH.current_route(SRC_DB)
    assert (route.port, route.dbname) == (SOURCE_PORT, SRC_DB)
    assert STORE.get(MIGRATION_ID)["phase"] == "rolled_back"
    # Every row written on the target (during the cutover window, until the switch back) is on the source;
    # the source has moved on since with the writes made after the switch back.
    for table in ("orders", "events"):
        with psycopg.connect(conninfo(TARGET_PORT, DST_DB), autocommit=True) as conn:
            on_target = {r[0] for r in conn.execute(f"SELECT id FROM {table}")}  # noqa: S608
        with psycopg.connect(conninfo(SOURCE_PORT, SRC_DB), autocommit=True) as conn:
            on_source = {r[0] for r in conn.execute(f"SELECT id FROM {table}")}  # noqa: S608
        assert on_target <= on_source, f"{table}: {len(on_target - on_source)} rows written on the target are missing"
    report = Path(_event("rollback_report")["details"]["path"])
    assert "test drill" in report.read_text()


def test_teardown_leaves_no_slot_publication_subscription_or_connector(streaming_migration):
    api = streaming_migration
    run_id, run, states = run_other_dag(api, "pg_migration_teardown", {"migration_id": MIGRATION_ID})
    assert run["state"] == "success", states
    assert [c for c in CONNECT.list_connectors() if c.startswith(f"pgmigrate-{MIGRATION_ID}-")] == []
    assert _slots(SOURCE_PORT) == [] and _slots(TARGET_PORT) == []
    for port, db in ((SOURCE_PORT, SRC_DB), (TARGET_PORT, DST_DB)):
        with psycopg.connect(conninfo(port, db), autocommit=True) as conn:
            assert conn.execute("SELECT pubname FROM pg_publication").fetchall() == []
            subscriptions = conn.execute(
                "SELECT subname FROM pg_subscription s JOIN pg_database d ON d.oid = s.subdbid "
                "WHERE d.datname = current_database()"
            ).fetchall()
            assert subscriptions == []
    assert STORE.get(MIGRATION_ID)["phase"] == "torn_down"
