"""The control database's `alert` table (`AlertStore`): at most one open row per (migration, condition), so an
on-call person gets one message when a condition starts and one when it clears, however often the monitor runs;
and the pending messages claimed under row locks while they are sent (`AlertStore.claim_pending`).

What is raised or resolved and what a message says are `pgmigrate.alerts`; only the SQL is here.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from pgmigrate.control.state import MigrationStateStore
from pgmigrate.control.store import ControlStore

if TYPE_CHECKING:
    from pgmigrate.alerts.rules import Alert


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


class PendingAlerts:
    """The alert rows `AlertStore.claim_pending` claimed: locked until its transaction commits, so what
    `record_deliveries` writes is committed with the lock released at once."""

    def __init__(self, cur: psycopg.Cursor[dict[str, Any]], rows: list[dict[str, Any]]) -> None:
        self._cur = cur
        self.rows = rows

    def record_deliveries(
        self, alert_id: int, deliveries: dict[str, dict[str, str]], all_raised: bool, all_resolved: bool
    ) -> None:
        """What each channel was sent; notified_at once every channel has the raise, resolved_notified_at
        once every channel has the resolution."""
        self._cur.execute(
            "UPDATE alert SET deliveries = %s, "
            "notified_at = CASE WHEN %s THEN coalesce(notified_at, now()) END, "
            "resolved_notified_at = CASE WHEN %s THEN now() END WHERE id = %s",
            (Jsonb(deliveries), all_raised, all_resolved, alert_id),
        )


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

    @contextmanager
    def claim_pending(self, migration_id: str | None, max_age: timedelta) -> Iterator[PendingAlerts]:
        """The alerts raised within `max_age` with a message still to send, locked (SKIP LOCKED) in one
        transaction for the whole `with` block, so the monitor and a DAG failure notifier never send the same
        message twice. Committed when the block ends; rolled back if it raises."""
        with self.endpoint.connect() as conn, conn.cursor(row_factory=dict_row) as cur:
            cur.execute(
                "SELECT * FROM alert WHERE (%(m)s::text IS NULL OR migration_id = %(m)s) "
                "AND raised_at > now() - %(age)s "
                "AND (notified_at IS NULL OR (resolved_at IS NOT NULL AND resolved_notified_at IS NULL)) "
                "ORDER BY raised_at, id FOR UPDATE SKIP LOCKED",
                {"m": migration_id, "age": max_age},
            )
            yield PendingAlerts(cur, cur.fetchall())
            conn.commit()
