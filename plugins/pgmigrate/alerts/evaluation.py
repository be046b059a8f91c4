"""One monitor pass's verdict over a migration: every rule of `rules` over what was read (`Readings` ->
`evaluate`), which condition kinds that decided (`Evaluation`), and what to raise and resolve against the open
alerts (`plan_reconcile`). Pure; apart from the rules so that adding a rule and wiring it in stay two small steps.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pgmigrate.alerts.rules import (
    Alert,
    Thresholds,
    condition_kind,
    connect_unreachable_alert,
    connector_alerts,
    dead_letter_alert,
    forward_slot_alert,
    kafka_disk_alert,
    lag_alert,
    schema_mismatch_alert,
    slow_query_alert,
    validation_alert,
)


@dataclass
class Evaluation:
    """The active conditions and the condition kinds actually evaluated this time: an open alert of a
    kind that could not be evaluated (Connect unreachable, say) is neither raised again nor resolved."""

    active: list[Alert] = field(default_factory=list)
    evaluated: set[str] = field(default_factory=set)

    def add(self, kind: str, alerts: Iterable[Alert]) -> None:
        self.evaluated.add(kind)
        self.active.extend(alerts)


@dataclass
class Readings:
    """Everything the monitor read for one migration; None = could not be read (not evaluated)."""

    phase: str
    connector_statuses: dict[str, dict[str, Any] | None] | None = None
    connect_unreachable: str | None = None  # why Kafka Connect's REST API did not answer
    lag_samples: list[tuple[datetime, float | None]] | None = None
    now: datetime | None = None
    kafka_disk: list[tuple[str, int, int]] | None = None
    slow_queries: list[dict[str, Any]] | None = None
    last_validation: dict[str, Any] | None = None
    caught_up_seconds: float = 5.0
    dead_letters: int | None = None  # unacknowledged DLQ records
    schema_differences: list[dict[str, Any]] | None = None  # schema drift (SchemaDifference.as_dict())
    forward_slot: tuple[str, int] | None = None  # after the cutover: (slot, WAL bytes it retains on the source)


def evaluate(migration_id: str, readings: Readings, thresholds: Thresholds, open_conditions: set[str]) -> Evaluation:
    """Every rule over one migration's readings."""
    result = Evaluation()
    if readings.connect_unreachable is not None or readings.connector_statuses is not None:
        result.add(
            "connect_unreachable", filter(None, [connect_unreachable_alert(migration_id, readings.connect_unreachable)])
        )
    if readings.connector_statuses is not None:
        failed, restarted = connector_alerts(migration_id, readings.connector_statuses)
        result.add("connector_failed", failed)
        result.add("task_restarted", restarted)
    current_lag = None
    if readings.lag_samples is not None and readings.now is not None:
        result.add("lag_high", filter(None, [lag_alert(migration_id, readings.lag_samples, readings.now, thresholds)]))
        current_lag = max(readings.lag_samples, key=lambda s: s[0])[1] if readings.lag_samples else None
    if readings.lag_samples is not None:
        found = validation_alert(
            migration_id,
            readings.last_validation,
            current_lag,
            readings.caught_up_seconds,
            "data_loss" in open_conditions,
            thresholds.halt_on_data_loss,
        )
        result.add("data_loss", [found] if found and found.kind == "data_loss" else [])
        result.add("validation_mismatch", [found] if found and found.kind == "validation_mismatch" else [])
    if readings.kafka_disk is not None:
        result.add("kafka_disk", filter(None, [kafka_disk_alert(migration_id, readings.kafka_disk, thresholds)]))
    if readings.slow_queries is not None:
        result.add("slow_query", filter(None, [slow_query_alert(migration_id, readings.slow_queries, thresholds)]))
    if readings.dead_letters is not None:
        result.add("dead_letters", filter(None, [dead_letter_alert(migration_id, readings.dead_letters)]))
    if readings.schema_differences is not None:
        found = schema_mismatch_alert(migration_id, readings.schema_differences, readings.phase)
        result.add("schema_mismatch", [found] if found and found.kind == "schema_mismatch" else [])
        result.add("target_ddl_after_cutover", [found] if found and found.kind == "target_ddl_after_cutover" else [])
    if readings.forward_slot is not None:
        slot, retained = readings.forward_slot
        found = forward_slot_alert(migration_id, slot, retained, thresholds)
        result.add("forward_slot_retained", [found] if found else [])
    if readings.phase == "cut_over":
        result.evaluated.add("cutover_failed")  # a cutover succeeded since: an earlier failure is resolved
    return result


def plan_reconcile(open_conditions: Iterable[str], evaluation: Evaluation) -> tuple[list[Alert], list[str]]:
    """(alerts to raise, open conditions to resolve): raise what is active and not open; resolve what is
    open, of an evaluated kind, and no longer active."""
    open_set = set(open_conditions)
    active = {a.condition: a for a in evaluation.active}
    to_raise = [a for key, a in active.items() if key not in open_set]
    to_resolve = sorted(c for c in open_set if c not in active and condition_kind(c) in evaluation.evaluated)
    return to_raise, to_resolve
