"""`make demo`: a real migration of a seeded shop database under live writes, end to end.

Seeds `shop` on the source, starts application writes through PgBouncer (pgbench), triggers the
`pg_migration` DAG through Airflow's REST API and follows it, stops the writes, waits for the
pipeline to drain, and compares every table on both sides. Then it cuts over under live writes
(`pg_cutover`: clients move to the target through PgBouncer), prints the write pause and the failed
transactions (0), waits for reverse replication to bring the target's writes back to the source and
compares again: the migration ends rollback-ready. Rerunnable: each run starts over.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "plugins"), str(REPO)]  # pgmigrate, devtools

from psycopg import sql  # noqa: E402

from devtools.databases import database_exists, recreate_database  # noqa: E402
from devtools.local_stack import connect_client  # noqa: E402
from pgmigrate.cli.airflow_api import AirflowApiClient  # noqa: E402
from pgmigrate.control.state import MigrationStateStore  # noqa: E402
from pgmigrate.core.endpoints import PgEndpoint  # noqa: E402
from pgmigrate.core.migration_tables import resolve_tables  # noqa: E402
from pgmigrate.core.naming import MigrationNames  # noqa: E402
from pgmigrate.core.params import MigrationParams  # noqa: E402
from pgmigrate.cutover.drain import DrainTimeout  # noqa: E402
from pgmigrate.cutover.drain import wait_drained as drain_pipeline  # noqa: E402
from pgmigrate.cutover.reverse import remove_reverse_replication  # noqa: E402
from pgmigrate.cutover.routing.switch import PgBouncerRouteSwitch  # noqa: E402
from pgmigrate.stream.lag import read_lag  # noqa: E402
from pgmigrate.stream.teardown import teardown_migration  # noqa: E402
from pgmigrate.validate.checksums import set_canonical_session, table_checksum  # noqa: E402

MIGRATION_ID = os.environ.get("DEMO_MIGRATION_ID", "demo")
PG_BIN = Path("/usr/lib/postgresql/15/bin")
SOURCE = PgEndpoint("127.0.0.1", 5433, "shop", "postgres", "postgres")
TARGET = PgEndpoint("127.0.0.1", 5434, "shop", "postgres", "postgres")
CONTROL = PgEndpoint("127.0.0.1", 5435, "migration_control", "postgres", "postgres")
WRITE_RATE_TPS = int(os.environ.get("DEMO_WRITE_TPS", "50"))
RUN_TIMEOUT = float(os.environ.get("DEMO_TIMEOUT", "1800"))
UI = "http://127.0.0.1:8080"
BOOTSTRAP = "127.0.0.1:9092"
# The two PgBouncers of the local stack: the application's clients are spread over both (as behind a load
# balancer), and the cutover switches both together.
PGBOUNCERS = {
    port: PgBouncerRouteSwitch(
        PgEndpoint("127.0.0.1", port, "pgbouncer", "postgres", "postgres"), REPO / ".stack" / folder / "routes.ini"
    )
    for port, folder in ((6432, "pgbouncer"), (6433, "pgbouncer2"))
}


def say(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} [demo] {message}", flush=True)


def stop_earlier_runs(api: AirflowApiClient) -> None:
    """A run of an earlier, interrupted demo would hold the DAG (max_active_runs=1): mark it failed."""
    runs = api.request("GET", "/dags/pg_migration/dagRuns?state=running&state=queued")["dag_runs"]
    for run in runs:
        if (run.get("conf") or {}).get("migration_id") == MIGRATION_ID:
            say(f"marking the earlier demo run {run['dag_run_id']} failed")
            api.request("PATCH", f"/dags/pg_migration/dagRuns/{run['dag_run_id']}", json={"state": "failed"})


def reset(names: MigrationNames) -> None:
    say(f"resetting any earlier demo run (migration_id {MIGRATION_ID})")
    # The slot, connectors and topics go either way; the publication lives in `shop` if it exists.
    endpoint = (
        SOURCE if database_exists(SOURCE) else PgEndpoint(SOURCE.host, SOURCE.port, "postgres", "postgres", "postgres")
    )
    connect = connect_client()
    target = TARGET if database_exists(TARGET) else None
    # Clients back on the source first: an earlier demo may have cut over.
    for pgbouncer in PGBOUNCERS.values():
        pgbouncer.resume(SOURCE.dbname)
        pgbouncer.remove_route(SOURCE.dbname)
    if target is not None and endpoint is SOURCE:
        remove_reverse_replication(connect, BOOTSTRAP, SOURCE, TARGET, names)
    teardown_migration(connect, BOOTSTRAP, endpoint, names, target=target)
    recreate_database(SOURCE)
    recreate_database(TARGET)
    with CONTROL.connect(autocommit=True) as conn:
        # The earlier run's record, timeline, lag samples and alerts: the report covers this run only.
        for table in ("migration", "migration_event", "lag_sample", "snapshot_table", "alert"):
            exists = conn.execute("SELECT to_regclass(%s)", (table,)).fetchone()[0]
            if exists:
                conn.execute(
                    sql.SQL("DELETE FROM {} WHERE migration_id = %s").format(sql.Identifier(table)), (MIGRATION_ID,)
                )


def seed() -> None:
    say("seeding shop on the source (customers, products, orders, order lines)")
    started = time.monotonic()
    for name in ("schema.sql", "seed.sql"):
        subprocess.run(
            [str(PG_BIN / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", str(REPO / "include/sql/demo" / name)],
            env=SOURCE.libpq_env(),
            check=True,
        )
    with SOURCE.connect(autocommit=True) as conn:
        counts = {
            t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]  # noqa: S608
            for t in ("customers", "products", "orders", "order_lines")
        }
    say(f"seeded in {time.monotonic() - started:.0f}s: {counts}")


class LiveWrites:
    """pgbench through both PgBouncers (one client each), the application's writes during the demo.

    Stopped with SIGTERM, never SIGINT: a shell that runs the demo in the background (`nohup make demo &`)
    starts its children with SIGINT ignored, and pgbench would never stop."""

    def __init__(self, seconds: int) -> None:
        say(
            f"starting live writes through both PgBouncers (127.0.0.1:6432 and :6433, database shop), "
            f"{WRITE_RATE_TPS} transactions/s"
        )
        self.processes = [
            subprocess.Popen(
                [
                    str(PG_BIN / "pgbench"),
                    "-n",
                    "-c",
                    "1",
                    "-j",
                    "1",
                    "-R",
                    str(max(1, WRITE_RATE_TPS // 2)),
                    "-T",
                    str(seconds),
                    "-P",
                    "30",
                    "-f",
                    str(REPO / "include/sql/demo/live_writes.pgbench"),
                    "shop",
                ],
                env=dict(SOURCE.libpq_env(), PGPORT=str(port)),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                start_new_session=True,
            )
            for port in PGBOUNCERS
        ]

    def stop(self, wait: bool = False) -> tuple[str, int]:
        """(summary, failed transactions). `wait`: let pgbench finish its -T (only then it prints its summary
        with the failed transactions); otherwise end it now and count what it wrote."""
        outputs = []
        for process in self.processes:
            if not wait and process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
            try:
                outputs.append(process.communicate(timeout=300 if wait else 30)[0])
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                outputs.append(process.communicate()[0])
        output = "\n".join(outputs)
        errors = [ln for ln in output.splitlines() if "ERROR" in ln or "aborted" in ln]
        processed = re.findall(r"number of transactions actually processed: (\d+)", output)
        failed = sum(int(n) for n in re.findall(r"number of failed transactions: (\d+)", output))
        if wait and len(processed) == len(self.processes):
            summary = f"{sum(int(n) for n in processed)} transactions through PgBouncer, {failed} failed"
        else:
            with SOURCE.connect(autocommit=True) as conn:
                orders = conn.execute("SELECT count(*) FROM orders WHERE note = 'live write'").fetchone()[0]
            summary = f"{orders} orders placed by the live writers"
        return summary + (f"; writer errors: {errors[:3]}" if errors else ""), failed + len(errors)


def follow(api: AirflowApiClient, run_id: str, dag_id: str = "pg_migration") -> dict:
    seen: dict[str, str] = {}

    def on_poll(run: dict, tasks: list[dict]) -> None:
        for task in sorted(tasks, key=lambda t: t.get("start_date") or "9"):
            state = task.get("state") or "none"
            # A mapped task (pg_validate's data_compare) lists once per table.
            name = task["task_id"] + (
                f" {task.get('rendered_map_index') or task['map_index']}" if task.get("map_index", -1) >= 0 else ""
            )
            if seen.get(name) != state:
                seen[name] = state
                say(f"task {name:<24} {state}")
        with CONTROL.connect(autocommit=True) as conn:
            row = (
                conn.execute(
                    "SELECT phase, last_lag_seconds FROM migration WHERE migration_id = %s", (MIGRATION_ID,)
                ).fetchone()
                if conn.execute("SELECT to_regclass('migration')").fetchone()[0]
                else None
            )
            copying = (
                conn.execute(
                    "SELECT table_name, rows_copied FROM snapshot_table WHERE migration_id = %s AND status = 'copying'",
                    (MIGRATION_ID,),
                ).fetchall()
                if conn.execute("SELECT to_regclass('snapshot_table')").fetchone()[0]
                else []
            )
        if copying:
            say("copying: " + ", ".join(f"{t} {r} rows" for t, r in copying))
        if row and row[1] is not None and seen.get("wait_caught_up") in ("deferred", "running", "success"):
            say(f"phase {row[0]}, last lag {row[1]:.1f}s")

    return api.wait_for_dag_run(dag_id, run_id, timeout=RUN_TIMEOUT, poll_seconds=2, on_poll=on_poll)


def wait_drained(names: MigrationNames, timeout: float = 300) -> None:
    """Every change committed before now is applied on the other side (positions, as cutover's drain
    does: heartbeat past this moment, sink offsets, native subscription LSN). `names.reverse`: the
    reverse pipeline (target -> source) after cutover."""
    direction = "reverse replication" if names.reverse else "the pipeline"
    say(f"waiting for {direction} to apply every write made so far")
    origin, destination = (TARGET, SOURCE) if names.reverse else (SOURCE, TARGET)
    try:
        result = drain_pipeline(origin, destination, names, BOOTSTRAP, timeout=timeout)
    except DrainTimeout as exc:
        raise SystemExit(
            f"{direction} did not drain within {timeout:.0f}s ({exc}): "
            f"{read_lag(origin, destination, names, BOOTSTRAP).describe()}"
        ) from exc
    say(f"drained in {result.seconds:.1f}s: {read_lag(origin, destination, names, BOOTSTRAP).describe()}")


def compare(params: MigrationParams) -> bool:
    tables = [t.ref for t in resolve_tables(SOURCE, params)]
    identical = True
    rows = []
    with SOURCE.connect(autocommit=True) as src, TARGET.connect(autocommit=True) as dst:
        set_canonical_session(src)
        set_canonical_session(dst)
        for table in tables:
            s, d = table_checksum(src, table), table_checksum(dst, table)
            same = s.matches(d)
            identical &= same
            rows.append(
                (
                    table.qualified,
                    s.rows,
                    d.rows,
                    s.checksum[:12],
                    d.checksum[:12],
                    "identical" if same else "DIFFERENT",
                )
            )
    header = ("table", "source rows", "target rows", "source checksum", "target checksum", "result")
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for line in [header, *rows]:
        print("  ".join(str(v).ljust(w) for v, w in zip(line, widths, strict=True)))
    return identical


def main() -> int:
    # `kill` or Ctrl-C: stop the writer on the way out (the `finally` below), never leave it running.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    names = MigrationNames(MIGRATION_ID)
    params = MigrationParams.from_dict({"migration_id": MIGRATION_ID})
    api = AirflowApiClient(UI, "admin", "admin")
    stop_earlier_runs(api)
    reset(names)
    seed()
    writer = LiveWrites(seconds=7200)
    try:
        api.request("PATCH", "/dags/pg_migration", json={"is_paused": False})
        run_id = api.trigger_dag("pg_migration", conf={"migration_id": MIGRATION_ID})
        say(f"triggered pg_migration run {run_id}: {UI}/dags/pg_migration/runs/{run_id}")
        run = follow(api, run_id)
    finally:
        summary, _ = writer.stop()
        say(f"live writes stopped: {summary}")
    if run["state"] != "success":
        failed = [t["task_id"] for t in api.task_instances("pg_migration", run_id) if t["state"] == "failed"]
        say(f"pg_migration run {run['state']}: failed tasks {failed}. Logs: {UI}/dags/pg_migration/runs/{run_id}")
        return 1
    wait_drained(names)
    if not compare(params):
        say("RESULT: DIFFERENT before cutover — see the table above; the migration's task logs say more.")
        return 1
    say("identical: the target streams every change from the source; now cutting over under live writes")
    return cut_over(api, names, params)


def cut_over(api: AirflowApiClient, names: MigrationNames, params: MigrationParams) -> int:
    writer = LiveWrites(seconds=40)
    try:
        time.sleep(5)
        run_id = api.trigger_dag("pg_cutover", conf={"migration_id": MIGRATION_ID, "max_pause_seconds": 10})
        say(f"triggered pg_cutover run {run_id}: {UI}/dags/pg_cutover/runs/{run_id}")
        run = follow(api, run_id, "pg_cutover")
    except BaseException:
        writer.stop()
        raise
    # pgbench runs its 40 s through the cutover: the writes after the switch land on the target.
    summary, failed = writer.stop(wait=True)
    say(f"live writes stopped: {summary}")
    if run["state"] != "success":
        tasks = [t["task_id"] for t in api.task_instances("pg_cutover", run_id) if t["state"] == "failed"]
        say(
            f"RESULT: cutover {run['state']} (failed tasks {tasks}); clients stay on the source. "
            f"Logs: {UI}/dags/pg_cutover/runs/{run_id}"
        )
        return 1
    events = MigrationStateStore(CONTROL).events(MIGRATION_ID)
    cut = next(e["details"] for e in reversed(events) if e["phase"] == "cut_over")
    pause = cut["pause_seconds"]
    say("the pause, step by step: " + ", ".join(f"{s['step']} {s['seconds'] * 1000:.0f} ms" for s in cut["steps"]))
    routes = ", ".join(f":{port} -> {p.current_route(SOURCE.dbname)}" for port, p in PGBOUNCERS.items())
    say(f"cut over: PgBouncer routes shop {routes}; client writes paused {pause:.3f}s; {failed} failed transactions")
    wait_drained(names.reversed())
    identical = compare(params)
    say(f"UI: {UI}/dags/pg_cutover/runs/{run_id} (admin / admin)")
    validated = deep_validation(api)
    say(f"report (timeline, lag chart, row-level validation, GE results, cutover pause): {write_demo_report()}")
    if identical and failed == 0 and validated:
        say(
            "RESULT: identical. Clients write to the target; reverse replication keeps the source identical, so "
            f"the cutover can be rolled back: scripts/migration rollback --migration-id {MIGRATION_ID} --reason '...'"
        )
        return 0
    say("RESULT: DIFFERENT after cutover (or failed client transactions) — see above.")
    return 1


def deep_validation(api: AirflowApiClient) -> bool:
    """pg_validate after the cutover: schema, row-level diff per table, Great Expectations, report."""
    api.request("PATCH", "/dags/pg_validate", json={"is_paused": False})
    run_id = api.trigger_dag("pg_validate", conf={"migration_id": MIGRATION_ID})
    say(f"triggered pg_validate run {run_id}: {UI}/dags/pg_validate/runs/{run_id}")
    run = follow(api, run_id, "pg_validate")
    if run["state"] != "success":
        say(f"pg_validate {run['state']}: the differing tables and keys are in its task logs")
    return run["state"] == "success"


def write_demo_report() -> str:
    from pgmigrate.report.migration_report import write_report
    from pgmigrate.report.report_data import collect_report_data, default_report_dir

    return write_report(collect_report_data(CONTROL, MIGRATION_ID), default_report_dir())["html"]


if __name__ == "__main__":
    sys.exit(main())
