"""Cutover and rollback on the real stack, pgbench writing through BOTH PgBouncers (6432, 6433) the whole time.

One migration, acts in order:
- refusals before any pause: a row only on the target (pre_validate), a writer connected straight to the
  source (checklist);
- aborts inside the pause, each ending with every PgBouncer resumed on the source, 0 failed client
  transactions, the forward pipeline running and the sides identical: a write reaching the source after
  the drain point outside PgBouncer; a target row damaged after pre_validate; Kafka Connect killed; a held
  lock at the sequences and at the reverse step; a held routes-file lock at the switch;
- `kill -9` of the cutover task's process while a step inside the pause waits: the pause guard (in the
  triggerer) resumes every PgBouncer on the source within max_pause_seconds + 2 s, the state says so;
- the runbook's halt and restart (repairing a corrupted connector config) and a resync while streaming;
- the cutover under load that then succeeds (the rerun), with a standalone sequence and a fenced role;
- a rollback whose reverse connectors were lost, replaying every target write; teardown.
"""

from __future__ import annotations

import fcntl
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest
from faults import ResilientWriter, component_pid, kill_component, stack_up
from harness import (
    SOURCE_PORT,
    SUBSCRIBER_PASSFILE,
    TARGET_PORT,
    airflow_api,
    conninfo,
    endpoint,
    forget_migration,
    override_alert_thresholds,
    run_dag,
    run_other_dag,
    task_states,
    wait_until_identical,
)

from devtools.databases import database_exists, drop_database, recreate_database
from devtools.local_stack import connect_client
from pgmigrate.cli.airflow_api import put_postgres_connection
from pgmigrate.control.alert_store import AlertStore
from pgmigrate.control.pause_lease import LeaseStore
from pgmigrate.control.state import MigrationStateStore
from pgmigrate.core.endpoints import PgEndpoint
from pgmigrate.core.naming import MigrationNames
from pgmigrate.cutover.reverse import remove_reverse_replication
from pgmigrate.cutover.routing.switch import PgBouncerRouteSwitch
from pgmigrate.stream.teardown import teardown_migration

MIGRATION_ID = "cut-test"
SRC_DB, DST_DB = "cut_src", "cut_dst"
NAMES = MigrationNames(MIGRATION_ID)
CONNECT = connect_client()
PGBENCH = "/usr/lib/postgresql/15/bin/pgbench"
STATE_DIR = Path(__file__).resolve().parents[2] / ".stack"
CONTROL = PgEndpoint("127.0.0.1", 5435, "migration_control", "postgres", "postgres")
STORE = MigrationStateStore(CONTROL)
LEASES = LeaseStore(CONTROL)
PGBOUNCERS = {
    port: PgBouncerRouteSwitch(
        PgEndpoint("127.0.0.1", port, "pgbouncer", "postgres", "postgres"), STATE_DIR / folder / "routes.ini"
    )
    for port, folder in ((6432, "pgbouncer"), (6433, "pgbouncer2"))
}
MAX_PAUSE = 5  # the fault cases: a blocked step ends well before the test's patience does
FAULTS_TABLE = STATE_DIR.parent / "test-artifacts" / "cutover-faults.md"  # printed by make chaos
FAULT_ROWS: list[str] = []

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
-- Non-ASCII letters and mixed case in a table name, spaces in its column names (Kafka topic names cannot hold
-- them: Debezium sanitizes; whitespace in a table name would route it to the native channel).
CREATE TABLE "ClientsÉté" ("N° client" int PRIMARY KEY, "Nom complet" text);
INSERT INTO "ClientsÉté" SELECT g, 'client ' || g FROM generate_series(1, 50) g;
CREATE MATERIALIZED VIEW order_totals AS SELECT account, count(*) AS orders FROM orders GROUP BY account;
-- Not owned by any column: the application calls nextval() itself.
CREATE SEQUENCE invoice_no START 1000 INCREMENT 5;
DO $$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'cut_app') THEN
    CREATE ROLE cut_app LOGIN PASSWORD 'cut_app';  -- an application role: the fence makes it read-only
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'cut_reader') THEN
    CREATE ROLE cut_reader LOGIN PASSWORD 'cut_reader';  -- a reporting role: reads only
  END IF;
END $$;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO cut_app;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO cut_app;
GRANT SELECT ON ALL TABLES IN SCHEMA public TO cut_reader;
"""

WORKLOAD = """\\set aid random(1, 1000)
\\set delta random(-100, 100)
BEGIN;
UPDATE accounts SET balance = balance + :delta WHERE id = :aid;
INSERT INTO orders (account, amount) VALUES (:aid, :delta);
INSERT INTO events (kind) VALUES ('invoice ' || nextval('invoice_no'));
INSERT INTO audit (what) VALUES ('tx');
END;
"""


class Pgbench:
    """pgbench through both PgBouncers (how applications behind a load balancer connect), at a fixed rate
    in all, in the background. Stopped with SIGTERM then SIGKILL, never SIGINT (a background shell starts
    children with SIGINT ignored)."""

    def __init__(self, tmp_path: Path, rate: int, seconds: int) -> None:
        script = tmp_path / "workload.sql"
        script.write_text(WORKLOAD)
        self.processes = [
            subprocess.Popen(
                [
                    PGBENCH,
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(port),
                    "-U",
                    "postgres",
                    "-n",
                    "-c",
                    "2",
                    "-R",
                    str(rate // 2),
                    "-T",
                    str(seconds),
                    "-f",
                    str(script),
                    SRC_DB,
                ],
                env={"PGPASSWORD": "postgres", "PATH": "/usr/bin:/bin"},
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            for port in PGBOUNCERS
        ]

    def result(self) -> tuple[int, int, str]:
        """(processed, failed, output) once both have finished."""
        processed = failed = 0
        outputs = []
        for process in self.processes:
            output, _ = process.communicate(timeout=300)
            outputs.append(output)
            assert process.returncode == 0, f"pgbench failed (clients aborted):\n{output[-2000:]}"
            processed += int(re.search(r"number of transactions actually processed: (\d+)", output).group(1))
            failed_match = re.search(r"number of failed transactions: (\d+)", output)
            failed += int(failed_match.group(1)) if failed_match else 0
        return processed, failed, "\n".join(o[-1200:] for o in outputs)


def _reset() -> None:
    source, target = endpoint(SOURCE_PORT, SRC_DB), endpoint(TARGET_PORT, DST_DB)
    for switch in PGBOUNCERS.values():
        switch.resume(SRC_DB)
        switch.remove_route(SRC_DB)
    if not (database_exists(source) and database_exists(target)):
        return forget_migration(MIGRATION_ID)
    remove_reverse_replication(CONNECT, "127.0.0.1:9092", source, target, NAMES)
    teardown_migration(CONNECT, "127.0.0.1:9092", source, NAMES, target=target)


def _event(phase: str) -> dict:
    events = [e for e in STORE.events(MIGRATION_ID) if e["phase"] == phase]
    assert events, f"no {phase!r} event in the timeline"
    return events[-1]


def _routes() -> dict[int, tuple[int, str]]:
    return {port: (r.port, r.dbname) for port, s in PGBOUNCERS.items() for r in [s.current_route(SRC_DB)]}


def assert_clients_on_the_source() -> None:
    assert _routes() == {6432: (SOURCE_PORT, SRC_DB), 6433: (SOURCE_PORT, SRC_DB)}
    assert not any(s.is_paused(SRC_DB) for s in PGBOUNCERS.values()), "a PgBouncer is still paused"


def _slots(port: int) -> list[str]:
    with psycopg.connect(conninfo(port, "postgres"), autocommit=True) as conn:
        rows = conn.execute(
            "SELECT slot_name FROM pg_replication_slots WHERE slot_name LIKE 'pgmigrate\\_cut\\_test%' "
            "OR slot_name LIKE 'pg\\_%\\_sync\\_%' ORDER BY 1"
        ).fetchall()
    return [r[0] for r in rows]


def assert_undone() -> None:
    """After an abort: state streaming, forward connectors RUNNING, no reverse pipeline, subscription enabled,
    and the independent comparison identical (nothing lost)."""
    assert STORE.get(MIGRATION_ID)["phase"] == "streaming"
    for name in (NAMES.source_connector, NAMES.sink_connector):
        CONNECT.wait_for_state(name, "RUNNING", timeout=90)
    assert not CONNECT.exists(NAMES.reversed().source_connector)
    assert _slots(TARGET_PORT) == [], "the reverse slots must be gone after an abort"
    with psycopg.connect(conninfo(TARGET_PORT, DST_DB), autocommit=True) as conn:
        assert (
            conn.execute(
                "SELECT bool_and(subenabled) FROM pg_subscription WHERE subname = %s", (NAMES.native_subscription,)
            ).fetchone()[0]
            is True
        )
    assert wait_until_identical(SRC_DB, DST_DB, ["public"]) == {}


def cutover(api, **conf) -> tuple[str, dict, dict]:
    run_id = api.trigger_dag("pg_cutover", conf={"migration_id": MIGRATION_ID, "backup": False, **conf})
    run = api.wait_for_dag_run("pg_cutover", run_id, timeout=400, poll_seconds=1)
    return run_id, run, task_states(api, run_id, "pg_cutover")


@pytest.fixture(scope="module")
def streaming_migration():
    api = airflow_api()
    _reset()
    recreate_database(endpoint(SOURCE_PORT, SRC_DB))
    recreate_database(endpoint(TARGET_PORT, DST_DB))
    with psycopg.connect(conninfo(SOURCE_PORT, SRC_DB), autocommit=True) as conn:
        conn.execute(SCHEMA)
    # The application's roles exist on the new server too (created there before the migration, as in production:
    # preflight's `roles` refuses otherwise); their grants come with the schema copy.
    with psycopg.connect(conninfo(TARGET_PORT, DST_DB), autocommit=True) as conn:
        conn.execute(SCHEMA[SCHEMA.index("DO $$") : SCHEMA.index("END $$;") + len("END $$;")])
    put_postgres_connection(api, "cut_source", endpoint(SOURCE_PORT, SRC_DB))
    put_postgres_connection(api, "cut_target", endpoint(TARGET_PORT, DST_DB))
    api.request("PATCH", "/dags/pg_cutover", json={"is_paused": False})
    api.request("PATCH", "/dags/pg_rollback", json={"is_paused": False})
    run_id, run, states = run_dag(
        api,
        {
            "migration_id": MIGRATION_ID,
            "source_conn_id": "cut_source",
            "target_conn_id": "cut_target",
            "subscriber_passfile": SUBSCRIBER_PASSFILE,
        },
    )
    assert run["state"] == "success", f"pg_migration {run_id}: {states}"
    with psycopg.connect(conninfo(TARGET_PORT, DST_DB), autocommit=True) as conn:
        grants = conn.execute(
            "SELECT count(*) FROM information_schema.role_table_grants WHERE grantee = 'cut_app' "
            "AND table_schema = 'public'"
        ).fetchone()[0]
    assert grants >= 4 * 5, f"cut_app's grants on the target's tables come with the schema copy ({grants})"
    yield api
    if FAULT_ROWS:
        FAULTS_TABLE.parent.mkdir(exist_ok=True)
        FAULTS_TABLE.write_text(
            "| fault inside the pause | writes paused | ended by | failed client tx |\n"
            "|---|---|---|---|\n" + "\n".join(FAULT_ROWS) + "\n"
        )
    _reset()
    drop_database(endpoint(SOURCE_PORT, SRC_DB))
    drop_database(endpoint(TARGET_PORT, DST_DB))


def test_pre_validate_refuses_a_row_only_on_the_target_before_any_pause(streaming_migration, tmp_path):
    api = streaming_migration
    with psycopg.connect(conninfo(TARGET_PORT, DST_DB), autocommit=True) as conn:
        conn.execute("SET session_replication_role = replica")
        conn.execute("INSERT INTO accounts VALUES (5000, 0, 'only on the target')")
    bench = Pgbench(tmp_path, rate=50, seconds=15)
    run_id, run, states = cutover(api)
    processed, failed, output = bench.result()

    assert run["state"] == "failed" and states["pre_validate"] == "failed", states
    assert states["cutover"] == "upstream_failed" and states["abort_cutover"] == "skipped", states
    assert LEASES.latest_for_run(MIGRATION_ID, run_id) is None, "nothing may pause when validation fails"
    assert "extra" in str(_event("pre_validated")["details"]["differences"]) and "5000" in str(
        _event("pre_validated")["details"]["differences"]
    )
    assert failed == 0 and processed > 100, output
    assert_clients_on_the_source()
    with psycopg.connect(conninfo(TARGET_PORT, DST_DB), autocommit=True) as conn:
        conn.execute("DELETE FROM accounts WHERE id = 5000")  # the operator repairs the difference


class DirectWriter(ResilientWriter):
    """An application connected straight to the source (not through PgBouncer) that reconnects at once when
    its session is ended, as a pooled JDBC app does."""

    def __init__(self, user: str, password: str, rate: float) -> None:
        info = (
            f"host=127.0.0.1 port={SOURCE_PORT} dbname={SRC_DB} user={user} password={password} "
            "application_name=direct-writer"
        )
        super().__init__(
            info, lambda i: [("UPDATE accounts SET note = %s WHERE id = %s", (f"direct {i}", i % 50 + 1))], rate=rate
        )

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                with psycopg.connect(self.conninfo, autocommit=True, connect_timeout=3) as conn:
                    while not self._stop.is_set():
                        self.committed += 1 if conn.execute(*self.statements(self.committed)[0]) else 0
                        self._stop.wait(1.0 / self.rate)
            except psycopg.Error as exc:
                self.failed += 1
                self.last_error = str(exc).strip()[:200]


def _direct_writer(user: str, password: str, rate: float = 50.0) -> DirectWriter:
    return DirectWriter(user, password, rate).start()


def test_checklist_refuses_a_writer_connected_straight_to_the_source(streaming_migration):
    api = streaming_migration
    writer = _direct_writer("cut_app", "cut_app", rate=5)
    try:
        time.sleep(1)
        run_id, run, states = cutover(api)
    finally:
        writer.stop()
    assert run["state"] == "failed" and states["checklist"] == "failed", states
    assert LEASES.latest_for_run(MIGRATION_ID, run_id) is None
    assert writer.committed > 0
    assert_clients_on_the_source()


def test_a_write_after_the_drain_point_outside_pgbouncer_aborts_the_switch(streaming_migration, tmp_path):
    """allow_direct_sessions: the fence ends the writer's session; it reconnects as the platform's own role
    (which no fence can make read-only) and writes inside the pause. The slot check finds the write after
    the drain point and the cutover aborts before the switch: nothing is lost, the write reaches the target
    when the pipeline resumes."""
    api = streaming_migration
    bench = Pgbench(tmp_path, rate=50, seconds=25)
    writer = _direct_writer("postgres", "postgres", rate=200)
    try:
        run_id, run, states = cutover(api, allow_direct_sessions=True)
    finally:
        writer.stop()
    processed, failed, output = bench.result()

    assert run["state"] == "failed" and states["cutover"] == "failed", states
    aborted = _event("cutover_aborted")
    assert "writes reached the origin" in aborted["message"] and "public.accounts" in aborted["message"], aborted
    assert aborted["details"]["fence"]["ended_sessions"], "the fence must have ended the direct session"
    assert failed == 0 and processed > 100, output
    assert_clients_on_the_source()
    assert_undone()


@pytest.mark.parametrize("passes", [0, pytest.param(8, marks=pytest.mark.chaos_full)])
def test_a_target_row_damaged_after_pre_validate_is_found_and_the_cutover_aborts(streaming_migration, tmp_path, passes):
    """A fault in the apply path (a trigger on the target corrupts one row as the sink writes it) after
    pre_validate passed: the verification of changed keys names the row and nothing switches. Without
    pre-pause passes the verification inside the pause finds it; with them, a pass finds it before pausing."""
    api = streaming_migration
    with psycopg.connect(conninfo(TARGET_PORT, DST_DB), autocommit=True) as conn:
        conn.execute(
            "CREATE FUNCTION corrupt() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            "IF NEW.note = 'corrupt me' THEN NEW.balance := -999; END IF; RETURN NEW; END $$"
        )
        conn.execute(
            "CREATE TRIGGER corrupt BEFORE INSERT OR UPDATE ON accounts FOR EACH ROW EXECUTE FUNCTION corrupt()"
        )
        conn.execute("ALTER TABLE accounts ENABLE ALWAYS TRIGGER corrupt")  # fires for the sink's replica session
    bench = Pgbench(tmp_path, rate=50, seconds=30)
    try:
        run_id = api.trigger_dag(
            "pg_cutover", conf={"migration_id": MIGRATION_ID, "backup": False, "precopy_passes": passes}
        )
        _wait_for_task(api, run_id, "pre_validate", ("success",))
        with psycopg.connect(conninfo(SOURCE_PORT, SRC_DB), autocommit=True) as conn:
            conn.execute("UPDATE accounts SET note = 'corrupt me' WHERE id = 7")
        run = api.wait_for_dag_run("pg_cutover", run_id, timeout=300, poll_seconds=1)
        states = task_states(api, run_id, "pg_cutover")
    finally:
        with psycopg.connect(conninfo(TARGET_PORT, DST_DB), autocommit=True) as conn:
            conn.execute("DROP TRIGGER corrupt ON accounts")
            conn.execute("DROP FUNCTION corrupt()")
    processed, failed, output = bench.result()

    assert run["state"] == "failed" and states["cutover"] == "failed", states
    aborted = _event("cutover_aborted")
    assert "public.accounts key (7)" in aborted["message"], aborted["message"]
    found_in_pause = "in-pause verification" in aborted["message"]
    print(f"damaged row found {'in the pause' if found_in_pause else 'by a pass before it'} ({passes} passes)")
    if passes == 0:
        assert found_in_pause and aborted["details"]["failed_step"] == "verify", aborted["message"]
        assert LEASES.latest_for_run(MIGRATION_ID, run_id).state == "released"
    assert failed == 0, output
    assert_clients_on_the_source()
    with psycopg.connect(conninfo(SOURCE_PORT, SRC_DB), autocommit=True) as conn:
        conn.execute("UPDATE accounts SET note = 'repaired' WHERE id = 7")  # re-sent by the pipeline
    assert_undone()


def _wait_for_task(api, run_id: str, task_id: str, states=("running", "success"), timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while {t["task_id"]: t["state"] for t in api.task_instances("pg_cutover", run_id)}.get(task_id) not in states:
        assert time.monotonic() < deadline, f"{task_id} never reached {states}"
        time.sleep(0.1)


def _wait_for_armed(run_id: str, timeout: float = 180):
    deadline = time.monotonic() + timeout
    while True:
        lease = LEASES.latest_for_run(MIGRATION_ID, run_id)
        if lease is not None and lease.state == "armed":
            return lease
        assert time.monotonic() < deadline, f"the cutover never paused (lease: {lease})"
        time.sleep(0.05)


class Blocker:
    """Makes one step inside the pause wait: `hold()` (before the run, or once the lease is armed when
    `armed`), `waiting()` true once the step waits on it, `release()` after."""

    def __init__(
        self, hold: Callable[[], None], waiting: Callable[[], bool], release: Callable[[], None], armed: bool = False
    ) -> None:
        self.hold, self.waiting, self.release, self.armed = hold, waiting, release, armed


def _table_lock(port: int, dbname: str, table: str) -> Blocker:
    """A reporting transaction left open on one server holds `table` (ACCESS SHARE): an ALTER TABLE of it waits.
    It runs as a read-only role, so the fence lists it as a direct session but has no reason to end it."""
    holder: dict = {"conn": psycopg.connect(conninfo(port, dbname) + " user=cut_reader password=cut_reader")}

    def waiting() -> bool:
        with psycopg.connect(conninfo(port, dbname), autocommit=True) as conn:
            return bool(
                conn.execute(
                    "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
                    "WHERE NOT l.granted AND c.relname = %s",
                    (table,),
                ).fetchone()[0]
            )

    return Blocker(
        lambda: holder["conn"].execute(f"SELECT count(*) FROM {table}"),  # noqa: S608 - test table
        waiting,
        lambda: holder["conn"].close(),
    )


def _routes_file_lock() -> Blocker:
    """Another process holds the second PgBouncer's routes-file lock (from the pause on): the switch waits."""
    path = PGBOUNCERS[6433].routes_file
    handle: dict = {}

    def hold() -> None:
        handle["file"] = open(path.with_name(path.name + ".lock"), "a")  # noqa: SIM115
        fcntl.flock(handle["file"].fileno(), fcntl.LOCK_EX)

    def waiting() -> bool:
        with psycopg.connect(conninfo(5435, "migration_control"), autocommit=True) as conn:
            return bool(
                conn.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE state = 'idle in transaction' "
                    "AND query LIKE '%%pause_lease%%FOR UPDATE%%'"
                ).fetchone()[0]
            )

    return Blocker(hold, waiting, lambda: handle["file"].close(), armed=True)


def _native_subscription_disabled() -> Blocker:
    """The native channel's subscription disabled after the checklist: the drain waits for its flush position.
    (The abort enables it again.)"""

    def toggle(enabled: bool) -> None:
        with psycopg.connect(conninfo(TARGET_PORT, DST_DB), autocommit=True) as conn:
            conn.execute(f"ALTER SUBSCRIPTION {NAMES.native_subscription} {'ENABLE' if enabled else 'DISABLE'}")

    armed_since: dict = {}

    def waiting() -> bool:
        armed_since.setdefault("t", time.monotonic())
        return time.monotonic() - armed_since["t"] > 0.5  # the drain starts within ms of the pause

    return Blocker(lambda: toggle(False), waiting, lambda: toggle(True), armed=False)


def _open_transaction_through_pgbouncer() -> Blocker:
    """A client of the first PgBouncer inside an open transaction: PAUSE waits for it to finish (it holds a
    server connection), so the pause step waits; the guard's RESUME at the deadline lets the others go on."""
    holder: dict = {}

    def hold() -> None:
        holder["conn"] = psycopg.connect(f"host=127.0.0.1 port=6432 dbname={SRC_DB} user=postgres password=postgres")
        holder["conn"].execute("SELECT count(*) FROM accounts")

    def release() -> None:
        holder["conn"].close()

    return Blocker(hold, lambda: PGBOUNCERS[6432].is_paused(SRC_DB), release)


BLOCKERS = {
    # step inside the pause -> what makes it wait
    "pause": _open_transaction_through_pgbouncer,
    "drain": _native_subscription_disabled,
    "sequences": lambda: _table_lock(TARGET_PORT, DST_DB, "orders"),  # identity ALWAYS on the target
    "reverse": lambda: _table_lock(SOURCE_PORT, SRC_DB, "orders"),  # identity BY DEFAULT on the source
    "switch": _routes_file_lock,
}


def _cutover_with_blocked_step(api, tmp_path, step: str, kill: bool) -> float:
    """A cutover whose `step` waits on a blocker. Without `kill` the step gives up at the pause's budget and
    the task aborts by itself; with it, the task's process is killed with -9 while it waits and the pause
    guard ends the pause at the deadline. Returns how long every PgBouncer stayed paused."""
    blocker = BLOCKERS[step]()
    bench = Pgbench(tmp_path, rate=50, seconds=40)
    time.sleep(2)
    try:
        if not blocker.armed and step != "drain":
            blocker.hold()
        # The blockers are sessions of their own on the servers: allowed, as the reporting sessions they are.
        run_id = api.trigger_dag(
            "pg_cutover",
            conf={
                "migration_id": MIGRATION_ID,
                "backup": False,
                "max_pause_seconds": MAX_PAUSE,
                "allow_direct_sessions": True,
            },
        )
        if step == "drain":
            _wait_for_task(api, run_id, "checklist", ("success",))
            blocker.hold()
        lease = _wait_for_armed(run_id)
        if blocker.armed:
            blocker.hold()
        deadline = time.monotonic() + MAX_PAUSE + 10
        while not blocker.waiting():
            assert time.monotonic() < deadline, f"{step} never waited on its blocker"
            time.sleep(0.02)
        if kill:
            pid = api.request("GET", f"/dags/pg_cutover/dagRuns/{run_id}/taskInstances/cutover")["pid"]
            os.kill(pid, signal.SIGKILL)
            print(f"killed the cutover task (pid {pid}) while {step} waited")
            while LEASES.get(lease.lease_id).active:
                assert time.monotonic() < deadline, "nobody ended the pause"
                time.sleep(0.05)
            ended = LEASES.get(lease.lease_id)
            assert ended.state == "expired" and ended.ended_by == "the pause guard", ended
            time.sleep(0.5)  # the guard settles right after it wins
            assert_clients_on_the_source()
        run = api.wait_for_dag_run("pg_cutover", run_id, timeout=300, poll_seconds=1)
    finally:
        blocker.release()
    states = task_states(api, run_id, "pg_cutover")
    processed, failed, output = bench.result()
    ended = LEASES.get(lease.lease_id)
    paused = (ended.ended_at - ended.armed_at).total_seconds()
    print(
        f"{'kill -9 in' if kill else 'failing'} {step}: writes paused {paused:.2f}s (lease {ended.state} by "
        f"{ended.ended_by})"
    )
    fault = f"kill -9 of the cutover task while `{step}` waits" if kill else f"`{step}` cannot finish (held lock)"
    FAULT_ROWS.append(f"| {fault} (max_pause_seconds {MAX_PAUSE}) | {paused:.2f} s | {ended.ended_by} | {failed} |")

    assert run["state"] == "failed" and states["cutover"] == "failed", states
    assert states["abort_cutover"] == "success", states
    assert paused <= MAX_PAUSE + 2, f"the pause must end within max_pause_seconds + 2 s ({paused:.2f}s)"
    assert failed == 0 and processed > 100, output
    assert_clients_on_the_source()
    if not kill:
        assert _event("cutover_aborted")["details"]["failed_step"] == step
    assert "lease" in _event("cutover_undone")["message"]
    assert_undone()
    return paused


@pytest.mark.parametrize(
    "step",
    [
        pytest.param("sequences", marks=pytest.mark.chaos_full),
        pytest.param("reverse", marks=pytest.mark.chaos_full),
        "switch",
    ],
)
def test_a_step_that_cannot_finish_in_the_pause_aborts_it(streaming_migration, tmp_path, step):
    paused = _cutover_with_blocked_step(streaming_migration, tmp_path, step, kill=False)
    assert paused < MAX_PAUSE, "the task ends its own pause before the deadline"


@pytest.mark.parametrize(
    "step",
    [
        pytest.param("drain"),
        pytest.param("switch", marks=pytest.mark.chaos_full),
        pytest.param("pause", marks=pytest.mark.chaos_full),
        pytest.param("sequences", marks=pytest.mark.chaos_full),
        pytest.param("reverse", marks=pytest.mark.chaos_full),
    ],
)
def test_kill_9_of_the_cutover_task_inside_the_pause(streaming_migration, tmp_path, step):
    paused = _cutover_with_blocked_step(streaming_migration, tmp_path, step, kill=True)
    assert paused >= MAX_PAUSE - 0.5, "the guard must not end a pause before its deadline"


@pytest.mark.chaos_full  # the fault matrix's case 8 is the same fault on its own migration
def test_connect_killed_inside_the_pause_aborts_and_clients_stay_on_the_source(streaming_migration, tmp_path):
    """kill -9 of the Kafka Connect worker once writes are paused: the drain cannot finish, the cutover aborts,
    clients resume on the source; `make stack-up` and pg_migration_restart bring the pipeline back."""
    api = streaming_migration
    bench = Pgbench(tmp_path, rate=50, seconds=35)
    time.sleep(2)
    run_id = api.trigger_dag(
        "pg_cutover", conf={"migration_id": MIGRATION_ID, "backup": False, "max_pause_seconds": MAX_PAUSE}
    )
    _wait_for_armed(run_id)
    kill_component("connect")
    run = api.wait_for_dag_run("pg_cutover", run_id, timeout=300, poll_seconds=1)
    states = task_states(api, run_id, "pg_cutover")
    processed, failed, output = bench.result()
    assert run["state"] == "failed" and states["cutover"] == "failed", states
    assert failed == 0 and processed > 100, output
    assert_clients_on_the_source()
    assert STORE.get(MIGRATION_ID)["phase"] == "streaming"
    stack_up()
    assert component_pid("connect")
    run_id, run, states = run_other_dag(api, "pg_migration_restart", {"migration_id": MIGRATION_ID})
    assert run["state"] == "success", states
    assert_undone()


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
        conn.execute('DELETE FROM "ClientsÉté" WHERE "N° client" <= 5')
        conn.execute('UPDATE "ClientsÉté" SET "Nom complet" = %s WHERE "N° client" BETWEEN 10 AND 14', ("abîmé",))
    bench = Pgbench(tmp_path, rate=50, seconds=20)
    tables = ["public.accounts", "public.audit", "public.ClientsÉté"]
    run_id, run, states = run_other_dag(api, "pg_migration_resync", {"migration_id": MIGRATION_ID, "tables": tables})
    processed, failed, output = bench.result()
    assert run["state"] == "success", f"pg_migration_resync {run_id}: {states}"
    assert failed == 0, output[-1500:]
    assert wait_until_identical(SRC_DB, DST_DB, ["public"]) == {}
    assert CONNECT.get_status(NAMES.source_connector)["connector"]["state"] == "RUNNING"


def test_cutover_under_load_through_two_pgbouncers_has_zero_failed_transactions(streaming_migration, tmp_path):
    """The rerun after every abort above succeeds: both PgBouncers route to the target, the pause is short,
    the sequences (identity, serial, standalone) are past the source's, the application role is read-only on
    the source, the foreign key streaming left NOT VALID is validated, and post_validate finds them identical."""
    api = streaming_migration
    with psycopg.connect(conninfo(TARGET_PORT, DST_DB), autocommit=True) as conn:
        conn.execute("ALTER TABLE orders DROP CONSTRAINT orders_account_fkey")
        conn.execute(
            "ALTER TABLE orders ADD CONSTRAINT orders_account_fkey FOREIGN KEY (account) "
            "REFERENCES accounts (id) NOT VALID"
        )
        view_at_load = conn.execute("SELECT sum(orders) FROM order_totals").fetchone()[0]
    with psycopg.connect(conninfo(SOURCE_PORT, SRC_DB), autocommit=True) as conn:
        conn.execute("INSERT INTO orders (account, amount) SELECT 1, 1 FROM generate_series(1, 10)")
        orders_before = conn.execute("SELECT count(*) FROM orders").fetchone()[0]
    run_id = api.trigger_dag("pg_cutover", conf={"migration_id": MIGRATION_ID, "backup": True})
    _wait_for_task(api, run_id, "pre_validate", ("success",))
    bench = Pgbench(tmp_path, rate=100, seconds=45)  # from before the pause until after the switch
    run = api.wait_for_dag_run("pg_cutover", run_id, timeout=400, poll_seconds=1)
    states = task_states(api, run_id, "pg_cutover")
    processed, failed, output = bench.result()

    assert run["state"] == "success", f"pg_cutover {run_id}: {states}"
    assert failed == 0 and processed > 1000, output
    cut = _event("cut_over")["details"]
    assert cut["verification"]["records"] > 0, "the pause must verify changes written right before it"
    print(
        f"cutover write pause: {cut['pause_seconds']:.3f}s; steps: "
        + ", ".join(f"{s['step']} {s['seconds'] * 1000:.0f} ms" for s in cut["steps"])
    )
    assert cut["pause_seconds"] < MAX_PAUSE
    # The drain's multi-broker proof ran inside the pause: after the slot confirmed, the sink passed the ends again.
    assert cut["drain"]["slot_confirmed_at"] <= cut["drain"]["sink_committed_after_slot_at"] < MAX_PAUSE, cut["drain"]
    assert [s["step"] for s in cut["steps"]] == [
        "pause",
        "fence",
        "drain",
        "capture",
        "verify",
        "sequences",
        "reverse",
        "writes",
        "switch",
        "resume",
    ]
    assert cut["late_writes"] == {}
    assert _routes() == {6432: (TARGET_PORT, DST_DB), 6433: (TARGET_PORT, DST_DB)}
    assert STORE.get(MIGRATION_ID)["phase"] == "cut_over"
    assert "cut_app" in STORE.get(MIGRATION_ID)["fences"]["source"]["roles"]
    with psycopg.connect(conninfo(SOURCE_PORT, SRC_DB) + " user=cut_app password=cut_app", autocommit=True) as app:
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            app.execute("UPDATE accounts SET note = 'late' WHERE id = 1")
    switched_at = _event("cut_over")["at"]
    with psycopg.connect(conninfo(TARGET_PORT, DST_DB), autocommit=True) as conn:
        after = conn.execute("SELECT count(*) FROM events WHERE at > %s", (switched_at,)).fetchone()[0]
        target_next = [
            conn.execute(f"SELECT nextval('{s}')").fetchone()[0]  # noqa: S608 - fixed names
            for s in ("orders_id_seq", "events_id_seq", "invoice_no")
        ]
        fk_valid = conn.execute(
            "SELECT convalidated FROM pg_constraint WHERE conname = 'orders_account_fkey'"
        ).fetchone()
        view_now = conn.execute("SELECT sum(orders) FROM order_totals").fetchone()[0]
    assert after > 0, "pgbench's writes after the switch must land on the target"
    # Refreshed before the pause: it counts every order written before pg_cutover started, unlike the load's refresh.
    assert view_at_load < orders_before <= view_now, (view_at_load, orders_before, view_now)
    assert states["refresh_materialized_views"] == "success", states
    assert fk_valid == (True,), "validate_foreign_keys must validate what streaming left NOT VALID"
    with psycopg.connect(conninfo(SOURCE_PORT, SRC_DB), autocommit=True) as conn:
        source_last = [
            conn.execute(f"SELECT last_value FROM {s}").fetchone()[0]  # noqa: S608 - fixed names
            for s in ("orders_id_seq", "events_id_seq", "invoice_no")
        ]
    assert all(t > s for t, s in zip(target_next, source_last, strict=True)), (target_next, source_last)
    assert states["post_validate"] == "success", states
    with psycopg.connect(conninfo(TARGET_PORT, DST_DB), autocommit=True) as conn:  # an odd-named table, reversed
        conn.execute('UPDATE "ClientsÉté" SET "Nom complet" = %s WHERE "N° client" = 1', ("après la bascule",))
        conn.execute('INSERT INTO "ClientsÉté" VALUES (1001, %s)', ("nouveau",))
    assert wait_until_identical(SRC_DB, DST_DB, ["public"]) == {}, "reverse replication carries target writes back"
    # The reverse subscription (on the source) reads the target's password from the source server's own file.
    with psycopg.connect(conninfo(SOURCE_PORT, SRC_DB), autocommit=True) as conn:
        (reverse_conninfo,) = conn.execute(
            "SELECT subconninfo FROM pg_subscription WHERE subname = %s", (NAMES.reversed().native_subscription,)
        ).fetchone()
    assert "password=" not in reverse_conninfo and "passfile=" in reverse_conninfo, reverse_conninfo
    backup = Path(_event("backup_taken")["details"]["path"])
    assert (backup / "source.dump" / "toc.dat").exists() and (backup / "connectors.json").exists()


def test_the_forward_slot_and_ddl_on_the_target_after_the_cutover_are_alerted(streaming_migration):
    """After the cutover the forward slot stays on the source for a rollback and keeps its WAL: the monitor says so
    once it retains more than `slot_retained_wal_mb` (0 here: any WAL), naming pg_migration_teardown. A table
    created on the target then is DDL reverse replication does not carry: a P1 naming it."""
    api = streaming_migration
    control = PgEndpoint("127.0.0.1", 5435, "migration_control", "postgres", "postgres")
    override_alert_thresholds(api, MIGRATION_ID, {"slot_retained_wal_mb": 0})
    with psycopg.connect(conninfo(TARGET_PORT, DST_DB), autocommit=True) as conn:
        conn.execute("CREATE TABLE notes_after_cutover (id int PRIMARY KEY, body text)")
    try:
        run_id, run, states = run_other_dag(api, "pg_migration_monitor", {"migration_ids": [MIGRATION_ID]}, timeout=240)
        assert run["state"] == "success", f"pg_migration_monitor {run_id}: {states}"
        open_alerts = AlertStore(control).alerts(MIGRATION_ID, open_only=True)
        alerts = [a for a in open_alerts if a["condition"] == "forward_slot_retained"]
        assert len(alerts) == 1 and alerts[0]["severity"] == "P2", alerts
        assert NAMES.slot in alerts[0]["message"] and "pg_migration_teardown" in alerts[0]["message"], alerts
        ddl = [a for a in open_alerts if a["condition"] == "target_ddl_after_cutover"]
        assert len(ddl) == 1 and ddl[0]["severity"] == "P1", open_alerts
        assert "tables created on the target: public.notes_after_cutover" in ddl[0]["message"], ddl
        assert not [a for a in open_alerts if a["condition"] == "schema_mismatch"], open_alerts
    finally:
        override_alert_thresholds(api, MIGRATION_ID, None)
        with psycopg.connect(conninfo(TARGET_PORT, DST_DB), autocommit=True) as conn:
            conn.execute("DROP TABLE IF EXISTS notes_after_cutover")


def test_rollback_without_reverse_connectors_still_replays_every_target_write(streaming_migration, tmp_path):
    """The reverse connectors are lost after the cutover (the slot made in the pause keeps every change):
    pg_rollback deploys them, drains them, verifies, and every PgBouncer routes to the source again."""
    api = streaming_migration
    for name in (NAMES.reversed().source_connector, NAMES.reversed().sink_connector):
        CONNECT.delete(name)
    started = time.monotonic()
    run_id = api.trigger_dag("pg_rollback", conf={"migration_id": MIGRATION_ID, "reason": "test drill"})
    bench = Pgbench(tmp_path, rate=100, seconds=40)  # the check deploys the reverse connectors meanwhile
    run = api.wait_for_dag_run("pg_rollback", run_id, timeout=400, poll_seconds=1)
    rollback_seconds = time.monotonic() - started
    states = task_states(api, run_id, "pg_rollback")
    processed, failed, output = bench.result()

    assert run["state"] == "success", f"pg_rollback {run_id}: {states}"
    back = _event("switched_back")["details"]
    print(f"rollback took {rollback_seconds:.1f}s; write pause {back['pause_seconds']:.3f}s")
    assert rollback_seconds < 120 and back["pause_seconds"] < MAX_PAUSE
    assert failed == 0 and processed > 1000, output
    assert_clients_on_the_source()
    state = STORE.get(MIGRATION_ID)
    assert state["phase"] == "streaming" and "source" not in state["fences"], "forward replication resumes"
    assert "cut_app" in state["fences"]["target"]["roles"], "the target keeps the fence clients left"
    for name in (NAMES.source_connector, NAMES.sink_connector):
        CONNECT.wait_for_state(name, "RUNNING", timeout=90)
    assert not CONNECT.exists(NAMES.reversed().source_connector) and _slots(TARGET_PORT) == []
    with psycopg.connect(conninfo(SOURCE_PORT, SRC_DB) + " user=cut_app password=cut_app", autocommit=True) as app:
        app.execute("UPDATE accounts SET note = 'writable again' WHERE id = 1")  # the source fence is lifted
    for table in ("orders", "events"):
        with psycopg.connect(conninfo(TARGET_PORT, DST_DB), autocommit=True) as conn:
            on_target = {r[0] for r in conn.execute(f"SELECT id FROM {table}")}  # noqa: S608
        with psycopg.connect(conninfo(SOURCE_PORT, SRC_DB), autocommit=True) as conn:
            on_source = {r[0] for r in conn.execute(f"SELECT id FROM {table}")}  # noqa: S608
        assert on_target <= on_source, f"{table}: {len(on_target - on_source)} rows written on the target are missing"
    # The target follows the source again (replayed changes are idempotent; the native channel copied anew).
    assert wait_until_identical(SRC_DB, DST_DB, ["public"]) == {}
    report = Path(_event("rollback_report")["details"]["path"])
    assert "test drill" in report.read_text()


def test_teardown_leaves_no_slot_publication_subscription_or_connector(streaming_migration):
    api = streaming_migration
    # After the rollback the migration streams again: tearing it down is a choice (force).
    run_id, run, states = run_other_dag(api, "pg_migration_teardown", {"migration_id": MIGRATION_ID, "force": True})
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
