"""Alert rules of a streaming migration (issue #6).

The rules are pure: they take plain readings (Connect statuses, lag samples, Kafka log dir usage,
long-running source queries, the last validation) and return the conditions active now; `evaluation` runs
them all over one migration's readings, `lifecycle` keeps them deduplicated in the control database and
`messages` says what is sent where.

| sev | condition key | raised when |
|---|---|---|
| P0 | `connector_failed:<name>` | a live connector or one of its tasks is FAILED, or the connector is gone |
| P0 | `data_loss` | the last validation found differences and the pipeline is caught up now (halt) |
| P0 | `cutover_failed` | `pg_cutover` failed (its DAG failure notifier); clears once a cutover succeeds |
| P0 | `dead_letters` | the sink's DLQ topic holds records past the acknowledged offsets (`dead_letter=true`) |
| P1 | `lag_high` | every lag sample for `lag_window_seconds` is above `lag_seconds` |
| P1 | `validation_mismatch` | the last validation found differences while the pipeline is behind |
| P1 | `schema_mismatch` | source and target schemas differ (DDL on the source: logical decoding carries none) |
| P2 | `kafka_disk` | a Kafka log dir's file system is fuller than `kafka_disk_percent` |
| P2 | `task_restarted:<name>` | a task of a live connector is RESTARTING or UNASSIGNED |
| P1 | `target_ddl_after_cutover` | after cutover, the schemas differ: DDL (a new table…) ran on the target |
| P2 | `forward_slot_retained` | after cutover, the slot kept for rollback retains > `slot_retained_wal_mb` of WAL |
| P3 | `slow_query` | a query on the source runs longer than `slow_query_seconds` |
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta
from typing import Any

log = logging.getLogger(__name__)

P0, P1, P2, P3 = "P0", "P1", "P2", "P3"
SEVERITIES = (P0, P1, P2, P3)

# What the on-call person should do, per condition kind (the part of the key before ':').
RUNBOOK = {
    "connect_unreachable": "Kafka Connect does not answer, so nothing is streamed: make stack-up (or restart "
    "the Connect workers), then scripts/migration restart if a connector is not RUNNING a minute later.",
    "connector_failed": "read the connector's trace (scripts/migration status), fix the cause, then run "
    "pg_migration_restart (scripts/migration restart).",
    "data_loss": "do not cut over; the monitor halts the pipeline (pg_migration_halt) unless halt_on_data_loss "
    "is off. Compare the tables named here, resync them (pg_migration_resync), then pg_migration_restart.",
    "dead_letters": "the target misses the changes listed by scripts/migration dlq --migration-id <id>: fix their "
    "cause, then `dlq --resync` (re-reads exactly those keys from the source) and `dlq --ack`; cutover is refused "
    "until then.",
    "cutover_failed": "clients stay on the source (abort_cutover undoes a failure inside the pause). Read the "
    "failed task's log, fix, rerun pg_cutover (dry_run=true first).",
    "post_cutover_mismatch": "after the cutover the full validation found rows that differ between target and "
    "source. Reverse replication keeps rollback possible: compare (scripts/migration compare), then repair on the "
    "target or roll back (scripts/migration rollback).",
    "writes_after_switch": "a client wrote to the source after the cutover's drain point, outside PgBouncer: those "
    "rows are on the source only. Find the writer (pg_stat_activity on the source), copy the named rows to the "
    "target by hand, and move the writer to PgBouncer.",
    "lag_high": "check the sink connector (paused? failed? slow target?) and the target's load; "
    "scripts/migration lag shows the live numbers.",
    "schema_mismatch": "DDL ran on the source. Run scripts/migration schema-sync --migration-id <id> "
    "(pg_migration_schema_sync): it applies additive changes on the target, or halts the migration and names "
    "the statement to run for a non-additive one.",
    "validation_mismatch": "wait until the pipeline is caught up, then validate again; persisting differences "
    "become a P0 data-loss alert.",
    "kafka_disk": "free space or grow the volume before Kafka stops accepting writes; check topic retention "
    "and the sink's consumer lag.",
    "task_restarted": "a connector task restarted: if it repeats, read the worker log and the task's trace.",
    "target_ddl_after_cutover": "DDL ran on the target after the cutover: reverse replication carries rows, never "
    "DDL, so a table created on the target is not replicated back and a rollback loses it and every change to it. "
    "Run the same DDL on the source (a new table with a primary key then needs a reverse resync), or, once rollback "
    "is no longer wanted, run pg_migration_teardown.",
    "forward_slot_retained": "the forward replication slot is kept on the source after the cutover so that a "
    "rollback can resume it, and the source keeps every WAL segment since: once rollback is no longer wanted, run "
    "pg_migration_teardown (scripts/migration teardown --migration-id <id>), which drops it; until then watch the "
    "source's disk.",
    "slow_query": "a long query on the source holds back vacuum and may block the cutover's locks; "
    "ask its owner or cancel it (pg_cancel_backend).",
}

# Phases whose pipeline is watched, and the direction that is live in each.
MONITORED_PHASES = ("caught_up", "streaming", "cut_over")
# Kinds `evaluate` decides; `cutover_failed` is raised by pg_cutover's failure notifier instead.
MONITOR_KINDS = frozenset(
    {
        "connect_unreachable",
        "connector_failed",
        "task_restarted",
        "lag_high",
        "data_loss",
        "validation_mismatch",
        "kafka_disk",
        "slow_query",
        "dead_letters",
        "schema_mismatch",
        "target_ddl_after_cutover",
        "forward_slot_retained",
    }
)
REVERSE_PHASES = ("cut_over",)


@dataclass(frozen=True)
class Alert:
    severity: str
    condition: str  # stable key: kind[:subject], e.g. "connector_failed:pgmigrate-x-sink"
    migration_id: str
    message: str
    details: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise ValueError(f"severity {self.severity!r} is not one of {SEVERITIES}")

    @property
    def kind(self) -> str:
        return condition_kind(self.condition)

    @property
    def action(self) -> str:
        return RUNBOOK.get(self.kind, "see the README's alert section.")


def condition_kind(condition: str) -> str:
    return condition.split(":", 1)[0]


@dataclass(frozen=True)
class Thresholds:
    """Monitor thresholds; from the Airflow Variable `pgmigrate_alert_thresholds` (see `from_mapping`)."""

    lag_seconds: float = 60.0
    lag_window_seconds: float = 300.0
    kafka_disk_percent: float = 80.0
    slow_query_seconds: float = 300.0
    slot_retained_wal_mb: float = 10240.0  # WAL the forward slot may keep on the source after the cutover
    halt_on_data_loss: bool = True

    @classmethod
    def from_mapping(cls, value: Mapping[str, Any] | None, migration_id: str | None = None) -> Thresholds:
        """Global keys, overridden by `{"migrations": {"<migration_id>": {...}}}` for one migration.
        Unknown keys are an error, so a typo does not silently keep the default."""
        value = dict(value or {})
        per_migration = dict((value.pop("migrations", None) or {}).get(migration_id or "", {}) or {})
        merged = {**value, **per_migration}
        known = {f.name for f in fields(cls)}
        unknown = set(merged) - known
        if unknown:
            raise ValueError(f"unknown alert threshold(s) {sorted(unknown)}; known: {sorted(known)}")
        return cls(**{k: (bool(v) if k == "halt_on_data_loss" else float(v)) for k, v in merged.items()})


# --- rules (pure) -----------------------------------------------------------------------------------------


def connector_alerts(migration_id: str, statuses: Mapping[str, Mapping[str, Any] | None]) -> tuple[list, list]:
    """(P0 connector_failed, P2 task_restarted) alerts from `GET /connectors/<name>/status` documents
    (None: the connector does not exist). PAUSED/STOPPED are not failures: a halt pauses on purpose,
    and the lag rule notices a pipeline that stays paused."""
    from pgmigrate.kafka.connector_status import first_trace_line

    failed, restarted = [], []
    for name, status in statuses.items():
        key = f"connector_failed:{name}"
        if status is None:
            failed.append(
                Alert(P0, key, migration_id, f"connector {name} does not exist in Kafka Connect", {"connector": name})
            )
            continue
        connector_state = status.get("connector", {}).get("state")
        bad_tasks = [t for t in status.get("tasks", []) if t.get("state") == "FAILED"]
        if connector_state == "FAILED" or bad_tasks:
            trace = status["connector"].get("trace") if connector_state == "FAILED" else bad_tasks[0].get("trace")
            what = "connector" if connector_state == "FAILED" else f"task {bad_tasks[0].get('id')}"
            failed.append(
                Alert(
                    P0,
                    key,
                    migration_id,
                    f"{name} {what} FAILED: {first_trace_line(trace)}",
                    {"connector": name, "state": connector_state, "failed_tasks": [t.get("id") for t in bad_tasks]},
                )
            )
            continue
        restarting = [t for t in status.get("tasks", []) if t.get("state") in ("RESTARTING", "UNASSIGNED")]
        if restarting:
            ids = [t.get("id") for t in restarting]
            restarted.append(
                Alert(
                    P2,
                    f"task_restarted:{name}",
                    migration_id,
                    f"{name} task(s) {ids} restarting ({restarting[0].get('state')})",
                    {"connector": name, "tasks": ids},
                )
            )
    return failed, restarted


def lag_alert(
    migration_id: str, samples: Sequence[tuple[datetime, float | None]], now: datetime, thresholds: Thresholds
) -> Alert | None:
    """P1 when lag stayed above `lag_seconds` for `lag_window_seconds`: the unbroken run of samples above
    the threshold that ends with the newest sample must have started at least a window ago. A sample
    without a value (no heartbeat on the target) breaks the run: it proves nothing either way."""
    ordered = sorted(samples, key=lambda s: s[0])
    streak: list[tuple[datetime, float]] = []
    for at, value in reversed(ordered):
        if value is None or value <= thresholds.lag_seconds:
            break
        streak.append((at, value))
    if not streak:
        return None
    started = streak[-1][0]
    if started > now - timedelta(seconds=thresholds.lag_window_seconds):
        return None
    latest = streak[0][1]
    return Alert(
        P1,
        "lag_high",
        migration_id,
        f"replication lag {latest:.0f}s, above {thresholds.lag_seconds:.0f}s for "
        f"{(now - started).total_seconds():.0f}s (window {thresholds.lag_window_seconds:.0f}s)",
        {
            "lag_seconds": latest,
            "above_since": started.isoformat(),
            "samples": len(streak),
            "threshold_seconds": thresholds.lag_seconds,
            "window_seconds": thresholds.lag_window_seconds,
        },
    )


def validation_alert(
    migration_id: str,
    last_validation: Mapping[str, Any] | None,
    current_lag: float | None,
    caught_up_seconds: float,
    data_loss_open: bool,
    halt: bool = False,
) -> Alert | None:
    """Differences in the last validation: P0 data loss when the pipeline is caught up now (nothing in
    flight can explain them) or data loss was already declared (the halt makes lag grow; that must not
    downgrade it), else P1 validation mismatch."""
    tables = (last_validation or {}).get("tables") or []
    bad = [t.get("table") for t in tables if not t.get("ok")]
    if not bad:
        return None
    details = {"tables": bad, "lag_seconds": current_lag}
    caught_up = current_lag is not None and current_lag < caught_up_seconds
    if caught_up or data_loss_open:
        return Alert(
            P0,
            "data_loss",
            migration_id,
            f"data loss: {len(bad)} table(s) differ after catch-up: {', '.join(map(str, bad[:10]))}"
            + ("; pipeline halted (pg_migration_halt triggered)" if halt else ""),
            {**details, "halt": halt},
        )
    return Alert(
        P1,
        "validation_mismatch",
        migration_id,
        f"validation mismatch in {len(bad)} table(s) while lag is {current_lag}s: {', '.join(map(str, bad[:10]))}",
        details,
    )


def kafka_disk_alert(migration_id: str, usage: Sequence[tuple[str, int, int]], thresholds: Thresholds) -> Alert | None:
    """P2 when any Kafka log dir's file system (path, used bytes, total bytes) is too full."""
    percents = [(path, 100.0 * used / total) for path, used, total in usage if total]
    full = [(path, pct) for path, pct in percents if pct > thresholds.kafka_disk_percent]
    if not full:
        return None
    path, percent = max(full, key=lambda item: item[1])
    return Alert(
        P2,
        "kafka_disk",
        migration_id,
        f"Kafka log dir {path} is {percent:.0f}% full (threshold {thresholds.kafka_disk_percent:.0f}%)",
        {"dirs": {p: round(pct, 1) for p, pct in full}},
    )


def slow_query_alert(migration_id: str, queries: Sequence[Mapping[str, Any]], thresholds: Thresholds) -> Alert | None:
    """P3 for queries on the source running longer than `slow_query_seconds`
    (rows: pid, seconds, usename, query)."""
    slow = sorted((q for q in queries if q["seconds"] > thresholds.slow_query_seconds), key=lambda q: -q["seconds"])
    if not slow:
        return None
    top = slow[0]
    return Alert(
        P3,
        "slow_query",
        migration_id,
        f"{len(slow)} quer(y/ies) on the source running > {thresholds.slow_query_seconds:.0f}s; longest "
        f"pid {top['pid']} ({top.get('usename')}) for {top['seconds']:.0f}s",
        {
            "queries": [
                {
                    "pid": q["pid"],
                    "seconds": round(q["seconds"]),
                    "user": q.get("usename"),
                    "query": str(q.get("query", ""))[:200],
                }
                for q in slow[:5]
            ]
        },
    )


def connect_unreachable_alert(migration_id: str, error: str | None) -> Alert | None:
    """P0 while Kafka Connect's REST API does not answer: its connectors' states are unknown and nothing
    streams (a dead worker). Resolved by the first run that reads the statuses again."""
    if error is None:
        return None
    return Alert(P0, "connect_unreachable", migration_id, f"Kafka Connect does not answer: {error}", {"error": error})


def dead_letter_alert(migration_id: str, unacknowledged: int) -> Alert | None:
    """P0 while the DLQ holds records not acknowledged: each is a change the target does not have. One
    open row however many arrive (the count in the message is the one at raise time); resolved by `dlq --ack`."""
    if unacknowledged <= 0:
        return None
    from pgmigrate.recovery.dead_letters import dead_letter_alert_text

    return Alert(
        P0,
        "dead_letters",
        migration_id,
        dead_letter_alert_text(migration_id, unacknowledged),
        {"unacknowledged": unacknowledged},
    )


def forward_slot_alert(migration_id: str, slot: str, retained_bytes: int, thresholds: Thresholds) -> Alert | None:
    """P2 while the forward slot, kept on the source after the cutover for a rollback, retains more WAL than
    `slot_retained_wal_mb`: the source's disk fills until pg_migration_teardown drops it."""
    if retained_bytes <= thresholds.slot_retained_wal_mb * 1024 * 1024:
        return None
    return Alert(
        P2,
        "forward_slot_retained",
        migration_id,
        f"replication slot {slot} on the source retains {retained_bytes / 2**20:,.0f} MB of WAL since the "
        f"cutover (threshold {thresholds.slot_retained_wal_mb:,.0f} MB): it is kept for a rollback; run "
        "pg_migration_teardown once rollback is no longer wanted",
        {"slot": slot, "retained_bytes": retained_bytes},
    )


def schema_mismatch_alert(
    migration_id: str, differences: Sequence[Mapping[str, Any]], phase: str = "streaming"
) -> Alert | None:
    """P1 while the schemas differ (`SchemaDifference.as_dict()` items, expected ones already left out): one
    open row per migration, the message naming the differences found when it was raised. After the cutover the
    clients write to the target, so a difference is DDL there (`target_ddl_after_cutover`), not on the source."""
    if not differences:
        return None

    def show(value: Any) -> str:
        return "(absent)" if value is None else str(value)

    shown = "; ".join(
        f"{d['kind']} {d['object']}: source {show(d['source'])} | target {show(d['target'])}" for d in differences[:5]
    )
    more = f" (+{len(differences) - 5} more)" if len(differences) > 5 else ""
    if phase in REVERSE_PHASES:
        created = [d["object"] for d in differences if d["kind"] == "table" and d["source"] is None]
        return Alert(
            P1,
            "target_ddl_after_cutover",
            migration_id,
            f"DDL on the target after the cutover, not carried back by reverse replication: "
            f"{len(differences)} difference(s): {shown}{more}"
            + (f"; tables created on the target: {', '.join(created)}" if created else ""),
            {"differences": [dict(d) for d in differences[:50]], "count": len(differences), "created_tables": created},
        )
    return Alert(
        P1,
        "schema_mismatch",
        migration_id,
        f"schema mismatch: {len(differences)} difference(s) between source and target: {shown}{more}",
        {"differences": [dict(d) for d in differences[:50]], "count": len(differences)},
    )
