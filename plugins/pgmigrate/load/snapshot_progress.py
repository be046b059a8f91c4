"""Progress of the initial load: whether the Debezium source finished its snapshot (from its Connect
offsets), and how far each table got on the target (rows there vs the source's estimate)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pgmigrate.core.waits import WaitStatus
from pgmigrate.kafka.client_config import KafkaCluster

if TYPE_CHECKING:
    from pgmigrate.core.catalog import TableRef
    from pgmigrate.core.endpoints import PgEndpoint
    from pgmigrate.core.naming import MigrationNames
    from pgmigrate.kafka.connect_client import ConnectClient

NOT_STARTED = "not_started"
IN_PROGRESS = "in_progress"
COMPLETE = "complete"

_TRUE = (True, "true", "True")


def snapshot_phase(offsets: list[dict[str, Any]]) -> str:
    """Read `GET /connectors/{name}/offsets` of a Debezium PostgreSQL source.

    While the initial snapshot runs, the committed offset carries a `snapshot` marker (a boolean,
    or the snapshot kind such as "INITIAL" in newer versions) until the last snapshot record;
    streaming offsets carry `lsn` without it. No offset at all: nothing committed yet.
    """
    if not offsets:
        return NOT_STARTED
    offset = offsets[0].get("offset") or {}
    if not offset:
        return NOT_STARTED
    marker = offset.get("snapshot")
    in_snapshot = marker in _TRUE or (isinstance(marker, str) and marker not in ("false", "False", ""))
    if in_snapshot and offset.get("last_snapshot_record") not in _TRUE:
        return IN_PROGRESS
    if offset.get("snapshot_completed") in (False, "false"):
        return IN_PROGRESS
    return COMPLETE


@dataclass
class TableProgress:
    table: str
    target_rows: int
    source_rows: int

    @property
    def fraction(self) -> float:
        return 1.0 if self.source_rows <= 0 else min(1.0, self.target_rows / self.source_rows)


def eta_seconds(done: int, total: int, rate_per_second: float) -> float | None:
    if rate_per_second <= 0 or done >= total:
        return None if done < total else 0.0
    return (total - done) / rate_per_second


def format_progress(progress: list[TableProgress], rate: float, eta: float | None) -> str:
    done = sum(p.target_rows for p in progress)
    total = sum(p.source_rows for p in progress)
    eta_text = "?" if eta is None else f"{int(eta // 60):02d}:{int(eta % 60):02d}"
    lines = [f"snapshot: {done}/{total} rows ({100 * done / max(total, 1):.0f}%), {rate:.0f} rows/s, ETA {eta_text}"]
    for p in progress:
        lines.append(f"  {p.table}: {p.target_rows}/{p.source_rows} ({100 * p.fraction:.0f}%)")
    return "\n".join(lines)


# The planner's reltuples comes from a real scan (VACUUM, ANALYZE, CREATE INDEX) and survives restarts;
# the statistics' live-row count is lost after a crash and can count a load twice around an ANALYZE
# (seen on 15). So the source estimate is reltuples, or the live count for a never-analyzed table.
# pg_partition_tree() lists nothing for a plain table, hence the table itself in the UNION; partitioned
# parents hold no rows of their own (their reltuples repeats the leaves'), so only leaves count.
_ROWS_SQL = (
    "WITH rels AS (SELECT %(t)s::regclass AS relid UNION SELECT relid FROM pg_partition_tree(%(t)s::regclass)) "
    "SELECT coalesce(sum(s.n_live_tup), 0)::bigint, coalesce(sum(greatest(c.reltuples, 0)), 0)::bigint "
    "FROM rels r JOIN pg_class c ON c.oid = r.relid LEFT JOIN pg_stat_user_tables s ON s.relid = r.relid "
    "WHERE c.relkind <> 'p'"
)


def estimated_rows(endpoint, tables, use_planner_estimate: bool = True) -> dict[str, int]:
    """Rows per table, cheaply and approximately (for progress, never for validation)."""
    from psycopg import sql

    counts = {}
    with endpoint.connect(autocommit=True) as conn:
        for table in tables:
            regclass = sql.Identifier(table.schema, table.name).as_string(conn)
            live, planner = conn.execute(_ROWS_SQL, {"t": regclass}).fetchone()
            counts[table.qualified] = planner if use_planner_estimate and planner > 0 else live
    return counts


def read_table_progress(source, target, tables) -> list[TableProgress]:
    # The target's tables start empty (or truncated): only its live count says how far the load got.
    src, dst = estimated_rows(source, tables), estimated_rows(target, tables, use_planner_estimate=False)
    return [TableProgress(t.qualified, dst[t.qualified], src[t.qualified]) for t in tables]


@dataclass
class SnapshotWatch:
    """What `snapshot_loaded` remembers between looks: the topics' end offsets when the source's snapshot was first
    seen complete (the sink must pass them), and the last rows count (for the rate)."""

    marks: dict | None = None
    previous: tuple[float, int] | None = None


def snapshot_loaded(
    source: PgEndpoint,
    target: PgEndpoint,
    names: MigrationNames,
    tables: list[TableRef],
    debezium_snapshot: bool,
    connect: ConnectClient,
    kafka: KafkaCluster | None,
    watch: SnapshotWatch,
) -> WaitStatus:
    """`wait_snapshot`: done when the Debezium source finished its snapshot and the sink applied it (with
    `debezium_snapshot=False`, the `copy` method, it was loaded by the `snapshot` task), and the native channel's
    subscription synced every table; fatal when a connector FAILED. The message has per-table progress."""
    from pgmigrate.kafka.connector_status import failed_connectors
    from pgmigrate.stream.lag import consumer_lag, read_sink_offsets, sink_reached
    from pgmigrate.stream.native_replication import read_native_sync_state

    failed = failed_connectors(connect, [names.source_connector, names.sink_connector])
    if failed:
        return WaitStatus.failed(f"during the initial snapshot: {failed}")
    phase = snapshot_phase(connect.get_offsets(names.source_connector)) if debezium_snapshot else COMPLETE
    native = read_native_sync_state(target, names)
    progress = read_table_progress(source, target, tables)
    end_offsets, committed = read_sink_offsets(kafka, names) if kafka else ({}, {})
    if phase == COMPLETE and watch.marks is None and debezium_snapshot:
        # Live writes keep the consumer lag above 0; what matters is that the sink got past every record that
        # existed when the snapshot was done.
        watch.marks = end_offsets
    done = sum(p.target_rows for p in progress)
    total = sum(p.source_rows for p in progress)
    now = time.monotonic()
    rate = (done - watch.previous[1]) / (now - watch.previous[0]) if watch.previous and now > watch.previous[0] else 0.0
    watch.previous = (now, done)
    native_note = f", {native.describe()}" if native is not None else ""
    progress_text = format_progress(progress, rate, eta_seconds(done, total, rate))
    message = f"source snapshot {phase}, sink consumer lag {consumer_lag(end_offsets, committed)}{native_note}\n"
    message += progress_text
    sink_done = not debezium_snapshot or (watch.marks is not None and sink_reached(watch.marks, committed))
    if phase == COMPLETE and sink_done and (native is None or native.complete):
        message = f"initial snapshot complete and applied: {done} rows on the target\n{progress_text}"
        return WaitStatus(True, message, result={"rows": done})
    return WaitStatus(False, message)
