"""Progress of the initial load: whether the Debezium source finished its snapshot (from its Connect
offsets), and how far each table got on the target (rows there vs the source's estimate)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

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
