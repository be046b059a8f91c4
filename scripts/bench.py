"""`make bench`: performance figures of `pg_migration` on a database of a given size.

1. builds (or reuses) the `bench` database on the source: pgbench tables + wide jsonb/text tables;
2. measures the initial load of `pg_dump -Fd -j2` + `pg_restore -j2` into an empty target database;
3. runs `pg_migration` with `snapshot_method=copy` through Airflow, then measures apply lag while
   pgbench writes at a fixed rate (ALWAYS triggers on the target, see devtools.bench_lag);
4. runs it again with `snapshot_method=debezium`;
5. cutover and rollback (issue #13): for the bench database and a small one (`bench_small`, same layout),
   a `pg_migration` with `snapshot_method=copy`, then `--cutovers` rounds of `pg_cutover` and `pg_rollback`
   while pgbench writes through both PgBouncers; the write pause of each from the migration's timeline and
   pgbench's failed transactions (see devtools.bench_cutover);
6. prints one table (stdout) and writes it as JSON under .stack/bench/.
Progress goes to stderr. The bench migrations are torn down at the end (PgBouncer routes of the bench
databases back to the `*` fallback); the source databases stay for the next run. Timings need the machine to itself: the
bench waits for other pg_migration runs to finish, and retries when another run (e.g. the integration tests)
fails its own.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "plugins"), str(REPO)]  # pgmigrate, devtools

from devtools.bench_cutover import (  # noqa: E402
    BenchMigration,
    LoadSpec,
    SwitchRunFailed,
    run_rounds,
    teardown_cutover_migration,
)
from devtools.bench_data import database_size_mb, ensure_bench_database, plan_bench  # noqa: E402
from devtools.bench_lag import (  # noqa: E402
    HISTORY,
    PGBENCH_TIMEZONE,
    clear_samples,
    count_rows,
    install_lag_triggers,
    read_samples,
)
from devtools.bench_report import (  # noqa: E402
    SWITCH_DIRECTIONS,
    goals,
    lag_summary,
    ratio,
    render_table,
    switch_summary,
)
from devtools.databases import drop_database, recreate_database  # noqa: E402
from devtools.local_stack import connect_client  # noqa: E402
from pgmigrate.cli.airflow_api import AirflowApiClient, put_postgres_connection  # noqa: E402
from pgmigrate.core.endpoints import PgEndpoint  # noqa: E402
from pgmigrate.core.naming import MigrationNames  # noqa: E402
from pgmigrate.cutover.routing.switch import PgBouncerRouteSwitch  # noqa: E402
from pgmigrate.kafka.connect_client import ConnectClient  # noqa: E402
from pgmigrate.stream.teardown import teardown_migration  # noqa: E402

PG_BIN = Path(os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin"))
SOURCE = PgEndpoint("127.0.0.1", 5433, "bench", "postgres", "postgres")
SMALL_SOURCE = PgEndpoint("127.0.0.1", 5433, "bench_small", "postgres", "postgres")  # the cutover's small size
CONTROL = PgEndpoint("127.0.0.1", 5435, "migration_control", "postgres", "postgres")
TARGET_SERVER = PgEndpoint("127.0.0.1", 5434, "postgres", "postgres", "postgres")
AIRFLOW_URL = "http://127.0.0.1:8080"
KAFKA = "127.0.0.1:9092"
SOURCE_CONN_ID, TARGET_CONN_ID = "bench_source", "bench_target"
METHODS = ("copy", "debezium")
LOAD_TASKS = {
    "copy": ["copy_schema", "snapshot", "apply_post_data"],
    "debezium": ["copy_schema", "wait_snapshot", "apply_post_data"],
}
OUT_DIR = REPO / ".stack" / "bench"
STEPS = ("dump", "copy", "lag", "validation", "debezium", "cutover")
# The two PgBouncers of the local stack; the cutover switches both, the teardown puts both back.
PGBOUNCERS = {
    port: PgBouncerRouteSwitch(
        PgEndpoint("127.0.0.1", port, "pgbouncer", "postgres", "postgres"), REPO / ".stack" / folder / "routes.ini"
    )
    for port, folder in ((6432, "pgbouncer"), (6433, "pgbouncer2"))
}

log = logging.getLogger("bench")


class BenchStepFailed(RuntimeError):
    """One measurement could not be taken; the others are still reported."""


def target(name: str) -> PgEndpoint:
    return PgEndpoint(TARGET_SERVER.host, TARGET_SERVER.port, name, TARGET_SERVER.user, TARGET_SERVER.password)


def load_migration(method: str) -> BenchMigration:
    """The initial-load migrations share the connections bench_source / bench_target (one at a time)."""
    return BenchMigration(f"bench-{method}", SOURCE, SOURCE_CONN_ID, target(f"bench_{method}"), TARGET_CONN_ID)


# The cutover's two sizes, each its own migration, target database and connections: pg_cutover reads them
# from the migration's params, so they must stay put through every round.
CUTOVER_MIGRATIONS = {
    size: BenchMigration(
        f"bench-cut-{size}", source, f"bench_cut_{size}_source", target(f"bench_cut_{size}"), f"bench_cut_{size}_target"
    )
    for size, source in (("small", SMALL_SOURCE), ("large", SOURCE))
}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--size-mb",
        type=int,
        default=int(os.environ.get("BENCH_SIZE_MB", "1024")),
        help="size of the bench database (env BENCH_SIZE_MB; default 1024)",
    )
    parser.add_argument(
        "--tps",
        type=int,
        default=int(os.environ.get("BENCH_TPS", "500")),
        help="pgbench rate during the lag measurement (env BENCH_TPS; default 500)",
    )
    parser.add_argument(
        "--seconds",
        type=int,
        default=int(os.environ.get("BENCH_SECONDS", "60")),
        help="pgbench duration of the lag measurement (env BENCH_SECONDS; default 60)",
    )
    parser.add_argument(
        "--clients",
        type=int,
        default=4,
        help="pgbench clients of the lag measurement and of the cutovers, where half go through "
        "each PgBouncer (default 4)",
    )
    parser.add_argument(
        "--copy-parallelism", type=int, default=None, help="pg_migration copy_parallelism (default: the DAG's default)"
    )
    parser.add_argument(
        "--cutover-small-mb",
        type=int,
        default=int(os.environ.get("BENCH_CUTOVER_SMALL_MB", "100")),
        help="size of the cutover's small database bench_small (env BENCH_CUTOVER_SMALL_MB; default 100)",
    )
    parser.add_argument(
        "--cutover-tps",
        type=int,
        default=int(os.environ.get("BENCH_CUTOVER_TPS", "200")),
        help="pgbench rate in all during cutovers and rollbacks, half through each PgBouncer "
        "(env BENCH_CUTOVER_TPS; default 200)",
    )
    parser.add_argument(
        "--cutovers",
        type=int,
        default=int(os.environ.get("BENCH_CUTOVERS", "3")),
        help="cutovers (and as many rollbacks) per size (env BENCH_CUTOVERS; default 3)",
    )
    parser.add_argument(
        "--skip",
        action="append",
        default=[],
        choices=STEPS,
        help="leave out a measurement (repeatable; env BENCH_SKIP, space or comma separated)",
    )
    parser.add_argument(
        "--quiet-seconds",
        type=float,
        default=60,
        help="trigger only when no pg_migration run ended within this many seconds (default 60)",
    )
    parser.add_argument(
        "--retries", type=int, default=5, help="reruns of a DAG run that another pg_migration run failed (default 2)"
    )
    parser.add_argument("--run-timeout", type=float, default=4 * 3600, help="seconds per DAG run (default 4 h)")
    parser.add_argument("--keep-targets", action="store_true", help="keep the target databases at the end")
    args = parser.parse_args()
    from_env = [s for s in re.split(r"[\s,]+", os.environ.get("BENCH_SKIP", "")) if s]
    unknown = sorted(set(from_env) - set(STEPS))
    if unknown:
        parser.error(f"BENCH_SKIP: unknown {unknown}; choose from {', '.join(STEPS)}")
    args.skip = [*from_env, *args.skip]
    if args.cutovers < 1:
        parser.error("--cutovers must be at least 1")
    return args


# ---- pg_dump / pg_restore --------------------------------------------------------------------------


def measure_dump_restore() -> dict[str, Any]:
    dest = target("bench_restore")
    dump_dir = OUT_DIR / "dump"
    shutil.rmtree(dump_dir, ignore_errors=True)
    dump_dir.parent.mkdir(parents=True, exist_ok=True)
    recreate_database(dest)
    log.info("pg_dump -Fd -j2 of %s into %s", SOURCE.label, dump_dir)
    started = time.monotonic()
    subprocess.run([str(PG_BIN / "pg_dump"), "-Fd", "-j2", "-f", str(dump_dir)], env=SOURCE.libpq_env(), check=True)
    dumped = time.monotonic()
    log.info("pg_dump done in %.1fs; pg_restore -j2 into %s", dumped - started, dest.label)
    subprocess.run(
        [str(PG_BIN / "pg_restore"), "-j2", "-d", dest.dbname, str(dump_dir)], env=dest.libpq_env(), check=True
    )
    restored = time.monotonic()
    log.info("pg_restore done in %.1fs", restored - dumped)
    shutil.rmtree(dump_dir, ignore_errors=True)
    return {
        "seconds": round(restored - started, 2),
        "dump_seconds": round(dumped - started, 2),
        "restore_seconds": round(restored - dumped, 2),
        "target_database": dest.dbname,
    }


# ---- pg_migration through Airflow ------------------------------------------------------------------


def active_runs(api: AirflowApiClient) -> list[dict[str, Any]]:
    return api.request("GET", "/dags/pg_migration/dagRuns?state=running&state=queued")["dag_runs"]


def fail_stale_bench_runs(api: AirflowApiClient) -> None:
    """A run of an interrupted earlier bench would hold the DAG: mark only such runs failed."""
    ours = {f"bench-{m}" for m in METHODS} | {m.migration_id for m in CUTOVER_MIGRATIONS.values()}
    for run in active_runs(api):
        if (run.get("conf") or {}).get("migration_id") in ours:
            log.info("marking the earlier bench run %s failed", run["dag_run_id"])
            api.request("PATCH", f"/dags/pg_migration/dagRuns/{run['dag_run_id']}", json={"state": "failed"})


def wait_until_dag_free(api: AirflowApiClient, quiet_seconds: float, timeout: float = 3 * 3600) -> None:
    """Timings need the machine to itself, and the integration tests fail active runs of their migrations before
    starting theirs: wait until no run is active and none ended within `quiet_seconds` (tests run back to back)."""
    deadline, last_said = time.monotonic() + timeout, 0.0
    while True:
        runs = api.request("GET", "/dags/pg_migration/dagRuns?order_by=-run_after&limit=10")["dag_runs"]
        active = [r for r in runs if r["state"] in ("running", "queued")]
        ended = [t for r in runs if (t := parse_time(r.get("end_date")))]
        quiet_for = (datetime.now(UTC) - max(ended)).total_seconds() if ended else quiet_seconds
        if not active and quiet_for >= quiet_seconds:
            return
        if time.monotonic() > deadline:
            raise BenchStepFailed(f"pg_migration stayed busy for {timeout:.0f}s; try again later")
        if time.monotonic() - last_said > 30:
            if active:
                who = ", ".join(f"{r['dag_run_id']} ({(r.get('conf') or {}).get('migration_id')})" for r in active)
                log.info("pg_migration is busy with %s; waiting for it to finish (timings need the machine)", who)
            else:
                log.info(
                    "a pg_migration run ended %.0fs ago; waiting until none ran for %.0fs", quiet_for, quiet_seconds
                )
            last_said = time.monotonic()
        time.sleep(5)


def parse_time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


def follow(api: AirflowApiClient, run_id: str, source: PgEndpoint, dest: PgEndpoint, timeout: float) -> dict[str, Any]:
    """Wait for the run; log each task's state changes and, every 30 s, how much the target holds."""
    seen: dict[str, str] = {}
    source_mb = database_size_mb(source)
    started, last_progress = time.monotonic(), time.monotonic()

    def on_poll(run: dict[str, Any], tasks: list[dict[str, Any]]) -> None:
        nonlocal last_progress
        for task in sorted(tasks, key=lambda t: t.get("start_date") or "9"):
            state = task.get("state")
            if state and seen.get(task["task_id"]) != state:
                seen[task["task_id"]] = state
                log.info("  task %-24s %s", task["task_id"], state)
        if time.monotonic() - last_progress >= 30:
            last_progress = time.monotonic()
            busy = [t["task_id"] for t in tasks if t.get("state") in ("running", "deferred", "queued")]
            log.info(
                "  %.0fs: run %s, at %s; target %.0f MB of source %.0f MB",
                time.monotonic() - started,
                run["state"],
                ", ".join(busy) or "-",
                database_size_mb(dest),
                source_mb,
            )

    return api.wait_for_dag_run("pg_migration", run_id, timeout=timeout, poll_seconds=3, on_poll=on_poll)


def failed_by_another_run(api: AirflowApiClient, run: dict[str, Any]) -> str | None:
    """The integration tests fail every active pg_migration run before starting theirs: name such a run."""
    ours = parse_time(run.get("queued_at")) or parse_time(run.get("run_after"))
    runs = api.request("GET", "/dags/pg_migration/dagRuns?order_by=-run_after&limit=20")["dag_runs"]
    for other in runs:
        other_time = parse_time(other.get("queued_at")) or parse_time(other.get("run_after"))
        if other["dag_run_id"] != run["dag_run_id"] and ours and other_time and other_time > ours:
            return f"{other['dag_run_id']} ({(other.get('conf') or {}).get('migration_id')})"
    return None


def run_figures(api: AirflowApiClient, method: str, run: dict[str, Any], dest: PgEndpoint) -> dict[str, Any]:
    tasks = api.task_instances("pg_migration", run["dag_run_id"])
    durations = {t["task_id"]: round(float(t["duration"] or 0.0), 2) for t in tasks}
    by_id = {t["task_id"]: t for t in tasks}
    run_start = parse_time(run["start_date"])
    caught_up = parse_time(by_id["wait_caught_up"]["end_date"])
    load_start = parse_time(by_id[LOAD_TASKS[method][0]]["start_date"])
    load_end = parse_time(by_id[LOAD_TASKS[method][-1]]["end_date"])
    return {
        "dag_run_id": run["dag_run_id"],
        "load_tasks": LOAD_TASKS[method],
        "load_seconds": round(sum(durations[t] for t in LOAD_TASKS[method]), 2),
        "load_span_seconds": round((load_end - load_start).total_seconds(), 2),
        "to_caught_up_seconds": round((caught_up - run_start).total_seconds(), 2),
        "run_seconds": round((parse_time(run["end_date"]) - run_start).total_seconds(), 2),
        "tasks": durations,
        "target_database": dest.dbname,
    }


def run_migration(
    api: AirflowApiClient, connect: ConnectClient, migration: BenchMigration, method: str, args: argparse.Namespace
) -> dict[str, Any]:
    names, source, dest = migration.names, migration.source, migration.target
    conf: dict[str, Any] = {
        "migration_id": names.migration_id,
        "source_conn_id": migration.source_conn_id,
        "target_conn_id": migration.target_conn_id,
        "snapshot_method": method,
    }
    if args.copy_parallelism:
        conf["copy_parallelism"] = args.copy_parallelism
    for attempt in range(1, args.retries + 2):
        log.info(
            "pg_migration %s (attempt %d): fresh target %s, connections %s/%s",
            names.migration_id,
            attempt,
            dest.label,
            migration.source_conn_id,
            migration.target_conn_id,
        )
        teardown_migration(connect, KAFKA, source, names)
        recreate_database(dest)
        put_postgres_connection(api, migration.source_conn_id, source)
        put_postgres_connection(api, migration.target_conn_id, dest)
        wait_until_dag_free(api, args.quiet_seconds)
        run_id = api.trigger_dag("pg_migration", conf=conf)
        log.info("triggered pg_migration run %s: %s/dags/pg_migration/runs/%s", run_id, AIRFLOW_URL, run_id)
        run = follow(api, run_id, source, dest, args.run_timeout)
        if run["state"] == "success":
            figures = run_figures(api, method, run, dest)
            log.info(
                "%s: load %.1fs (%s), caught up %.1fs after the run started",
                names.migration_id,
                figures["load_seconds"],
                " + ".join(LOAD_TASKS[method]),
                figures["to_caught_up_seconds"],
            )
            return figures
        other = failed_by_another_run(api, run)
        if other and attempt <= args.retries:
            log.warning("run %s was failed by another pg_migration run, %s; waiting for it and retrying", run_id, other)
            continue
        failed = [t["task_id"] for t in api.task_instances("pg_migration", run_id) if t["state"] == "failed"]
        raise BenchStepFailed(
            f"pg_migration run {run_id} {run['state']} (failed tasks: {failed or 'none'}"
            f"{', after another run: ' + other if other else ''}); "
            f"logs: {AIRFLOW_URL}/dags/pg_migration/runs/{run_id}"
        )
    raise AssertionError("unreachable")


# ---- lag under pgbench -----------------------------------------------------------------------------


def run_pgbench(args: argparse.Namespace) -> dict[str, Any]:
    """The built-in tpcb-like script at a fixed rate; -n: no vacuum, which would also truncate history."""
    command = [
        str(PG_BIN / "pgbench"),
        "-n",
        "-c",
        str(args.clients),
        "-j",
        "2",
        "-R",
        str(args.tps),
        "-T",
        str(args.seconds),
        "-P",
        "10",
        SOURCE.dbname,
    ]
    log.info("pgbench -n -c %d -j 2 -R %d -T %d (tpcb-like) on %s", args.clients, args.tps, args.seconds, SOURCE.label)
    env = dict(SOURCE.libpq_env(), PGTZ=PGBENCH_TIMEZONE)
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output = []
    assert process.stdout is not None
    for line in process.stdout:
        output.append(line.rstrip())
        if line.startswith("progress:"):
            log.info("  pgbench %s", line.strip())
    if process.wait() != 0:
        raise BenchStepFailed("pgbench failed:\n" + "\n".join(output[-20:]))
    figures: dict[str, Any] = {}
    for line in output:
        if line.startswith("tps = "):
            figures["achieved_tps"] = round(float(line.split()[2]), 1)
        elif line.startswith("latency average = "):
            figures["latency_avg_ms"] = float(line.split()[3])
        elif line.startswith("number of transactions actually processed: "):
            figures["transactions"] = int(line.split(": ")[1].split("/")[0])
    return figures


def wait_rows_arrived(dest: PgEndpoint, expected: int, timeout: float = 900) -> float:
    """Until the target holds as many pgbench_history rows as the source; returns seconds waited."""
    started = time.monotonic()
    while (arrived := count_rows(dest, HISTORY)) < expected:
        waited = time.monotonic() - started
        if waited > timeout:
            raise BenchStepFailed(
                f"only {arrived}/{expected} pgbench_history rows reached the target in {timeout:.0f}s"
            )
        log.info("  draining: %d of %d pgbench_history rows on the target (%.0fs)", arrived, expected, waited)
        time.sleep(2)
    return round(time.monotonic() - started, 1)


def measure_lag(args: argparse.Namespace, dest: PgEndpoint) -> dict[str, Any]:
    names = MigrationNames("bench-copy")
    install_lag_triggers(dest, names)
    time.sleep(3)  # a few heartbeats go through the triggers before the window opens
    if not read_samples(dest, "heartbeat"):
        log.warning("no heartbeat arrived on the target within 3 s; is the copy migration streaming?")
    clear_samples(dest)
    figures: dict[str, Any] = {"rate_tps": args.tps, "duration_seconds": args.seconds, "clients": args.clients}
    figures.update(run_pgbench(args))
    figures["drain_seconds"] = wait_rows_arrived(dest, count_rows(SOURCE, HISTORY))
    time.sleep(2)  # one more heartbeat after the last row
    figures["heartbeat"] = lag_summary(read_samples(dest, "heartbeat"))
    figures["history"] = lag_summary(read_samples(dest, "history"))
    log.info("lag: heartbeat %s; pgbench_history %s", figures["heartbeat"], figures["history"])
    return figures


# ---- the whole bench -------------------------------------------------------------------------------


def measure_validation(dest: PgEndpoint) -> dict[str, Any]:
    """The whole database: pg_validate's row diff vs one ordered md5(string_agg) per table and side."""
    from bench_validation import plain_scan, row_diff

    scan = plain_scan(SOURCE, dest, ["public"])
    seconds, diffs = row_diff(SOURCE, dest, ["public"])
    differing = [d.table for d in diffs if not d.ok]
    if differing:
        raise BenchStepFailed(f"row diff found differences in {differing}: the migration is not identical")
    return {
        "plain_scan_seconds": round(scan, 2),
        "row_diff_seconds": round(seconds, 2),
        "tables": len(diffs),
        "ratio_to_plain_scan": ratio(seconds, scan),
    }


def reset_history(source: PgEndpoint = SOURCE) -> None:
    """pgbench_history grows by every lag measurement and cutover: empty it so every run loads the same data."""
    with source.connect(autocommit=True) as conn:
        rows = conn.execute("SELECT count(*) FROM pgbench_history").fetchone()[0]
        if rows:
            log.info(
                "emptying pgbench_history of %s (%d rows from an earlier measurement) and vacuuming",
                source.dbname,
                rows,
            )
            conn.execute("TRUNCATE pgbench_history")
            conn.execute("VACUUM ANALYZE")


def measure_cutover(
    api: AirflowApiClient,
    connect: ConnectClient,
    migration: BenchMigration,
    args: argparse.Namespace,
    figures: dict[str, Any],
) -> None:
    """One size: a streaming copy migration, then the rounds. Fills `figures` as it goes (the caller holds it
    in the result already), so a failed round keeps the runs measured before it. Raises BenchStepFailed
    (pg_migration) or SwitchRunFailed (a round)."""
    reset_history(migration.source)
    teardown_cutover_migration(connect, KAFKA, CONTROL, PGBOUNCERS, migration)
    figures.update(
        database=migration.source.dbname,
        size_mb=round(database_size_mb(migration.source), 1),
        migration_id=migration.migration_id,
        runs=[],
    )
    figures["pg_migration"] = run_migration(api, connect, migration, "copy", args)
    load = LoadSpec(tps=args.cutover_tps, clients=args.clients, pg_bin=PG_BIN, pgbouncer_ports=tuple(PGBOUNCERS))
    run_rounds(api, CONTROL, migration, args.cutovers, load, KAFKA, figures["runs"], timeout=args.run_timeout)


def teardown_all(connect: ConnectClient) -> None:
    for method in METHODS:
        teardown_migration(connect, KAFKA, SOURCE, MigrationNames(f"bench-{method}"))
    for migration in CUTOVER_MIGRATIONS.values():
        teardown_cutover_migration(connect, KAFKA, CONTROL, PGBOUNCERS, migration)


def main() -> int:
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(asctime)s [bench] %(message)s", datefmt="%H:%M:%S"
    )
    logging.getLogger("pgmigrate").setLevel(logging.WARNING)  # teardown/reset chatter
    logging.getLogger("devtools.bench_data").setLevel(logging.INFO)
    logging.getLogger("devtools.bench_cutover").setLevel(logging.INFO)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the `finally` below on kill
    args = parse_args()
    api = AirflowApiClient(AIRFLOW_URL, "admin", "admin")
    connect = connect_client()
    plan = plan_bench(args.size_mb)
    started = time.monotonic()
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    steps = [s for s in STEPS if s not in args.skip]
    log.info(
        "make bench: %s MB, pgbench %d tps for %d s; measuring %s",
        args.size_mb,
        args.tps,
        args.seconds,
        ", ".join(steps),
    )

    log.info("[1/6] bench database")
    rebuilt = ensure_bench_database(SOURCE, plan, PG_BIN)
    if "cutover" in steps:
        log.info("[1b/6] small bench database for the cutover")
        ensure_bench_database(SMALL_SOURCE, plan_bench(args.cutover_small_mb), PG_BIN)
    fail_stale_bench_runs(api)
    teardown_all(connect)
    reset_history()
    api.request("PATCH", "/dags/pg_migration", json={"is_paused": False})
    result: dict[str, Any] = {
        "started_at": stamp,
        "database": {
            "name": SOURCE.dbname,
            "size_mb": round(database_size_mb(SOURCE), 1),
            "rebuilt": rebuilt,
            "requested_mb": plan.size_mb,
            "pgbench_scale": plan.pgbench_scale,
            "doc_rows": plan.doc_rows,
            "blob_rows": plan.blob_rows,
        },
    }

    def not_measured(key: str, exc: Exception) -> None:
        log.error("%s not measured: %s", key, exc)
        result.setdefault("errors", {})[key] = str(exc)

    def measure(key: str, step: Callable[[], dict[str, Any]]) -> bool:
        try:
            result[key] = step()
            return True
        except (BenchStepFailed, SwitchRunFailed) as exc:
            not_measured(key, exc)
            return False

    try:
        if "dump" in steps:
            log.info("[2/6] pg_dump -Fd -j2 + pg_restore -j2")
            measure("dump_restore", measure_dump_restore)
        if "copy" in steps:
            log.info("[3/6] pg_migration, snapshot_method=copy")
            if measure("copy", lambda: run_migration(api, connect, load_migration("copy"), "copy", args)) and (
                "lag" in steps
            ):
                log.info("[4/6] lag at %d tps with bench-copy streaming", args.tps)
                measure("lag", lambda: measure_lag(args, target("bench_copy")))
            if "copy" in result and "validation" in steps:
                log.info("[4b/6] validation cost: row diff vs a plain md5 scan of both sides")
                measure("validation", lambda: measure_validation(target("bench_copy")))
            teardown_migration(connect, KAFKA, SOURCE, MigrationNames("bench-copy"))
            reset_history()
        if "debezium" in steps:
            log.info("[5/6] pg_migration, snapshot_method=debezium")
            measure("debezium", lambda: run_migration(api, connect, load_migration("debezium"), "debezium", args))
        if "cutover" in steps:
            result["cutover"] = {"tps": args.cutover_tps, "clients": args.clients, "rounds": args.cutovers, "sizes": {}}
            for size, migration in CUTOVER_MIGRATIONS.items():
                log.info(
                    "[6/6] cutover and rollback x%d, %s (%s), pgbench %d tps through both PgBouncers",
                    args.cutovers,
                    migration.migration_id,
                    migration.source.dbname,
                    args.cutover_tps,
                )
                figures = result["cutover"]["sizes"].setdefault(size, {})
                try:
                    measure_cutover(api, connect, migration, args, figures)
                except (BenchStepFailed, SwitchRunFailed) as exc:
                    not_measured(f"cutover_{size}", exc)
                teardown_cutover_migration(connect, KAFKA, CONTROL, PGBOUNCERS, migration)
    finally:
        log.info(
            "cleanup: tearing down the bench migrations (connectors, slots, publications, topics, PgBouncer "
            "routes of the cutover databases)"
        )
        teardown_all(connect)
        if not args.keep_targets:
            for name in (
                "bench_restore",
                "bench_copy",
                "bench_debezium",
                *(m.target.dbname for m in CUTOVER_MIGRATIONS.values()),
            ):
                drop_database(target(name))
    baseline = (result.get("dump_restore") or {}).get("seconds")
    for method in METHODS:
        if method in result:
            result[method]["ratio_to_dump_restore"] = ratio(result[method]["load_seconds"], baseline)
            result[method]["to_caught_up_ratio_to_dump_restore"] = ratio(
                result[method]["to_caught_up_seconds"], baseline
            )
    for figures in (result.get("cutover") or {}).get("sizes", {}).values():
        for direction in SWITCH_DIRECTIONS:
            figures[direction] = switch_summary([r for r in figures.get("runs", []) if r["direction"] == direction])
    result["goals"] = goals(result)
    result["bench_seconds"] = round(time.monotonic() - started, 1)
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    out = OUT_DIR / f"bench-{stamp}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(render_table(result))
    print(f"JSON: {out}")
    return 1 if result.get("errors") else 0


if __name__ == "__main__":
    sys.exit(main())
