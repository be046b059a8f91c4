"""What the pipeline can carry, column by column, and on which channel: the type rules behind preflight's
`column_types` check and the native channel's routing.

A body of knowledge of its own (Debezium's type mappings, what the text-form converter carries, what streaming
normalizes) that changes when the Debezium version or the converter changes, so it is kept apart from the other
preflight rules. Three answers per column: Debezium carries it exactly; only PostgreSQL's own logical replication
does (`debezium_problem`: its table travels by the native channel, `native_replication.needs_native_channel`);
or nothing can (`uncarriable_problem`: preflight refuses it by name). Pure functions over `catalog.Column`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from pgmigrate.core.catalog import FIRST_NORMAL_OID, Column, TableInfo

# What Debezium's PostgreSQL connector (3.7.0, the version the stack runs; the list was made on 3.6) can carry, from
# its data type mapping reference (postgresql.adoc, "Data type mappings") and PostgresValueConverter.schemaBuilder():
# a column whose type has no mapping gets no schema and, with include.unknown.datatypes=false (our
# connector config), is left out of every event: the target column would silently stay NULL. So a table with
# such a column travels by the native channel.
# Built-in types by OID (fixed in pg_type.dat across PostgreSQL versions).
SUPPORTED_BUILTIN_TYPES: dict[int, str] = {
    16: "boolean",
    17: "bytea",
    18: '"char"',
    19: "name",
    20: "bigint",
    21: "smallint",
    23: "integer",
    25: "text",
    26: "oid",
    114: "json",
    142: "xml",
    600: "point",
    650: "cidr",
    700: "real",
    701: "double precision",
    774: "macaddr8",
    790: "money",
    829: "macaddr",
    869: "inet",
    1042: "character",
    1043: "character varying",
    1082: "date",
    1083: "time",
    1114: "timestamp",
    1184: "timestamptz",
    1186: "interval",
    1266: "timetz",
    1560: "bit",
    1562: "bit varying",
    1700: "numeric",
    2950: "uuid",
    3614: "tsvector",
    3802: "jsonb",
    3904: "int4range",
    3906: "numrange",
    3908: "tsrange",
    3910: "tstzrange",
    3912: "daterange",
    3926: "int8range",
}
# Arrays of every element type are carried: the PostgresTextFormConverter (include/converters, in the source
# connector's config) sends any array as PostgreSQL's own array text, which the target parses back, so Debezium's
# array mappings (none for money[], interval[], bit[], arrays of domains or composites, multi-dimensional arrays)
# no longer matter. Measured for those, enum[], numeric[], range[], hstore[], timetz[] and 2-D arrays.
# Extension types Debezium recognises by type name (TypeRegistry); all other extension types are dropped.
SUPPORTED_EXTENSION_TYPES = frozenset(
    {"citext", "hstore", "ltree", "geometry", "geography", "vector", "halfvec", "sparsevec", "isbn"}
)
# Not in the lists, so routed to the native channel: composite types, user-defined ranges, every multirange, the
# geometric types other than point (box, lseg, line, path, polygon, circle: mapped by 3.7 as geometries the
# 3.6 sink cannot write without PostGIS), pg_lsn,
# tsquery, jsonpath, txid_snapshot/pg_snapshot, reg* types, tid/xid/xid8/cid, aclitem, refcursor,
# int2vector/oidvector, every other extension type, and domains whose base type is any of these.
# Mapped, but not exactly when streamed, so routed too: timetz. Debezium turns a streamed timetz into an
# OffsetTime at UTC before any converter sees it, so '03:04:05+02' arrives as '01:04:05+00' (the same instant of
# the day) and '24:00:00' as '00:00:00'.
LOSSY_WHEN_STREAMED: dict[int, str] = {1266: "timetz"}
# The types PostgresTextFormConverter sends as PostgreSQL's own text (its SCALARS, keep the two alike). It picks
# columns by their type's name, so a domain over one of them gets Debezium's own conversion instead, which alters
# NaN, infinity, BC dates, 24:00:00 and the like: such a domain's table is routed to the native channel.
TEXT_FORM_TYPES = frozenset(
    ("float4", "float8", "numeric", "date", "timestamp", "timestamptz", "time", "point", "timetz", "bit", "varbit")
    + ("hstore",)
)


# Built-in types whose input function accepts no value ("cannot accept a value of type pg_node_tree",
# "gtsvector_in not implemented"): planner and statistics internals. No COPY, INSERT or apply worker can write
# them on the target, so neither channel can carry such a column (or an array of one).
INPUT_REJECTED_TYPES: dict[int, str] = {
    194: "pg_node_tree",
    3361: "pg_ndistinct",
    3402: "pg_dependencies",
    3642: "gtsvector",
    4600: "pg_brin_bloom_summary",
    4601: "pg_brin_minmax_multi_summary",
    5017: "pg_mcv_list",
}


def debezium_problem(column: Column) -> str | None:
    """Why Debezium cannot carry this column's values exactly (None when it can). Such a column's table travels
    by the native channel instead, which carries every value in PostgreSQL's own text form."""
    if column.resolved_element_oid is not None:  # an array: carried as its text form by PostgresTextFormConverter
        return None
    oid, kind = column.resolved_oid, column.base_kind or column.type_kind
    if column.type_kind == "d" and column.base_name in TEXT_FORM_TYPES:
        return (
            f"a domain over {column.base_name} gets Debezium's own conversion, which alters NaN, infinity and BC values"
        )
    if oid in LOSSY_WHEN_STREAMED:
        return f"Debezium turns streamed {LOSSY_WHEN_STREAMED[oid]} offsets into +00"
    if oid in SUPPORTED_BUILTIN_TYPES:
        return None
    if oid < FIRST_NORMAL_OID:
        return "built-in type Debezium has no mapping for"
    if kind == "e":
        return None
    if kind == "c":
        return "composite type (Debezium has no mapping)"
    if kind in ("r", "m"):
        return "user-defined range type (Debezium has no mapping)"
    if kind == "b" and column.base_name in SUPPORTED_EXTENSION_TYPES:
        return None
    return f"type {column.base_name or column.type_name} has no Debezium mapping"


def uncarriable_problem(column: Column) -> str | None:
    """Why no channel can carry this column (None when one can)."""
    for oid in (column.resolved_oid, column.resolved_element_oid):
        if oid in INPUT_REJECTED_TYPES:
            return f"PostgreSQL accepts no input for type {INPUT_REJECTED_TYPES[oid]}, so nothing can write it"
    return None


def _judged(tables: Iterable[TableInfo]) -> Iterable[tuple[TableInfo, Column]]:
    """Columns the rules judge: stored generated columns are not, logical replication does not send them and
    the target computes its own."""
    return ((t, c) for t in tables for c in t.columns if not c.generated)


def _listed(tables: Iterable[TableInfo], problem: Callable[[Column], str | None]) -> list[str]:
    return [f"{t.ref.qualified}.{c.name}: {c.type_name} ({why})" for t, c in _judged(tables) if (why := problem(c))]


def uncarriable_columns(tables: Iterable[TableInfo]) -> list[str]:
    """Every column no channel can carry, as `schema.table.column: type (why)`."""
    return _listed(tables, uncarriable_problem)


def routed_columns(tables: Iterable[TableInfo]) -> list[str]:
    """Every column Debezium cannot carry exactly, so that its table travels by the native channel."""
    return _listed(tables, debezium_problem)


def unmatchable_keyless_columns(tables: Iterable[TableInfo]) -> list[str]:
    """Columns of keyless tables whose type has no equality operator (json, xml, box…): the native channel's apply
    worker finds the row an UPDATE or DELETE changes by comparing every column of the whole old row, and stops
    ("could not identify an equality operator for type json") at the first one. Generated columns count: the
    apply worker compares them too."""
    return [
        f"{t.ref.qualified}.{c.name}: {c.type_name} (a table without a primary key is matched by its whole row, and "
        f"PostgreSQL has no equality operator for this type: its first UPDATE or DELETE would stop replication)"
        for t in tables
        if not t.primary_key
        for c in t.columns
        if not c.has_equality
    ]


def routes_to_native_channel(table: TableInfo) -> bool:
    return any(debezium_problem(c) for _, c in _judged([table]))
