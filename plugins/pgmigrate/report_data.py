"""What the migration report shows, read from the control database only (read-only queries), so a
report can be written for any migration at any time, even when the servers it moved are gone."""

from __future__ import annotations

from typing import Any

from psycopg.rows import dict_row

from pgmigrate.endpoints import PgEndpoint
from pgmigrate.migration_report import ReportData


class UnknownMigration(LookupError):
    pass


def collect_report_data(control: PgEndpoint, migration_id: str, max_lag_samples: int = 5000) -> ReportData:
    with control.connect(autocommit=True) as conn:
        conn.row_factory = dict_row
        state = conn.execute("SELECT * FROM migration WHERE migration_id = %s", (migration_id,)).fetchone()
        if state is None:
            raise UnknownMigration(
                f"no migration {migration_id!r} in the control database (scripts/migration list shows them)"
            )
        events = conn.execute(
            "SELECT at, phase, message, details FROM migration_event WHERE migration_id = %s ORDER BY at, id",
            (migration_id,),
        ).fetchall()
        # The newest samples, charted oldest first.
        samples = conn.execute(
            "SELECT at, end_to_end_seconds FROM (SELECT at, end_to_end_seconds FROM lag_sample "
            "WHERE migration_id = %s ORDER BY at DESC LIMIT %s) s ORDER BY at",
            (migration_id, max_lag_samples),
        ).fetchall()
        snapshot = conn.execute(
            "SELECT table_name, status, rows_copied, bytes_copied, started_at, finished_at FROM snapshot_table "
            "WHERE migration_id = %s ORDER BY table_name",
            (migration_id,),
        ).fetchall()
        alerts: list[dict[str, Any]] = []
        if conn.execute("SELECT to_regclass('alert') IS NOT NULL AS present").fetchone()["present"]:
            alerts = conn.execute(
                "SELECT * FROM alert WHERE migration_id = %s ORDER BY raised_at", (migration_id,)
            ).fetchall()
    validation = state.get("last_validation") or {}
    return ReportData(
        migration_id=migration_id,
        state=dict(state),
        events=events,
        lag_samples=[(s["at"], s["end_to_end_seconds"]) for s in samples],
        snapshot_tables=snapshot,
        validation=list(validation.get("tables") or []),
        validated_at=validation.get("at"),
        great_expectations=validation.get("great_expectations"),
        alerts=alerts,
    )
