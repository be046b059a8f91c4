"""The migration state record in the control database (`migration_control`).

Status survives Airflow (a cleared run, a lost metadata DB) and is what later DAGs (cutover,
validation) and the on-call CLI read. Every write is an upsert keyed by migration_id, so tasks can
rerun freely.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from importlib import resources
from typing import Any

from psycopg import sql
from psycopg.types.json import Jsonb

from pgmigrate.control.store import ControlStore

SCHEMA_SQL = resources.files("pgmigrate.control") / "control_schema.sql"  # a package resource, shipped with the code

# Phases in order; a later phase implies the earlier ones are done.
PHASES = (
    "preflight_passed",
    "schema_copied",
    "snapshot_copied",
    "connectors_deployed",
    "snapshot_complete",
    "post_data_applied",
    "caught_up",
    "streaming",  # validated and streaming: ready for cutover
    "cutover_paused",  # client writes wait in PgBouncer
    "cut_over",  # clients on the target; reverse replication keeps the source current
    "rolling_back",
    "rolled_back",  # clients on the source again
    "torn_down",  # connectors, slots, publications and topics removed
    "failed",
)

_UPDATABLE = {
    "phase",
    "params",
    "slot_name",
    "publication_name",
    "source_connector",
    "sink_connector",
    "snapshot_lsn",
    "tables",
    "identity_columns",
    "sequences",
    "last_lag_seconds",
    "last_lag_at",
    "last_validation",
    "last_error",
    "pre_validation",
    "fences",
}
_JSON_FIELDS = {"params", "tables", "identity_columns", "sequences", "last_validation", "pre_validation", "fences"}


class MigrationStateStore(ControlStore):
    def ensure_schema(self) -> None:
        with self._connect() as conn:
            conn.execute(SCHEMA_SQL.read_text())

    def get(self, migration_id: str) -> dict[str, Any] | None:
        return self._row("SELECT * FROM migration WHERE migration_id = %s", (migration_id,))

    def upsert(self, migration_id: str, **fields: Any) -> None:
        unknown = set(fields) - _UPDATABLE
        if unknown:
            raise ValueError(f"unknown migration state fields: {sorted(unknown)}")
        values = {k: Jsonb(v) if k in _JSON_FIELDS else v for k, v in fields.items()}
        values.setdefault("phase", "preflight_passed")
        columns = ["migration_id", *values]
        query = sql.SQL(
            "INSERT INTO migration ({cols}) VALUES ({vals}) ON CONFLICT (migration_id) DO UPDATE SET {sets}, "
            "updated_at = now()"
        ).format(
            cols=sql.SQL(", ").join(map(sql.Identifier, columns)),
            vals=sql.SQL(", ").join(sql.Placeholder(c) for c in columns),
            sets=sql.SQL(", ").join(
                sql.SQL("{c} = EXCLUDED.{c}").format(c=sql.Identifier(c)) for c in values if c in fields
            )
            if fields
            else sql.SQL("migration_id = EXCLUDED.migration_id"),
        )
        self._execute(query, {"migration_id": migration_id, **values})

    def record_event(self, migration_id: str, phase: str, message: str, **details: Any) -> None:
        self._execute(
            "INSERT INTO migration_event (migration_id, phase, message, details) VALUES (%s, %s, %s, %s)",
            (migration_id, phase, message, Jsonb(json.loads(json.dumps(details, default=str)))),
        )

    def events(self, migration_id: str, limit: int = 200) -> list[dict[str, Any]]:
        """The migration's timeline, oldest first (the last `limit` events)."""
        return self._rows(
            "SELECT at, phase, message, details FROM (SELECT * FROM migration_event WHERE migration_id = %s "
            "ORDER BY at DESC, id DESC LIMIT %s) e ORDER BY at, id",
            (migration_id, limit),
        )

    def record_lag(
        self,
        migration_id: str,
        end_to_end_seconds: float | None,
        sink_consumer_lag: int | None,
        retained_wal_bytes: int | None,
    ) -> None:
        with self._connect() as conn:
            conn.execute(
                "INSERT INTO lag_sample (migration_id, end_to_end_seconds, sink_consumer_lag, retained_wal_bytes) "
                "VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING",
                (migration_id, end_to_end_seconds, sink_consumer_lag, retained_wal_bytes),
            )
            conn.execute(
                "UPDATE migration SET last_lag_seconds = %s, last_lag_at = now(), updated_at = now() "
                "WHERE migration_id = %s",
                (end_to_end_seconds, migration_id),
            )

    def set_snapshot_table(self, migration_id: str, table: str, status: str, rows: int = 0, nbytes: int = 0) -> None:
        self._execute(
            """
                INSERT INTO snapshot_table (migration_id, table_name, status, rows_copied, bytes_copied, started_at,
                                            finished_at)
                VALUES (%(m)s, %(t)s, %(s)s, %(r)s, %(b)s, now(), CASE WHEN %(s)s = 'done' THEN now() END)
                ON CONFLICT (migration_id, table_name) DO UPDATE SET
                    status = EXCLUDED.status, rows_copied = EXCLUDED.rows_copied, bytes_copied = EXCLUDED.bytes_copied,
                    started_at = CASE WHEN EXCLUDED.status = 'copying' THEN now() ELSE snapshot_table.started_at END,
                    finished_at = CASE WHEN EXCLUDED.status = 'done' THEN now() END
                """,
            {"m": migration_id, "t": table, "s": status, "r": rows, "b": nbytes},
        )

    def reset_snapshot_tables(self, migration_id: str) -> None:
        self._execute("DELETE FROM snapshot_table WHERE migration_id = %s", (migration_id,))

    def migrations(self, phases: list[str] | None = None) -> list[dict[str, Any]]:
        """Every migration's record (or those in `phases`), by id."""
        return self._rows(
            "SELECT * FROM migration WHERE %(p)s::text[] IS NULL OR phase = ANY(%(p)s) ORDER BY migration_id",
            {"p": phases},
        )

    def lag_samples(self, migration_id: str, limit: int = 5000) -> list[dict[str, Any]]:
        """The newest `limit` lag samples, oldest first (for charts)."""
        return self._rows(
            "SELECT at, end_to_end_seconds FROM (SELECT at, end_to_end_seconds FROM lag_sample "
            "WHERE migration_id = %s ORDER BY at DESC LIMIT %s) s ORDER BY at",
            (migration_id, limit),
        )

    def now_and_recent_lag(self, migration_id: str, seconds: float) -> tuple[datetime, list[tuple]]:
        """The control DB's clock, and the (at, end_to_end_seconds) samples of the last `seconds` before it."""
        with self._connect() as conn:
            now = conn.execute("SELECT now()").fetchone()[0]
            rows = conn.execute(
                "SELECT at, end_to_end_seconds FROM lag_sample WHERE migration_id = %s AND at > %s ORDER BY at",
                (migration_id, now - timedelta(seconds=seconds)),
            ).fetchall()
        return now, [(r[0], r[1]) for r in rows]

    def snapshot_tables(self, migration_id: str) -> list[dict[str, Any]]:
        return self._rows(
            "SELECT table_name, status, rows_copied, bytes_copied, started_at, finished_at FROM snapshot_table "
            "WHERE migration_id = %s ORDER BY table_name",
            (migration_id,),
        )

    # --- throughput samples (`stream.throughput` computes them) ---

    def now_and_last_throughput(self, migration_id: str) -> tuple[datetime, tuple | None]:
        """The control DB's clock, and the last (at, produced_total, applied_total) sample before it."""
        with self._connect() as conn:
            now = conn.execute("SELECT now()").fetchone()[0]
            prev = conn.execute(
                "SELECT at, produced_total, applied_total FROM throughput_sample WHERE migration_id = %s AND at < %s "
                "ORDER BY at DESC LIMIT 1",
                (migration_id, now),
            ).fetchone()
        return now, (tuple(prev) if prev else None)

    def record_throughput(self, migration_id: str, sample: dict[str, Any]) -> None:
        self._execute(
            "INSERT INTO throughput_sample (migration_id, at, produced_total, applied_total, produced_per_second, "
            "applied_per_second, dead_letters, failed_tasks) VALUES (%(migration_id)s, %(at)s, %(produced_total)s, "
            "%(applied_total)s, %(produced_per_second)s, %(applied_per_second)s, %(dead_letters)s, "
            "%(failed_tasks)s) ON CONFLICT DO NOTHING",
            {"migration_id": migration_id, **sample},
        )

    def throughput_samples(self, migration_id: str) -> list[dict[str, Any]]:
        """Every sample of the migration, oldest first (for the report)."""
        return self._rows(
            "SELECT at, produced_total, applied_total, produced_per_second, applied_per_second, dead_letters, "
            "failed_tasks FROM throughput_sample WHERE migration_id = %s ORDER BY at",
            (migration_id,),
        )

    # --- dead-letter acknowledgements (`recovery.dead_letters`) ---

    def dead_letter_ack(self, migration_id: str) -> tuple[dict[int, int], str | None]:
        """(acknowledged end offset per DLQ partition, the DLQ topic's id then); empty when none."""
        with self._connect() as conn:
            row = conn.execute(
                "SELECT offsets, topic_id FROM dead_letter_ack WHERE migration_id = %s", (migration_id,)
            ).fetchone()
        if not row:
            return {}, None
        return {int(p): int(o) for p, o in row[0].items()}, row[1]

    def acknowledge_dead_letters(
        self, migration_id: str, topic_id: str | None, end: dict[int, int], records: int, note: str
    ) -> None:
        """Acknowledge every record up to `end` (records counts this acknowledgement), with a timeline event."""
        offsets = {str(p): o for p, o in end.items()}
        self._execute(
            "INSERT INTO dead_letter_ack (migration_id, topic_id, offsets, records, note) "
            "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (migration_id) DO UPDATE SET topic_id = EXCLUDED.topic_id, "
            "offsets = EXCLUDED.offsets, records = CASE WHEN dead_letter_ack.topic_id = EXCLUDED.topic_id "
            "THEN dead_letter_ack.records ELSE 0 END + EXCLUDED.records, acked_at = now(), note = EXCLUDED.note",
            (migration_id, topic_id, Jsonb(offsets), records, note),
        )
        self.record_event(
            migration_id,
            "dead_letters",
            f"{records} dead letter(s) acknowledged" + (f": {note}" if note else ""),
            offsets=offsets,
            records=records,
        )
