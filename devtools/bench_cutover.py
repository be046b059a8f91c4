"""The cutover rows of `make bench` (issue #13): the write pause of `pg_cutover` and `pg_rollback`, round
after round on one streaming migration, while pgbench writes through both PgBouncers.

A round is a cutover, then a rollback; after the rollback the migration streams forward again, so the next
round can cut over. Each run is triggered through Airflow's REST API, as an operator would. The pause and
its steps come from the migration's timeline (the `cut_over` and `switched_back` events the critical section
records), so they are the product's own timing, not the client's; failed client transactions come from
pgbench's summary. The pure figures (summaries, goals, rows) are in `devtools.bench_report`.
"""

from __future__ import annotations

import logging
import re
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

from devtools.databases import database_exists
from pgmigrate.alerts.monitor import resolve_all
from pgmigrate.cli.airflow_api import AirflowApiClient, AirflowApiError
from pgmigrate.control.state import MigrationStateStore
from pgmigrate.core.endpoints import PgEndpoint
from pgmigrate.core.naming import MigrationNames
from pgmigrate.cutover.reverse import remove_reverse_replication
from pgmigrate.cutover.routing.switch import PgBouncerRouteSwitch
from pgmigrate.kafka.connect_client import ConnectClient
from pgmigrate.stream.lag import read_lag
from pgmigrate.stream.teardown import teardown_migration

log = logging.getLogger(__name__)

SWITCH_DAGS = {"cutover": "pg_cutover", "rollback": "pg_rollback"}
# The timeline event each direction's critical section records after its switch, with pause_seconds and steps.
SWITCH_EVENTS = {"cutover": "cut_over", "rollback": "switched_back"}
# Refusals before any pause (lag, a stale validation, a busy PgBouncer): worth one more try after a while.
REFUSING_TASKS = {"cutover": {"checklist"}, "rollback": {"check"}}
# pgbench runs in segments this long (see SwitchLoad); stopping waits for the current one to end.
SEGMENT_SECONDS = 10
# A segment still running this long after its -T is stuck: SIGTERM, then SIGKILL.
SEGMENT_GRACE_SECONDS = 60
# Before a switch, the pipeline it drains is within this lag (the pause drains what is left).
READY_LAG_SECONDS = 2.0
# Writes go on this long after a run succeeded: they land on the side clients were switched to.
AFTER_SWITCH_SECONDS = 3.0
RETRY_AFTER_SECONDS = 30.0


class SwitchRunFailed(RuntimeError):
    """A pg_cutover or pg_rollback run did not succeed; the message names the tasks and their log. `run`: its
    figures when it ran (the load's failed transactions count either way)."""

    def __init__(self, message: str, run: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.run = run


class SwitchRefused(SwitchRunFailed):
    """The run's checks refused before pausing anything."""


@dataclass(frozen=True)
class BenchMigration:
    """One bench migration: its id, its databases and the Airflow connections pg_migration reads them from."""

    migration_id: str
    source: PgEndpoint
    source_conn_id: str
    target: PgEndpoint
    target_conn_id: str

    @property
    def names(self) -> MigrationNames:
        return MigrationNames(self.migration_id)


@dataclass(frozen=True)
class LoadSpec:
    """The application's writes during a switch: `tps` in all over `clients`, half through each PgBouncer."""

    tps: int
    clients: int
    pg_bin: Path
    pgbouncer_ports: tuple[int, ...] = (6432, 6433)
    host: str = "127.0.0.1"


# ---- pgbench through both PgBouncers ---------------------------------------------------------------


def parse_pgbench_summary(output: str) -> dict[str, Any]:
    """Failed client transactions of one pgbench run, from its output.

    pgbench 15 counts in "number of failed transactions" only the transactions it gave up on after a
    serialization or deadlock error; any other error aborts the client ("client N ... aborted"), whose
    transaction failed too, so both are added. A run without a summary (it could not start, or it was
    killed because it hung) counts as one failure more: something went wrong that its numbers cannot show.
    """
    processed = re.search(r"number of transactions actually processed: (\d+)", output)
    failed = re.search(r"number of failed transactions: (\d+)", output)
    aborted = len(re.findall(r"client \d+ .*aborted", output))
    complete = processed is not None
    errors = [line.strip() for line in output.splitlines() if "error" in line.lower() or "aborted" in line]
    return {
        "complete": complete,
        "transactions": int(processed.group(1)) if processed else 0,
        "failed_transactions": (int(failed.group(1)) if failed else 0) + aborted + (0 if complete else 1),
        "aborted_clients": aborted,
        "errors": errors[:3],
    }


def total_load(segments: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The figures of every pgbench segment of one run, added up."""
    return {
        "transactions": sum(s["transactions"] for s in segments),
        "failed_transactions": sum(s["failed_transactions"] for s in segments),
        "aborted_clients": sum(s["aborted_clients"] for s in segments),
        "incomplete_segments": sum(1 for s in segments if not s["complete"]),
        "segments": len(segments),
        "errors": [e for s in segments for e in s["errors"]][:5],
    }


def stop_process(process: subprocess.Popen, grace: float = 10.0) -> str:
    """SIGTERM, then SIGKILL; never SIGINT, which a shell running the bench in the background makes children
    ignore. Returns what it printed."""
    process.terminate()
    try:
        return process.communicate(timeout=grace)[0] or ""
    except subprocess.TimeoutExpired:
        process.kill()
        return process.communicate()[0] or ""


class SwitchLoad:
    """pgbench's built-in tpcb-like script at a fixed rate through every PgBouncer while a switch runs.

    Why segments: pgbench prints its summary, failed transactions included, only when its `-T` ends, and a
    signal ends it without one. So each PgBouncer gets back-to-back runs of SEGMENT_SECONDS; `stop()` lets
    the current one end by itself. Its clients reconnect between segments (milliseconds), which a pause
    must survive as well as queued transactions.
    """

    def __init__(self, spec: LoadSpec, database: str, segment_seconds: int = SEGMENT_SECONDS) -> None:
        self.spec = spec
        self.database = database
        self.segment_seconds = segment_seconds
        self.segments: list[dict[str, Any]] = []
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._loop, args=(port,), daemon=True, name=f"pgbench-{port}")
            for port in spec.pgbouncer_ports
        ]

    def _command(self) -> list[str]:
        ports = len(self.spec.pgbouncer_ports)
        clients = max(1, self.spec.clients // ports)
        rate = max(1, round(self.spec.tps / ports))
        # -n: no vacuum (it would also truncate pgbench_history).
        return [
            str(self.spec.pg_bin / "pgbench"),
            "-n",
            "-c",
            str(clients),
            "-j",
            "1",
            "-R",
            str(rate),
            "-T",
            str(self.segment_seconds),
            self.database,
        ]

    def _loop(self, port: int) -> None:
        env = {
            "PATH": "/usr/bin:/bin",
            "PGHOST": self.spec.host,
            "PGPORT": str(port),
            "PGUSER": "postgres",
            "PGPASSWORD": "postgres",
            "PGAPPNAME": "bench-pgbench",
            "PGCONNECT_TIMEOUT": "10",
        }
        while not self._stopping.is_set():
            process = subprocess.Popen(
                self._command(),
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                start_new_session=True,
            )
            try:
                output = process.communicate(timeout=self.segment_seconds + SEGMENT_GRACE_SECONDS)[0] or ""
            except subprocess.TimeoutExpired:
                log.warning("pgbench through :%d still runs %ds after its -T; stopping it", port, SEGMENT_GRACE_SECONDS)
                output = stop_process(process)
            segment = {"port": port, **parse_pgbench_summary(output)}
            if segment["failed_transactions"]:
                log.warning(
                    "pgbench through :%d: %d failed transactions: %s",
                    port,
                    segment["failed_transactions"],
                    segment["errors"] or output[-500:],
                )
            with self._lock:
                self.segments.append(segment)

    def start(self) -> SwitchLoad:
        log.info(
            "  pgbench %d tps (tpcb-like, %d clients) on %s through PgBouncer %s, %ds segments",
            self.spec.tps,
            self.spec.clients,
            self.database,
            " + ".join(f":{p}" for p in self.spec.pgbouncer_ports),
            self.segment_seconds,
        )
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> dict[str, Any]:
        """Let the running segments end (at most SEGMENT_SECONDS) and add up every segment's figures."""
        self._stopping.set()
        for thread in self._threads:
            thread.join(timeout=self.segment_seconds + SEGMENT_GRACE_SECONDS + 20)
        with self._lock:
            return total_load(self.segments)


# ---- one switch ------------------------------------------------------------------------------------


def switch_event(events: Sequence[Mapping[str, Any]], phase: str, since: datetime) -> dict[str, Any] | None:
    """The details of the newest `phase` event at or after `since` that carries the pause's figures (the
    abort paths record the same phase without them)."""
    for event in reversed(events):
        details = event.get("details") or {}
        if event["phase"] == phase and event["at"] >= since and "pause_seconds" in details:
            return dict(details)
    return None


def parse_time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


def task_log_tail(api: AirflowApiClient, dag_id: str, run_id: str, task: Mapping[str, Any], lines: int = 25) -> str:
    """The last lines of a task's log through the REST API, for the report of a failed run."""
    try_number = task.get("try_number") or 1
    try:
        response = api.request(
            "GET",
            f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task['task_id']}/logs/{try_number}?full_content=true",
        )
    except AirflowApiError as exc:
        return f"(log not readable: {exc})"
    content = response.get("content", "") if isinstance(response, dict) else response
    if isinstance(content, list):
        text = []
        for item in content:
            if isinstance(item, dict):
                text.append(str(item.get("event", "")))
                text.extend(f"{d.get('exc_type')}: {d.get('exc_value')}" for d in item.get("error_detail") or [])
            else:
                text.append(str(item))
        content = "\n".join(text)
    return "\n".join(str(content).splitlines()[-lines:])


def wait_dag_idle(api: AirflowApiClient, dag_id: str, timeout: float = 3600) -> None:
    """pg_cutover and pg_rollback run one at a time; wait for another migration's run so that the load runs
    while ours does, not while it queues."""
    deadline, last_said = time.monotonic() + timeout, 0.0
    while True:
        runs = api.request("GET", f"/dags/{dag_id}/dagRuns?state=running&state=queued")["dag_runs"]
        if not runs:
            return
        if time.monotonic() > deadline:
            raise SwitchRunFailed(f"{dag_id} stayed busy for {timeout:.0f}s; try again later")
        if time.monotonic() - last_said > 30:
            who = ", ".join(f"{r['dag_run_id']} ({(r.get('conf') or {}).get('migration_id')})" for r in runs)
            log.info("  %s is busy with %s; waiting (max_active_runs=1)", dag_id, who)
            last_said = time.monotonic()
        time.sleep(3)


def wait_ready(
    origin: PgEndpoint, destination: PgEndpoint, names: MigrationNames, bootstrap: str, timeout: float = 600
) -> float | None:
    """Until the pipeline the next switch drains (origin -> destination) is within READY_LAG_SECONDS; its
    lag when the wait ended. After a rollback the forward sink replays what the reverse one applied, and a
    switch started then would only drain longer or be refused by the checklist."""
    started, last_said = time.monotonic(), 0.0
    while True:
        try:
            reading = read_lag(origin, destination, names, bootstrap)
        except psycopg.Error as exc:  # the heartbeat table of a pipeline that is just starting
            reading, problem = None, str(exc).splitlines()[0]
        else:
            problem = reading.describe()
            if reading.caught_up(READY_LAG_SECONDS):
                return reading.end_to_end_seconds
        waited = time.monotonic() - started
        if waited > timeout:
            log.warning(
                "  %s not within %.0fs of lag after %.0fs (%s); going on",
                names.migration_id,
                READY_LAG_SECONDS,
                waited,
                problem,
            )
            return reading.end_to_end_seconds if reading else None
        if time.monotonic() - last_said > 15:
            log.info(
                "  waiting for %s to catch up (%s)", "reverse replication" if names.reverse else "replication", problem
            )
            last_said = time.monotonic()
        time.sleep(2)


def run_switch(
    api: AirflowApiClient,
    store: MigrationStateStore,
    migration: BenchMigration,
    direction: str,
    load: LoadSpec,
    timeout: float,
) -> dict[str, Any]:
    """One pg_cutover or pg_rollback run under load; its pause and steps from the timeline, pgbench's figures.
    Raises SwitchRefused when its checks refused before pausing, SwitchRunFailed when it failed otherwise;
    both carry the run's figures in `.run`."""
    dag_id = SWITCH_DAGS[direction]
    conf: dict[str, Any] = {"migration_id": migration.migration_id}
    conf.update({"backup": False} if direction == "cutover" else {"reason": "bench"})
    wait_dag_idle(api, dag_id)
    writes = SwitchLoad(load, migration.source.dbname).start()
    seen: dict[str, str] = {}

    def on_poll(_run: dict[str, Any], tasks: list[dict[str, Any]]) -> None:
        for task in sorted(tasks, key=lambda t: t.get("start_date") or "9"):
            if (state := task.get("state")) and seen.get(task["task_id"]) != state:
                seen[task["task_id"]] = state
                log.info("    task %-28s %s", task["task_id"], state)

    run_id, run, problem = "(not triggered)", {}, None
    try:
        run_id = api.trigger_dag(dag_id, conf=conf)
        log.info("  triggered %s run %s", dag_id, run_id)
        run = api.wait_for_dag_run(dag_id, run_id, timeout=timeout, poll_seconds=2, on_poll=on_poll)
        if run["state"] == "success":
            time.sleep(AFTER_SWITCH_SECONDS)
    except AirflowApiError as exc:
        problem = f"{dag_id} run {run_id}: {exc}"
    finally:
        figures = writes.stop()
    started, ended = parse_time(run.get("start_date")), parse_time(run.get("end_date"))
    figures.update(
        direction=direction,
        dag_run_id=run_id,
        run_seconds=round((ended - started).total_seconds(), 1) if started and ended else None,
    )
    if problem:
        figures.update(pause_seconds=None, error=problem)
        raise SwitchRunFailed(problem, figures)
    if run["state"] != "success":
        failed = [t for t in api.task_instances(dag_id, run_id) if t["state"] == "failed"]
        names = {t["task_id"] for t in failed}
        message = (
            f"{dag_id} run {run_id} {run['state']} (failed tasks: {sorted(names) or 'none'}); "
            f"logs: {api.base_url}/dags/{dag_id}/runs/{run_id}"
        )
        refused = bool(names) and names <= REFUSING_TASKS[direction]
        figures.update(pause_seconds=None, refused=refused, error=None if refused else message)
        for task in failed:
            log.error(
                "  %s %s failed; the end of its log:\n%s",
                dag_id,
                task["task_id"],
                task_log_tail(api, dag_id, run_id, task),
            )
        raise (SwitchRefused if refused else SwitchRunFailed)(message, figures)
    details = switch_event(store.events(migration.migration_id), SWITCH_EVENTS[direction], started or datetime.now(UTC))
    if details is None:
        figures.update(
            pause_seconds=None,
            error=f"{dag_id} run {run_id} succeeded but the timeline has no "
            f"{SWITCH_EVENTS[direction]!r} event with the pause since it started",
        )
        raise SwitchRunFailed(figures["error"], figures)
    steps = [{"step": step["step"], "seconds": step["seconds"]} for step in details.get("steps") or []]
    figures.update(pause_seconds=details["pause_seconds"], steps=steps)
    log.info(
        "  %s: writes paused %.3fs (%s); pgbench %d transactions, %d failed",
        direction,
        figures["pause_seconds"],
        ", ".join(f"{step['step']} {step['seconds'] * 1000:.0f} ms" for step in steps),
        figures["transactions"],
        figures["failed_transactions"],
    )
    return figures


# ---- rounds ----------------------------------------------------------------------------------------


def run_rounds(
    api: AirflowApiClient,
    control: PgEndpoint,
    migration: BenchMigration,
    rounds: int,
    load: LoadSpec,
    bootstrap: str,
    runs: list[dict[str, Any]],
    timeout: float = 3600,
) -> None:
    """`rounds` times: cutover, then rollback, each once the pipeline it drains has caught up, appending every
    run's figures to `runs` as it ends (so a failure keeps what was measured). A run refused by its checks
    is tried once more after RETRY_AFTER_SECONDS; any other failure ends the rounds (SwitchRunFailed)."""
    store = MigrationStateStore(control)
    names = migration.names
    for n in range(1, rounds + 1):
        for direction in ("cutover", "rollback"):
            origin, destination, pipeline = (
                (migration.source, migration.target, names)
                if direction == "cutover"
                else (migration.target, migration.source, names.reversed())
            )
            for attempt in (1, 2):
                lag = wait_ready(origin, destination, pipeline, bootstrap)
                log.info(
                    "%s round %d/%d: pg_%s (lag %s)",
                    migration.migration_id,
                    n,
                    rounds,
                    direction,
                    "?" if lag is None else f"{lag:.1f}s",
                )
                try:
                    runs.append(run_switch(api, store, migration, direction, load, timeout))
                    break
                except SwitchRunFailed as exc:
                    if exc.run is not None:
                        runs.append(exc.run)
                    if not isinstance(exc, SwitchRefused) or attempt == 2:
                        raise
                    log.warning("  refused before pausing (%s); trying once more in %.0fs", exc, RETRY_AFTER_SECONDS)
                    time.sleep(RETRY_AFTER_SECONDS)


def teardown_cutover_migration(
    connect: ConnectClient,
    bootstrap: str,
    control: PgEndpoint,
    pgbouncers: Mapping[int, PgBouncerRouteSwitch],
    migration: BenchMigration,
) -> None:
    """Clients of the bench database back on the source in every PgBouncer (explicit route removed, so it
    follows the `*` fallback again), both pipelines gone, and the migration's state `torn_down` with its
    alerts resolved, so the minute's monitor leaves it alone. Idempotent; also after an interrupted bench."""
    database = migration.source.dbname
    for switch in pgbouncers.values():
        switch.resume(database)
        switch.remove_route(database)
    source_exists, target_exists = database_exists(migration.source), database_exists(migration.target)
    if source_exists and target_exists:
        remove_reverse_replication(connect, bootstrap, migration.source, migration.target, migration.names)
        teardown_migration(connect, bootstrap, migration.source, migration.names, target=migration.target)
    else:
        server = PgEndpoint(
            migration.source.host, migration.source.port, "postgres", migration.source.user, migration.source.password
        )
        teardown_migration(connect, bootstrap, migration.source if source_exists else server, migration.names)
    store = MigrationStateStore(control)
    if store.get(migration.migration_id):
        store.upsert(migration.migration_id, phase="torn_down")
        resolve_all(control, migration.migration_id)
