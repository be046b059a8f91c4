"""Helpers for the end-to-end tests: scratch databases, Airflow connections, a concurrent writer,
and an independent comparison of source and target (written here, not the product's validator)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg import sql

from devtools.local_stack import connect_client
from pgmigrate.cli.airflow_api import AirflowApiClient
from pgmigrate.core.endpoints import PgEndpoint

SOURCE_PORT, TARGET_PORT = 5433, 5434
PASSWORD = "postgres"
AIRFLOW_URL = "http://127.0.0.1:8080"
BOOTSTRAP = "127.0.0.1:9092"
CONTROL = PgEndpoint("127.0.0.1", 5435, "migration_control", "postgres", PASSWORD)


def conninfo(port: int, dbname: str) -> str:
    return f"host=127.0.0.1 port={port} user=postgres password={PASSWORD} dbname={dbname} connect_timeout=10"


# The local stack's servers read the superuser's password from this file when one subscribes to the other
# (scripts/stack.d/postgres.sh): a migration's `subscriber_passfile` param names it.
SUBSCRIBER_PASSFILE = str(Path(__file__).resolve().parents[2] / ".stack" / "secrets" / "subscriber.pgpass")


def endpoint(port: int, dbname: str, password: str = PASSWORD) -> PgEndpoint:
    return PgEndpoint("127.0.0.1", port, dbname, "postgres", password)


def forget_migration(migration_id: str) -> None:
    """Remove what an earlier (possibly interrupted) test run of `migration_id` left: connectors with
    their offsets, topics and the slot, so its databases can be dropped and recreated."""
    from pgmigrate.core.naming import MigrationNames
    from pgmigrate.load.replication_slot import drop_slot_if_exists
    from pgmigrate.stream.pipeline_reset import delete_topics, remove_connectors

    names = MigrationNames(migration_id)
    for direction, port in ((names, SOURCE_PORT), (names.reversed(), TARGET_PORT)):  # reverse: after a cutover
        remove_connectors(connect_client(), direction)
        delete_topics(BOOTSTRAP, direction)
        server = PgEndpoint("127.0.0.1", port, "postgres", "postgres", PASSWORD)
        drop_slot_if_exists(server, direction.slot)
        drop_slot_if_exists(server, direction.native_subscription)


def tear_down_migration(migration_id: str, source_db: str, target_db: str) -> None:
    """Remove a test migration's pipeline (connectors with their offsets, slots, publications, topics)
    when its databases exist, or what an interrupted run left otherwise; then mark its state torn down
    and resolve its alerts, so the minute's monitor stops checking (and alerting on) it."""
    from devtools.databases import database_exists
    from pgmigrate.alerts.monitor import resolve_all
    from pgmigrate.control.state import MigrationStateStore
    from pgmigrate.core.naming import MigrationNames
    from pgmigrate.cutover.reverse import remove_reverse_replication
    from pgmigrate.stream.teardown import teardown_migration

    source, target = endpoint(SOURCE_PORT, source_db), endpoint(TARGET_PORT, target_db)
    if database_exists(source) and database_exists(target):
        names = MigrationNames(migration_id)
        remove_reverse_replication(connect_client(), BOOTSTRAP, source, target, names)  # after a cutover
        teardown_migration(connect_client(), BOOTSTRAP, source, names, target=target)
    else:
        forget_migration(migration_id)
    store = MigrationStateStore(CONTROL)
    # On a fresh stack the control tables exist only once a DAG (or the minute's monitor) has run: the first
    # module must not depend on that race.
    store.ensure_schema()
    if store.get(migration_id):
        store.upsert(migration_id, phase="torn_down")
        resolve_all(CONTROL, migration_id)


def airflow_api() -> AirflowApiClient:
    return AirflowApiClient(AIRFLOW_URL, "admin", "admin")


def fail_active_runs(api: AirflowApiClient, migration_id: str | None = None) -> None:
    """One run per migration at a time (its run lease): an interrupted earlier test's run of `migration_id` (of
    any migration when None) is marked failed, so this one's claim takes the lease over. Runs of other
    migrations are left alone; they run side by side."""
    for run in api.request("GET", "/dags/pg_migration/dagRuns?state=running&state=queued")["dag_runs"]:
        if migration_id is not None and (run.get("conf") or {}).get("migration_id") != migration_id:
            continue
        api.request("PATCH", f"/dags/pg_migration/dagRuns/{run['dag_run_id']}", json={"state": "failed"})


ALERT_THRESHOLDS = "pgmigrate_alert_thresholds"  # the monitor's Airflow Variable (pgmigrate.alerts.monitor)


def override_alert_thresholds(api: AirflowApiClient, migration_id: str, override: dict | None) -> None:
    """Set (or, with None, remove) one migration's entry under `migrations` in the monitor's thresholds
    Variable, keeping everything else in it."""
    import json

    from pgmigrate.cli.airflow_api import AirflowApiError

    try:
        current = json.loads(api.request("GET", f"/variables/{ALERT_THRESHOLDS}")["value"])
    except AirflowApiError:
        current = {}
    migrations = {k: v for k, v in current.get("migrations", {}).items() if k != migration_id}
    if override:
        migrations[migration_id] = override
    current = {k: v for k, v in current.items() if k != "migrations"}
    if migrations:
        current["migrations"] = migrations
    try:
        api.request("DELETE", f"/variables/{ALERT_THRESHOLDS}")
    except AirflowApiError:
        pass
    if current:
        api.request("POST", "/variables", json={"key": ALERT_THRESHOLDS, "value": json.dumps(current)})


def run_dag(api: AirflowApiClient, conf: dict, timeout: float = 600) -> tuple[str, dict, dict[str, str]]:
    """Trigger pg_migration and wait for it; returns (run_id, run, {task_id: state})."""
    api.request("PATCH", "/dags/pg_migration", json={"is_paused": False})
    fail_active_runs(api, conf.get("migration_id"))
    run_id = api.trigger_dag("pg_migration", conf=conf)
    run = api.wait_for_dag_run("pg_migration", run_id, timeout=timeout, poll_seconds=3)
    return run_id, run, task_states(api, run_id)


def run_other_dag(api: AirflowApiClient, dag_id: str, conf: dict, timeout: float = 300) -> tuple[str, dict, dict]:
    """Trigger `dag_id` (not pg_migration), wait for it; (run_id, run, task states)."""
    run_id = api.trigger_dag(dag_id, conf=conf)
    run = api.wait_for_dag_run(dag_id, run_id, timeout=timeout, poll_seconds=2)
    return run_id, run, task_states(api, run_id, dag_id)


def task_states(api: AirflowApiClient, run_id: str, dag_id: str = "pg_migration") -> dict[str, str]:
    return {t["task_id"]: t["state"] for t in api.task_instances(dag_id, run_id)}


def task_log(
    api: AirflowApiClient, run_id: str, task_id: str, try_number: int = 1, dag_id: str = "pg_migration"
) -> str:
    response = api.request(
        "GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/{try_number}?full_content=true"
    )
    content = response.get("content", "") if isinstance(response, dict) else response
    if isinstance(content, list):
        # Structured lines: the message in `event`, an exception's text in `error_detail`.
        lines = []
        for item in content:
            if isinstance(item, dict):
                lines.append(str(item.get("event", "")))
                for detail in item.get("error_detail") or []:
                    lines.append(f"{detail.get('exc_type')}: {detail.get('exc_value')}")
            else:
                lines.append(str(item))
        return "\n".join(lines)
    return str(content)


def table_fingerprints(port: int, dbname: str, schemas: list[str]) -> dict[str, tuple[int, str]]:
    """Independent comparison: count and md5 of every row's text form in a fixed order, per table
    (partitioned tables through their root; the platform's own schema excluded)."""
    with psycopg.connect(conninfo(port, dbname), autocommit=True) as conn:
        return fingerprints_on(conn, schemas)


def fingerprints_on(conn: psycopg.Connection, schemas: list[str]) -> dict[str, tuple[int, str]]:
    """`table_fingerprints` over an open connection (e.g. a REPEATABLE READ snapshot taken earlier)."""
    result = {}
    for name, value in (
        ("TimeZone", "UTC"),
        ("DateStyle", "ISO, YMD"),
        ("extra_float_digits", "3"),
        ("IntervalStyle", "postgres"),
        ("bytea_output", "hex"),
    ):
        conn.execute("SELECT set_config(%s, %s, false)", (name, value))
    tables = conn.execute(
        "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = ANY(%s) AND c.relkind IN ('r', 'p') AND NOT c.relispartition ORDER BY 1, 2",
        (schemas,),
    ).fetchall()
    for schema, table in tables:
        query = sql.SQL("SELECT count(*), md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) FROM {} t")
        count, digest = conn.execute(query.format(sql.Identifier(schema, table))).fetchone()
        result[f"{schema}.{table}"] = (count, digest)
    return result


def wait_until_identical(source_db: str, target_db: str, schemas: list[str], timeout: float = 180) -> dict:
    """Poll the independent comparison until both sides agree; returns the differences left at timeout."""
    deadline = time.monotonic() + timeout
    while True:
        src = table_fingerprints(SOURCE_PORT, source_db, schemas)
        dst = table_fingerprints(TARGET_PORT, target_db, schemas)
        diff = {t: (src.get(t), dst.get(t)) for t in set(src) | set(dst) if src.get(t) != dst.get(t)}
        if not diff or time.monotonic() > deadline:
            return diff
        time.sleep(3)


@dataclass
class ConcurrentWriter:
    """Runs `statements(i)` in its own transaction at about `rate` per second until stopped."""

    dbname: str
    statements: Callable[[int], list[tuple[str, tuple]]]
    rate: float = 20.0
    committed: int = 0
    errors: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> ConcurrentWriter:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        with psycopg.connect(conninfo(SOURCE_PORT, self.dbname)) as conn:
            i = 0
            while not self._stop.is_set():
                i += 1
                try:
                    with conn.transaction():
                        for statement, args in self.statements(i):
                            conn.execute(statement, args)
                    self.committed += 1
                except Exception as exc:  # recorded and asserted on by the test
                    self.errors.append(str(exc))
                    conn.rollback()
                self._stop.wait(1.0 / self.rate)

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=30)
