"""What the pipeline can carry, column by column: the type rules behind preflight's `column_types` check.

A body of knowledge of its own (Debezium's type mappings, what the text-form converter carries, what streaming
normalizes) that changes when the Debezium version or the converter changes, so it is kept apart from the other
preflight rules. Pure functions over `catalog.TableInfo` and the `PgTypeFacts` that `preflight` reads from
`pg_type`; `preflight_rules.check_column_types` turns what they find into a check result.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from pgmigrate.catalog import FIRST_NORMAL_OID, Column, TableInfo

# What Debezium 3.6's PostgreSQL connector (the version the stack runs) can carry, from its data type
# mapping reference (postgresql.adoc, "Data type mappings") and PostgresValueConverter.schemaBuilder():
# a column whose type has no mapping gets no schema and, with include.unknown.datatypes=false (our
# connector config), is left out of every event: the target column would silently stay NULL.
# Built-in types by OID (fixed in pg_type.dat across PostgreSQL versions).
SUPPORTED_BUILTIN_TYPES: dict[int, str] = {
    16: "boolean", 17: "bytea", 18: '"char"', 19: "name", 20: "bigint", 21: "smallint", 23: "integer",
    25: "text", 26: "oid", 114: "json", 142: "xml", 600: "point", 650: "cidr", 700: "real",
    701: "double precision", 774: "macaddr8", 790: "money", 829: "macaddr", 869: "inet", 1042: "character",
    1043: "character varying", 1082: "date", 1083: "time", 1114: "timestamp", 1184: "timestamptz",
    1186: "interval", 1266: "timetz", 1560: "bit", 1562: "bit varying", 1700: "numeric", 2950: "uuid",
    3614: "tsvector", 3802: "jsonb", 3904: "int4range", 3906: "numrange", 3908: "tsrange",
    3910: "tstzrange", 3912: "daterange", 3926: "int8range",
}  # fmt: skip
# Arrays of every element type are carried: the PostgresTextFormConverter (include/converters, in the source
# connector's config) sends any array as PostgreSQL's own array text, which the target parses back, so Debezium's
# array mappings (none for money[], interval[], bit[], arrays of domains or composites, multi-dimensional arrays)
# no longer matter. Measured for those, enum[], numeric[], range[], hstore[], timetz[] and 2-D arrays.
# Extension types Debezium recognises by type name (TypeRegistry); all other extension types are dropped.
SUPPORTED_EXTENSION_TYPES = frozenset(
    {"citext", "hstore", "ltree", "geometry", "geography", "vector", "halfvec", "sparsevec", "isbn"}
)
# Not in the list, so refused: composite types, user-defined ranges and multiranges, the geometric types
# other than point (box, lseg, line, path, polygon, circle: mapped only from Debezium 3.7), pg_lsn, tsquery,
# jsonpath, txid_snapshot/pg_snapshot, reg* types, int2vector/oidvector, and domains whose base type is any of
# these. Domains over supported types are carried as their base type (by Debezium's own conversion, not the
# converter's text form: README, "Known limits").
# Carried, but not exactly when streamed: timetz. Debezium turns a streamed timetz into an OffsetTime at UTC before
# any converter sees it, so '03:04:05+02' arrives as '01:04:05+00' (the same instant of the day) and '24:00:00'
# as '00:00:00'. The check names such columns in its result instead of refusing them (UTC values are exact).
LOSSY_WHEN_STREAMED: dict[int, str] = {1266: "timetz"}


@dataclass(frozen=True)
class PgTypeFacts:
    """A user-defined or extension type, as much as the type rule needs (read by `preflight._type_facts`)."""

    oid: int
    name: str
    kind: str  # typtype: b base, c composite, d domain, e enum, r range, m multirange, p pseudo
    base_oid: int | None = None  # domains: typbasetype
    element_oid: int | None = None  # arrays (typcategory 'A'): typelem


def _type_problem(oid: int, types: Mapping[int, PgTypeFacts], element_oid: int | None, depth: int = 0) -> str | None:
    """Why Debezium cannot carry a value of type `oid` (None when it can)."""
    if element_oid is not None:  # an array: carried as its text form by the PostgresTextFormConverter
        return None
    if oid in SUPPORTED_BUILTIN_TYPES:
        return None
    if oid < FIRST_NORMAL_OID:
        return "built-in type Debezium has no mapping for"
    facts = types.get(oid)
    if facts is None:
        return "unknown user-defined type"
    if facts.kind == "e":
        return None
    if facts.kind == "c":
        return "composite type (Debezium has no mapping)"
    if facts.kind == "d" and facts.base_oid is not None and depth < 10:
        base = types.get(facts.base_oid)
        inner = _type_problem(facts.base_oid, types, base.element_oid if base else None, depth + 1)
        return f"domain over an unsupported type ({inner})" if inner else None
    if facts.kind == "b" and facts.name in SUPPORTED_EXTENSION_TYPES:
        return None
    if facts.kind in ("r", "m"):
        return "user-defined range type (Debezium has no mapping)"
    return f"type {facts.name} has no Debezium mapping"


def column_problem(column: Column, types: Mapping[int, PgTypeFacts] | None = None) -> str | None:
    # `element_kind` is set only for real arrays (catalog also fills element_oid for name/point/box).
    return _type_problem(column.type_oid, types or {}, column.element_oid if column.element_kind else None)


def unsupported_columns(tables: Iterable[TableInfo], types: Mapping[int, PgTypeFacts] | None = None) -> list[str]:
    """Every column the pipeline cannot carry, as `schema.table.column: type (why)`. Stored generated
    columns are skipped: logical replication does not send them, the target computes its own."""
    found = []
    for t in tables:
        for c in t.columns:
            if c.generated:
                continue
            why = column_problem(c, types)
            if why:
                found.append(f"{t.ref.qualified}.{c.name}: {c.type_name} ({why})")
    return found


def lossy_columns(tables: Iterable[TableInfo]) -> list[str]:
    """Columns whose streamed values Debezium normalizes (LOSSY_WHEN_STREAMED), as `schema.table.column`."""
    return [
        f"{t.ref.qualified}.{c.name}"
        for t in tables
        for c in t.columns
        if not c.generated and c.type_oid in LOSSY_WHEN_STREAMED
    ]
