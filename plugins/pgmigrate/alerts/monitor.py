"""`pg_migration_monitor`'s pass: list the migrations to monitor (`monitored_ids`), then for each one
(`monitor_one`, one mapped task per migration in the DAG) read Connect, Kafka, the databases and the state DB,
evaluate the rules (`pgmigrate.alerts.evaluation`), reconcile the alert table (`lifecycle`), deliver messages.

No Airflow here: the DAG hands in endpoints, a Connect client, channels and its thresholds. A reading that fails (say
Connect is down) leaves its rules unevaluated, so their open alerts are neither repeated nor resolved.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from pgmigrate.alerts.evaluation import Readings, evaluate
from pgmigrate.alerts.lifecycle import deliver_pending, reconcile_alerts
from pgmigrate.alerts.messages import Channel
from pgmigrate.alerts.rules import MONITORED_PHASES, REVERSE_PHASES, Alert, Thresholds
from pgmigrate.control.alert_store import AlertStore
from pgmigrate.control.state import MigrationStateStore
from pgmigrate.core.endpoints import PgEndpoint
from pgmigrate.core.naming import MigrationNames
from pgmigrate.kafka.client_config import KafkaCluster
from pgmigrate.kafka.connect_client import ConnectClient

log = logging.getLogger(__name__)


def read_connector_statuses(connect: ConnectClient, names: MigrationNames) -> dict[str, dict[str, Any] | None]:
    """Status documents of the live direction's two connectors; None for one that does not exist."""
    return connect.statuses([names.source_connector, names.sink_connector])


def read_slow_queries(db: PgEndpoint, min_seconds: float) -> list[dict[str, Any]]:
    """Client queries in the database running longer than `min_seconds` (not replication, not us)."""
    with db.connect(autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid, usename, extract(epoch FROM now() - query_start)::float8, left(query, 500) "
            "FROM pg_stat_activity WHERE datname = current_database() AND backend_type = 'client backend' "
            "AND state = 'active' AND pid <> pg_backend_pid() AND query_start < now() - make_interval(secs => %s)",
            (min_seconds,),
        ).fetchall()
    return [{"pid": r[0], "usename": r[1], "seconds": r[2], "query": r[3]} for r in rows]


def read_kafka_disk(log_dirs: Sequence[str]) -> list[tuple[str, int, int]]:
    """(path, used bytes, total bytes) of the file system of each Kafka log dir visible from here."""
    usage = []
    for path in log_dirs:
        if Path(path).exists():
            du = shutil.disk_usage(path)
            usage.append((str(path), du.used, du.total))
    return usage


def sample_lag(
    store: MigrationStateStore,
    migration_id: str,
    source: PgEndpoint,
    target: PgEndpoint,
    names: MigrationNames,
    kafka: KafkaCluster | None,
    window_seconds: float,
) -> tuple[list[tuple[datetime, float | None]], datetime]:
    """Record a lag sample now (so the window fills even when no sensor runs) and return the samples
    of the last two windows with the control DB's clock."""
    from pgmigrate.stream.lag import read_lag

    reading = read_lag(source, target, names, kafka)
    store.record_lag(migration_id, reading.end_to_end_seconds, reading.sink_consumer_lag, reading.retained_wal_bytes)
    now, samples = store.now_and_recent_lag(migration_id, 2 * window_seconds + 300)
    return samples, now


@dataclass
class MonitorResult:
    migration_id: str
    phase: str
    raised: list[Alert] = field(default_factory=list)
    resolved: list[str] = field(default_factory=list)
    open: list[str] = field(default_factory=list)
    unread: dict[str, str] = field(default_factory=dict)  # reading -> why it failed
    halt: bool = False

    def summary(self) -> dict[str, Any]:
        return {
            "migration_id": self.migration_id,
            "phase": self.phase,
            "raised": [f"{a.severity} {a.condition}" for a in self.raised],
            "resolved": self.resolved,
            "open": self.open,
            "unread": self.unread,
            "halt": self.halt,
        }


def monitor_migration(
    state: dict[str, Any],
    control: PgEndpoint,
    source: PgEndpoint,
    target: PgEndpoint,
    connect: ConnectClient,
    kafka: KafkaCluster | None,
    thresholds: Thresholds,
    channel_names: Sequence[str],
    kafka_log_dirs: Sequence[str] = (),
) -> MonitorResult:
    """Read, evaluate and reconcile one migration. `halt` in the result: a data-loss alert was raised
    just now and `halt_on_data_loss` is on; the caller triggers pg_migration_halt."""
    migration_id, phase = state["migration_id"], state["phase"]
    result = MonitorResult(migration_id, phase)
    reverse = phase in REVERSE_PHASES
    names = MigrationNames(migration_id, reverse=reverse)
    live_source, live_target = (target, source) if reverse else (source, target)
    store = MigrationStateStore(control)
    readings = Readings(
        phase=phase,
        last_validation=state.get("last_validation"),
        caught_up_seconds=float((state.get("params") or {}).get("max_lag_seconds") or 5),
    )

    def attempt(what: str, fn):
        try:
            return fn()
        except Exception as exc:  # one unreadable part must not hide the others' alerts
            log.warning(
                "%s: could not read %s (%s); its alerts are neither raised nor resolved this run",
                migration_id,
                what,
                exc,
            )
            result.unread[what] = str(exc)[:300]
            return None

    if kafka and not reverse and (state.get("params") or {}).get("dead_letter"):
        # A sink FAILED on a row the target rejected: dead-letter it and resume (Debezium's sink cannot itself).
        from pgmigrate.recovery.dead_letter_quarantine import quarantine_rejected_rows

        quarantined = attempt("dead letter quarantine", lambda: quarantine_rejected_rows(connect, kafka, names))
        for q in quarantined or []:
            store.record_event(
                migration_id,
                "dead_letters",
                f"{q['table']} key {q['key']} rejected by the "
                f"target ({q['error']}): {q['records']} record(s) dead-lettered, sink resumed",
                **q,
            )

    def read_statuses() -> dict[str, dict[str, Any] | None]:
        from pgmigrate.kafka.connect_errors import ConnectUnavailableError

        try:
            return read_connector_statuses(connect, names)
        except ConnectUnavailableError as exc:  # a dead worker is itself the alert
            readings.connect_unreachable = str(exc)[:300]
            raise

    readings.connector_statuses = attempt("Kafka Connect statuses", read_statuses)
    lag = attempt(
        "lag",
        lambda: sample_lag(store, migration_id, live_source, live_target, names, kafka, thresholds.lag_window_seconds),
    )
    if lag is not None:
        readings.lag_samples, readings.now = lag
    readings.kafka_disk = attempt("Kafka log dirs", lambda: read_kafka_disk(kafka_log_dirs)) if kafka_log_dirs else None
    readings.slow_queries = attempt(
        "pg_stat_activity", lambda: read_slow_queries(live_source, thresholds.slow_query_seconds)
    )
    if kafka:
        # Dead letters of the forward sink (the only one with a DLQ), in every monitored phase: an
        # unacknowledged one stays a P0 until `scripts/migration dlq --ack`.
        from pgmigrate.recovery.dead_letters import read_backlog
        from pgmigrate.stream.throughput import sample_throughput

        readings.dead_letters = attempt(
            "dead letter topic", lambda: read_backlog(kafka, control, MigrationNames(migration_id)).unacknowledged
        )
        statuses = readings.connector_statuses
        attempt(
            "throughput",
            lambda: sample_throughput(control, migration_id, names, kafka, statuses, readings.dead_letters),
        )
    if reverse:  # the forward slot stays on the source for a rollback, keeping WAL until teardown
        from pgmigrate.stream.lag import read_retained_wal_bytes

        forward_slot = MigrationNames(migration_id).slot
        retained = attempt("forward slot", lambda: read_retained_wal_bytes(source, forward_slot))
        readings.forward_slot = (forward_slot, retained) if retained is not None else None
    # Schema drift (DDL on the source): two catalog reads, no dump, so every run can afford it.
    readings.schema_differences = attempt("schemas", lambda: _schema_drift(state, source, target))

    alerts = AlertStore(control)
    evaluation = evaluate(migration_id, readings, thresholds, alerts.open_conditions(migration_id))
    result.raised, result.resolved = reconcile_alerts(control, migration_id, evaluation, channel_names)
    if thresholds.halt_on_data_loss and any(a.kind == "data_loss" for a in result.raised):
        result.halt = True
    result.open = sorted(alerts.open_conditions(migration_id))
    return result


def _schema_drift(state: dict[str, Any], source: PgEndpoint, target: PgEndpoint) -> list[dict[str, Any]]:
    from pgmigrate.core.params import MigrationParams
    from pgmigrate.schema.schema_sync import read_drift

    params = MigrationParams.from_dict(state.get("params") or {"migration_id": state["migration_id"]})
    return [d.as_dict() for d in read_drift(source, target, params, state["phase"])]


def resolve_all(control: PgEndpoint, migration_id: str) -> list[str]:
    """A migration no longer monitored (torn down, rolled back, failed): its open monitor alerts end."""
    from pgmigrate.alerts.evaluation import Evaluation
    from pgmigrate.alerts.rules import MONITOR_KINDS

    _, resolved = reconcile_alerts(control, migration_id, Evaluation([], set(MONITOR_KINDS) | {"cutover_failed"}))
    return resolved


def deliver(control: PgEndpoint, channels: Sequence[Channel], migration_id: str | None = None) -> list:
    """Send the pending messages of `migration_id` (None: of every migration, what the others left)."""
    return deliver_pending(control, channels, migration_id)


ENDED_PHASES = ("torn_down", "rolled_back", "failed")


def monitored_ids(control: PgEndpoint, only: set[str] = frozenset()) -> list[str]:
    """The migrations to monitor now: those in a monitored phase (or `only` those of them), by id. Open alerts of a
    migration that ended (torn down, rolled back, failed) are resolved here, since no monitor run reads it again."""
    ids = []
    with_open = AlertStore(control).migrations_with_open_alerts()
    for state in MigrationStateStore(control).migrations():
        migration_id, phase = state["migration_id"], state["phase"]
        if only and migration_id not in only:
            continue
        if phase in MONITORED_PHASES:
            ids.append(migration_id)
        elif migration_id in with_open and phase in ENDED_PHASES:
            log.info(
                "%s is %s: its open alerts are resolved %s", migration_id, phase, resolve_all(control, migration_id)
            )
    return ids


def monitor_one(
    control: PgEndpoint,
    migration_id: str,
    connect: ConnectClient,
    kafka: KafkaCluster | None,
    channels: Sequence[Channel],
    log_dirs: Sequence[str],
    endpoint_for: Callable[[str], PgEndpoint],
    thresholds_for: Callable[[str], Thresholds],
) -> dict[str, str] | None:
    """Monitor one migration (`monitor_migration`) and log the outcome; returns the `pg_migration_halt` conf when a
    data-loss alert was raised now, else None. The state is read again, as the phase may have moved since the ids
    were listed. Raises when the migration cannot be monitored at all (the caller decides what that stops)."""
    state = MigrationStateStore(control).get(migration_id)
    if state is None or state["phase"] not in MONITORED_PHASES:
        log.info("%s is %s now: not monitored", migration_id, state["phase"] if state else "gone")
        return None
    phase, params = state["phase"], state["params"] or {}
    source = endpoint_for(params.get("source_conn_id", "migration_source"))
    target = endpoint_for(params.get("target_conn_id", "migration_target"))
    result = monitor_migration(
        dict(state),
        control,
        source,
        target,
        connect,
        kafka,
        thresholds_for(migration_id),
        [c.name for c in channels],
        log_dirs,
    )
    log.info(
        "%s (%s): open alerts %s; raised %s; resolved %s%s",
        migration_id,
        phase,
        result.open or "none",
        [a.condition for a in result.raised] or "none",
        result.resolved or "none",
        f"; not read: {result.unread}" if result.unread else "",
    )
    if not result.halt:
        return None
    log.error("P0 data loss on %s: triggering pg_migration_halt", migration_id)
    return {"migration_id": migration_id, "reason": "P0 data loss detected by pg_migration_monitor"}
