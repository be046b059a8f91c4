"""Preflight's rules on the migrated tables themselves: can their changes be decoded and identified (replica
identity, logged), how they travel (primary key or the native channel), can their columns be carried, their
large objects, and are they free on the target. Facts in, a `CheckResult` out, like `rules`.

Apart from `rules` (connections, server settings, names and roles) because these judge the tables, table by
table, from the catalog facts of `core.catalog`; `column_types` says which types can be carried.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from pgmigrate.core.catalog import TableInfo, TableRef
from pgmigrate.core.endpoints import PgEndpoint
from pgmigrate.preflight.rules import CheckResult, plural, quoted


def identifies_rows(replica_identity: str, has_pk: bool, has_identity_index: bool) -> bool:
    """Whether logical decoding can identify a relation's rows for UPDATE/DELETE."""
    return {"f": True, "i": has_identity_index, "d": has_pk}.get(replica_identity, False)


def replica_identity_gaps(
    tables: Iterable[TableInfo], leaves: Mapping[TableRef, tuple[str, bool, bool]] | None = None
) -> list[TableRef]:
    """Relations whose UPDATEs/DELETEs logical decoding cannot identify. For a partitioned table the
    partitions decide (changes are decoded per partition): `leaves` maps each to (relreplident, has_pk,
    has_identity_index); a partition missing from it is judged like its root."""
    gaps: list[TableRef] = []
    for t in tables:
        root = (t.replica_identity, bool(t.primary_key), t.has_replica_identity_index)
        if t.kind != "p" or not t.partitions:
            if not identifies_rows(*root):
                gaps.append(t.ref)
            continue
        gaps.extend(p for p in t.partitions if not identifies_rows(*(leaves or {}).get(p, root)))
    return list(dict.fromkeys(gaps))


def check_replica_identity(
    gaps: list[TableRef],
    applied: list[TableRef],
    error: str | None = None,
    partition_of: Mapping[TableRef, TableRef] | None = None,
) -> CheckResult:
    name = "replica_identity"
    partition_of = partition_of or {}

    def shown(t: TableRef) -> str:
        return f"{t.qualified} (partition of {partition_of[t].qualified})" if t in partition_of else t.qualified

    fix_sql = "\n".join(f"ALTER TABLE {quoted(t.schema, t.name)} REPLICA IDENTITY FULL;" for t in gaps)
    if error:
        return CheckResult(
            name,
            ok=False,
            problem=f"applying REPLICA IDENTITY FULL failed: {error}",
            fix=f"Run as the owner:\n{fix_sql}",
        )
    key_note = " Tables without a primary key have no Kafka message key: the JDBC sink cannot upsert them by key."
    if applied:
        listed = ", ".join(shown(t) for t in applied)
        return CheckResult(name, ok=True, detail=f"applied REPLICA IDENTITY FULL to {listed}.{key_note}")
    if gaps:
        listed = ", ".join(shown(t) for t in gaps)
        return CheckResult(
            name,
            ok=False,
            problem=f"{plural(len(gaps), 'table')} without a primary key or usable replica identity "
            f"(their UPDATEs/DELETEs cannot be replicated): {listed}",
            fix=f"Add a primary key, or run on the source:\n{fix_sql}\n"
            "(or rerun with replica_identity_full_for_no_pk=true to have preflight apply it)",
        )
    return CheckResult(name, ok=True, detail="every table has a primary key or a usable replica identity")


def check_unlogged_tables(unlogged: list[TableRef], applied: list[TableRef], error: str | None = None) -> CheckResult:
    """Logical decoding never sees an unlogged table's rows (they are not in the WAL) and PostgreSQL refuses
    one in a publication, so neither the load's slot nor streaming can carry it: refuse it by name, before
    anything is deployed, or make it logged when `set_logged_for_unlogged` allows."""
    name = "unlogged_tables"
    fix_sql = "\n".join(f"ALTER TABLE {quoted(t.schema, t.name)} SET LOGGED;" for t in unlogged)
    rewrite = "(SET LOGGED rewrites the table and writes it to the WAL, under an ACCESS EXCLUSIVE lock)"
    if error:
        return CheckResult(
            name,
            ok=False,
            problem=f"applying SET LOGGED failed: {error}",
            fix=f"Run as the owner:\n{fix_sql}\n{rewrite}",
        )
    if applied:
        return CheckResult(name, ok=True, detail=f"applied SET LOGGED to {', '.join(t.qualified for t in applied)}")
    if unlogged:
        return CheckResult(
            name,
            ok=False,
            problem=f"{plural(len(unlogged), 'unlogged table')} ({', '.join(t.qualified for t in unlogged)}): logical "
            "decoding cannot see their rows and PostgreSQL refuses them in a publication, so they cannot be "
            "migrated while unlogged",
            fix=f"Run on the source:\n{fix_sql}\n{rewrite}\nor rerun with set_logged_for_unlogged=true to have "
            "preflight apply it, or leave them out of `tables`.",
        )
    return CheckResult(name, ok=True, detail="no unlogged tables")


def check_primary_keys(tables: Iterable[TableInfo], subscription: str) -> CheckResult:
    """Tables with a primary key go through Debezium and the JDBC sink (applied by key). Keyless tables
    go through PostgreSQL's own logical replication (`native_replication`), which keeps duplicate rows
    exact; its apply worker matches a changed row on the target by the whole old row, so the source must
    log whole old rows: REPLICA IDENTITY FULL (USING INDEX names an index the target lacks while loading)."""
    keyless = [t for t in tables if not t.primary_key]
    if not keyless:
        return CheckResult("primary_keys", ok=True, detail="every table has a primary key")
    by_index = [t for t in keyless if t.replica_identity == "i"]
    if by_index:
        return CheckResult(
            "primary_keys",
            ok=False,
            problem=f"{plural(len(by_index), 'table')} without a PRIMARY KEY use REPLICA IDENTITY USING INDEX: "
            f"{', '.join(t.ref.qualified for t in by_index)}. Keyless tables are replicated by PostgreSQL "
            "logical replication, which matches rows on the target by the whole row.",
            fix="Run on the source (or give the table a primary key):\n"
            + "\n".join(f"ALTER TABLE {quoted(t.ref.schema, t.ref.name)} REPLICA IDENTITY FULL;" for t in by_index),
        )
    return CheckResult(
        "primary_keys",
        ok=True,
        detail=f"{plural(len(keyless), 'table')} without a primary key ({', '.join(t.ref.qualified for t in keyless)}) "
        f"will be replicated by PostgreSQL logical replication (subscription {subscription} on the target), "
        "which keeps duplicate rows exact",
    )


def check_column_types(uncarriable: list[str], routed: list[str] | None = None) -> CheckResult:
    """`uncarriable`: columns no channel can carry (refused); `routed`: columns Debezium cannot carry exactly, whose
    tables therefore travel by PostgreSQL's own logical replication (the native channel), named so that the
    routing is never a surprise. Both as `column_types.uncarriable_columns` renders them."""
    if not uncarriable:
        detail = "every column type is carried exactly"
        if routed:
            detail += (
                f"; {plural(len(routed), 'column')} Debezium cannot carry exactly, so their tables travel by "
                f"PostgreSQL logical replication (the native channel): {'; '.join(routed)}"
            )
        return CheckResult("column_types", ok=True, detail=detail)
    return CheckResult(
        "column_types",
        ok=False,
        problem=f"{plural(len(uncarriable), 'column')} of types neither Debezium nor PostgreSQL logical replication "
        "can carry: " + "; ".join(uncarriable),
        fix="Store these values in a type PostgreSQL can read back and compare, on the source (e.g. ALTER TABLE … "
        "ALTER COLUMN … TYPE text USING …::text, or jsonb for json), or give a keyless table a primary key, or drop "
        "the column, or leave its table out of `tables`.",
    )


def check_large_objects(count: int, total_bytes: int | None) -> CheckResult:
    """Large objects are copied with their oids after the load (`large_objects`); never streamed afterwards."""
    if not count:
        return CheckResult("large_objects", ok=True, detail="no large objects")
    size = f", {total_bytes / 1e6:.1f} MB" if total_bytes is not None else ""
    return CheckResult(
        "large_objects",
        ok=True,
        detail=f"{plural(count, 'large object')}{size}: copied with their oids after the initial load "
        "(apply_post_data) and compared by validation; changes to large objects after that copy are NOT streamed "
        "(logical decoding does not carry them): stop writing them before the load, or rerun apply_post_data before "
        "the cutover",
    )


def check_target_tables(states: Mapping[TableRef, str], target: PgEndpoint, conn_id: str) -> CheckResult:
    """`states`: TableRef -> 'absent' | 'empty' | 'has rows'."""
    busy = [t for t, s in states.items() if s == "has rows"]
    if not busy:
        present = sum(1 for s in states.values() if s == "empty")
        return CheckResult("target_tables", ok=True, detail=f"{len(states) - present} absent, {present} empty")
    listed = ", ".join(t.qualified for t in busy)
    truncate = "\n".join(f"TRUNCATE {quoted(t.schema, t.name)};" for t in busy)
    return CheckResult(
        "target_tables",
        ok=False,
        problem=f"{plural(len(busy), 'table')} already holding rows on the target {target.label}: {listed}",
        fix=f"Empty them on the target if their rows are disposable:\n{truncate}\n(or DROP TABLE them), "
        f"or point the Airflow connection `{conn_id}` at another database.",
    )
