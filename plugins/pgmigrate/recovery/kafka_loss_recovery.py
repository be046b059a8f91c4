"""Recovery after Kafka lost its data (broker storage wiped or replaced).

What is lost: every record the source connector had produced and the slot had confirmed, but the sink had
not applied yet, and Kafka Connect's own topics (connector configs, offsets, status), so every connector is
gone. What survives: the replication slot (its `confirmed_flush_lsn` is where the source connector resumes)
and both databases. Inserts and updates that were lost are rewritten by an incremental snapshot (the sink
upserts every row at its current source value); lost deletes are not: a row deleted on the source stays on
the target. So the recovery, in this order (`STEPS`):

1. redeploy the connectors (`pipeline_ops.restart`: recreated from the migration's configs with the fixed slot
   name, so never a second slot; the source connector has no offsets and streams from the slot's position;
   the broker creates the topics again on first write);
2. incremental snapshot of every Debezium table (the target is NOT emptied first: it stays as complete as it
   was while the snapshot runs) and the native channel's tables again through their subscription;
3. wait for both;
4. row diff; on the target, DELETE only the rows reported extra (on the target, not on the source), after
   reading those keys on the source once more so that a key inserted again meanwhile is kept;
5. validate: the row diff must find every table identical.

Every step is safe to rerun: redeploy converges, a second snapshot rewrites the same values, a deleted row is
not found again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from psycopg import sql

from pgmigrate.core.catalog import TableInfo
from pgmigrate.core.endpoints import PgEndpoint
from pgmigrate.core.naming import MigrationNames
from pgmigrate.validate.row_diff import TableDiff, diff_table_on

log = logging.getLogger(__name__)

# (task_id, why it comes at this point). The DAG wires its tasks in this order; the unit tests check it.
STEPS: tuple[tuple[str, str], ...] = (
    ("redeploy_connectors", "nothing streams until the connectors exist again; the snapshot runs in the source one"),
    ("request_resync", "rewrites inserts and updates that were lost with the topics (upsert, target not emptied)"),
    ("wait_resync", "the diff is meaningful only once every row was re-read"),
    ("remove_lost_deletes", "deletes are not in a snapshot: rows extra on the target are removed by key"),
    ("validate", "the target must now be identical; fails naming tables and keys"),
)
DELETE_BATCH = 500
DELETE_PASSES = 3  # a pass removes at most `max_rows` extra keys per table; a few passes cover any count


# --- pure planning (unit-tested) -----------------------------------------------------------------------


@dataclass(frozen=True)
class RecoveryPlan:
    """Which tables each step touches: Debezium's (keyed) and the native channel's (keyless, timetz)."""

    snapshot: list[str]  # qualified names, for the incremental snapshot and the delete pass
    native: list[str]  # copied again through the subscription; never in the delete pass (no key to delete by)

    @property
    def steps(self) -> list[str]:
        return [task_id for task_id, _ in STEPS]


def plan_recovery(keyed: Iterable[TableInfo], native: Iterable[TableInfo]) -> RecoveryPlan:
    return RecoveryPlan([t.ref.qualified for t in keyed], [t.ref.qualified for t in native])


def deletable_keys(diff: TableDiff) -> list[dict[str, Any]]:
    """Keys of the rows to delete on the target: only rows the diff found on the target and not on the source
    at rest (it re-read them across a pause longer than the lag; rows in flight are not in `extra`). Never a
    missing or changed row, nothing of a keyless table (its `extra` holds example rows, not keys) or of a table
    the diff could not compare."""
    if diff.error is not None or not diff.primary_key:
        return []
    return [dict(d.key) for d in diff.extra if d.kind == "extra"]


def still_absent(keys: list[dict[str, Any]], present_on_source: Iterable[int]) -> list[dict[str, Any]]:
    """`keys` minus those the source holds now (by position in `keys`: inserted again after the diff); those
    must not be deleted."""
    present = set(present_on_source)
    return [k for n, k in enumerate(keys) if n not in present]


def batches(items: list, size: int = DELETE_BATCH) -> list[list]:
    return [items[n : n + size] for n in range(0, len(items), size)]


# --- I/O -------------------------------------------------------------------------------------------------


def slot_position(source: PgEndpoint, names: MigrationNames) -> dict[str, Any]:
    """The migration's slots on the source (there must be exactly one of its name) and where the recreated
    source connector resumes: the slot's confirmed_flush_lsn."""
    with source.connect(autocommit=True) as conn:
        rows = conn.execute(
            "SELECT slot_name, confirmed_flush_lsn::text, active FROM pg_replication_slots "
            "WHERE database = current_database() AND slot_name = %s",
            (names.slot,),
        ).fetchall()
    return {"slot": names.slot, "count": len(rows), "confirmed_flush_lsn": rows[0][1] if rows else None}


def _key_values(table: TableInfo, keys: list[dict[str, Any]]) -> tuple[sql.Composable, list]:
    """`VALUES (0, k1::type, …), (1, …)`: the keys as the server's typed values (the diff reports them as JSON
    types), numbered by position. format_type() output is PostgreSQL's own quoted type name: safe to splice
    as a cast (as `key_ranges` does)."""
    types = {c.name: c.type_name for c in table.columns}
    casts = sql.SQL(", ").join(
        sql.SQL("{}::{}").format(sql.Placeholder(), sql.SQL(types[c])) for c in table.primary_key
    )
    rows = sql.SQL(", ").join(sql.SQL("({}, {})").format(sql.Literal(n), casts) for n in range(len(keys)))
    return sql.SQL("VALUES {}").format(rows), [key[c] for key in keys for c in table.primary_key]


def _join_on_key(table: TableInfo) -> tuple[sql.Composable, sql.Composable]:
    """(column list `v(i, k0, k1…)`, condition `t.pk0 = v.k0 AND …`) for joining the table to `_key_values`."""
    aliases = [sql.Identifier(f"k{n}") for n in range(len(table.primary_key))]
    columns = sql.SQL("v(i, {})").format(sql.SQL(", ").join(aliases))
    condition = sql.SQL(" AND ").join(
        sql.SQL("t.{} = v.{}").format(sql.Identifier(c), a) for c, a in zip(table.primary_key, aliases, strict=True)
    )
    return columns, condition


def _present_on_source(conn, table: TableInfo, keys: list[dict[str, Any]]) -> set[int]:
    values, args = _key_values(table, keys)
    columns, condition = _join_on_key(table)
    query = sql.SQL("SELECT v.i FROM ({}) AS {} JOIN {} AS t ON {}").format(values, columns, table.ref.ident, condition)
    return {row[0] for row in conn.execute(query, args)}


def _delete_on_target(conn, table: TableInfo, keys: list[dict[str, Any]]) -> int:
    values, args = _key_values(table, keys)
    columns, condition = _join_on_key(table)
    query = sql.SQL("DELETE FROM {} AS t USING ({}) AS {} WHERE {}").format(table.ref.ident, values, columns, condition)
    return conn.execute(query, args).rowcount


def remove_lost_deletes(src, dst, table: TableInfo, passes: int = DELETE_PASSES, **diff_options: Any) -> dict:
    """Delete on the target the rows of `table` that no longer exist on the source, over open canonical
    autocommit connections (`row_diff.connect_canonical`). Returns counts for the log, the event and XCom."""
    started, deleted, kept, found = time.monotonic(), 0, 0, 0
    diff_options.setdefault("max_rows", 100_000)
    # Only rows extra on the target matter here, and deleting one whose delete is merely in flight is what the sink
    # would do anyway: a short re-check is enough (hot rows otherwise keep it pausing). `validate` keeps the
    # default, conservative pauses.
    diff_options.setdefault("attempts", 3)
    diff_options.setdefault("pause_seconds", 2.0)
    for n in range(1, passes + 1):
        diff = diff_table_on(src, dst, table, **diff_options)
        keys = deletable_keys(diff)
        if not keys:
            break
        found += len(keys)
        for batch in batches(keys):
            # Read the keys on the source once more right before deleting: a key inserted again since the diff
            # is on its way to the target (or there already) and must stay.
            absent = still_absent(batch, _present_on_source(src, table, batch))
            kept += len(batch) - len(absent)
            if not absent:
                continue
            with dst.transaction():
                # As the sink writes: the target's triggers and FK checks do not fire (their effects come from the
                # source themselves; the rows deleted here were deleted there).
                dst.execute("SET LOCAL session_replication_role = replica")
                deleted += _delete_on_target(dst, table, absent)
        log.info(
            "remove_lost_deletes: %s pass %d: %d rows extra on the target, %d deleted so far, %d kept "
            "(back on the source)",
            table.ref.qualified,
            n,
            len(keys),
            deleted,
            kept,
        )
        if diff.extra_count <= len(keys):
            break  # every extra row was listed: nothing left for another pass
    seconds = time.monotonic() - started
    log.info("remove_lost_deletes: %s: %d deleted, %d kept, %.1f s", table.ref.qualified, deleted, kept, seconds)
    return {
        "table": table.ref.qualified,
        "extra": found,
        "deleted": deleted,
        "kept": kept,
        "seconds": round(seconds, 1),
    }
