"""The alerts' store: at most one open row per (migration, condition) in the control database's `alert`
table, so an on-call person gets one message when a condition starts and one when it clears, however often the
monitor runs; and the reconciliation of what the rules (`rules`) say is active now with what is open.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from pgmigrate.alerts.evaluation import Evaluation, plan_reconcile
from pgmigrate.alerts.messages import Channel, message_payload, pending_messages
from pgmigrate.alerts.rules import MONITOR_KINDS, Alert
from pgmigrate.control.state import MigrationStateStore
from pgmigrate.control.store import ControlStore
from pgmigrate.core.endpoints import PgEndpoint

log = logging.getLogger(__name__)


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


class AlertStore(ControlStore):
    """The `alert` table (control/control_schema.sql); `MigrationStateStore.ensure_schema` creates it."""

    def open_conditions(self, migration_id: str) -> set[str]:
        with self._connect() as conn:
            rows = conn.execute(
                "SELECT condition FROM alert WHERE migration_id = %s AND resolved_at IS NULL", (migration_id,)
            ).fetchall()
        return {r[0] for r in rows}

    def raise_alert(self, alert: Alert, channels: Sequence[str]) -> bool:
        """Insert the open alert unless one is open for the condition (unique partial index): True if
        this call raised it. Also a timeline event, so it shows in status and reports."""
        with self._connect() as conn:
            row = conn.execute(
                "INSERT INTO alert (migration_id, condition, severity, message, details, deliveries) "
                "VALUES (%s, %s, %s, %s, %s, %s) "
                "ON CONFLICT (migration_id, condition) WHERE resolved_at IS NULL "
                "DO UPDATE SET last_seen_at = now() RETURNING (xmax = 0) AS inserted",
                (
                    alert.migration_id,
                    alert.condition,
                    alert.severity,
                    alert.message,
                    Jsonb(_jsonable(alert.details)),
                    Jsonb({c: {} for c in channels}),
                ),
            ).fetchone()
            inserted = bool(row and row[0])
            if inserted:
                self._event(
                    alert.migration_id,
                    f"{alert.severity} alert raised: {alert.message}",
                    condition=alert.condition,
                    severity=alert.severity,
                )
        return inserted

    def touch(self, migration_id: str, conditions: Iterable[str]) -> None:
        self._execute(
            "UPDATE alert SET last_seen_at = now() WHERE migration_id = %s AND condition = ANY(%s) "
            "AND resolved_at IS NULL",
            (migration_id, list(conditions)),
        )

    def resolve(self, migration_id: str, condition: str) -> bool:
        with self._connect() as conn:
            row = conn.execute(
                "UPDATE alert SET resolved_at = now() WHERE migration_id = %s AND condition = %s "
                "AND resolved_at IS NULL RETURNING severity",
                (migration_id, condition),
            ).fetchone()
            if row:
                self._event(migration_id, f"{row[0]} alert resolved: {condition}", condition=condition, severity=row[0])
        return row is not None

    def add_details(self, migration_id: str, condition: str, **details: Any) -> None:
        self._execute(
            "UPDATE alert SET details = details || %s WHERE migration_id = %s AND condition = %s "
            "AND resolved_at IS NULL",
            (Jsonb(_jsonable(details)), migration_id, condition),
        )

    def _event(self, migration_id: str, message: str, **details: Any) -> None:
        MigrationStateStore(self.endpoint).record_event(migration_id, "alert", message, **_jsonable(details))

    def alerts(self, migration_id: str, open_only: bool = False) -> list[dict[str, Any]]:
        return self._rows(
            "SELECT * FROM alert WHERE migration_id = %s AND (NOT %s OR resolved_at IS NULL) ORDER BY raised_at, id",
            (migration_id, open_only),
        )

    def migrations_with_open_alerts(self) -> set[str]:
        with self._connect() as conn:
            return {r[0] for r in conn.execute("SELECT DISTINCT migration_id FROM alert WHERE resolved_at IS NULL")}

    def deliver_pending(
        self, channels: Sequence[Channel], migration_id: str | None = None, max_age: timedelta = timedelta(days=1)
    ) -> list[tuple[str, str, str]]:
        """Send every pending message; returns (condition, channel, status) sent. Rows are locked while
        sending (SKIP LOCKED), so the monitor and a DAG failure notifier never send the same message
        twice; a channel that fails is retried on the next call, for up to `max_age`."""
        by_name = {c.name: c for c in channels}
        sent: list[tuple[str, str, str]] = []
        with self.endpoint.connect() as conn, conn.cursor(row_factory=dict_row) as cur:
            cur.execute(
                "SELECT * FROM alert WHERE (%(m)s::text IS NULL OR migration_id = %(m)s) "
                "AND raised_at > now() - %(age)s "
                "AND (notified_at IS NULL OR (resolved_at IS NOT NULL AND resolved_notified_at IS NULL)) "
                "ORDER BY raised_at, id FOR UPDATE SKIP LOCKED",
                {"m": migration_id, "age": max_age},
            )
            for row in cur.fetchall():
                deliveries = {k: dict(v) for k, v in (row["deliveries"] or {}).items()}
                for channel_name, status in pending_messages(row):
                    channel = by_name.get(channel_name)
                    if channel is None:
                        continue  # configured when raised, gone now: retried if it comes back
                    try:
                        channel.send(message_payload(row, status))
                    except Exception as exc:
                        log.error(
                            "alert %s of %s: %s channel failed (%s); retried on the next monitor run",
                            row["condition"],
                            row["migration_id"],
                            channel_name,
                            exc,
                        )
                        continue
                    deliveries[channel_name][status] = datetime.now().astimezone().isoformat()
                    sent.append((row["condition"], channel_name, status))
                all_raised = all(d.get("raised") for d in deliveries.values())
                all_resolved = row["resolved_at"] is not None and all(d.get("resolved") for d in deliveries.values())
                cur.execute(
                    "UPDATE alert SET deliveries = %s, "
                    "notified_at = CASE WHEN %s THEN coalesce(notified_at, now()) END, "
                    "resolved_notified_at = CASE WHEN %s THEN now() END WHERE id = %s",
                    (Jsonb(deliveries), all_raised, all_resolved, row["id"]),
                )
            conn.commit()
        return sent


def reconcile_alerts(
    store_endpoint: PgEndpoint,
    migration_id: str,
    active: list[Alert] | Evaluation,
    channels: Sequence[str] = ("log",),
) -> tuple[list[Alert], list[str]]:
    """Raise the active conditions that are not open yet, resolve open ones that cleared; (raised,
    resolved). A plain list counts as every monitor kind evaluated (MONITOR_KINDS); pass an Evaluation to
    say which kinds were evaluated when some could not be read."""
    evaluation = active if isinstance(active, Evaluation) else Evaluation(list(active), set(MONITOR_KINDS))
    store = AlertStore(store_endpoint)
    open_now = store.open_conditions(migration_id)
    to_raise, to_resolve = plan_reconcile(open_now, evaluation)
    raised = [a for a in to_raise if store.raise_alert(a, channels)]
    store.touch(migration_id, [a.condition for a in evaluation.active if a.condition in open_now])
    resolved = [c for c in to_resolve if store.resolve(migration_id, c)]
    for alert in raised:
        log.warning(
            "%s alert RAISED for %s: %s. What to do: %s", alert.severity, migration_id, alert.message, alert.action
        )
    for condition in resolved:
        log.info("alert RESOLVED for %s: %s cleared", migration_id, condition)
    return raised, resolved
