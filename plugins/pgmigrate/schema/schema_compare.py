"""Compare the schemas of source and target: tables, columns and their types, primary keys, indexes,
constraints and sequences, each difference a structured item (kind, object, source value, target value).

Each side is read from the system catalogs into a flat map (kind, object) -> canonical text
(`format_type`, `pg_get_indexdef`, `pg_get_constraintdef`, `pg_get_expr`) under an empty search_path, so
every name is schema-qualified the same way on both servers. Then the two maps are compared; an object
missing on one side has `None` as that side's value, and what hangs off it (a missing table's columns and
indexes, a missing column's type) is not listed again.

Left out on purpose, because the migration changes them or they are not schema:
- the platform's own schema (`catalog.CONTROL_SCHEMA`), publications and subscriptions;
- replica identity (the native channel sets REPLICA IDENTITY FULL on its target tables);
- sequence values (synced at cutover); ownership and grants, which `roles.compare_privileges` compares (the
  drift monitor does not: a GRANT on the source is no schema change the sink trips on);
- with `ignore_identity_generation` (default): identity ALWAYS on the source vs BY DEFAULT on the target,
  which the schema copy does until cutover so the sink can insert the source's ids.
A foreign key still NOT VALID on the target (validation pending while rows stream in) is reported as kind
`constraint_validated`, apart from its definition.

`SchemaDifference.as_dict()`: {"kind": str, "object": str, "source": str | null, "target": str | null};
kinds: schema, table, column, column_type, column_not_null, column_default, column_identity, primary_key,
index, constraint, constraint_validated, sequence.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import asdict, dataclass

import psycopg

from pgmigrate.core.catalog import CONTROL_SCHEMA, TableRef
from pgmigrate.core.endpoints import PgEndpoint

log = logging.getLogger(__name__)

Key = tuple[str, str]  # (kind, object)


@dataclass(frozen=True, order=True)
class SchemaDifference:
    kind: str
    object: str  # schema.table, schema.table.column, schema.index, schema.table.constraint, schema.sequence
    source: str | None  # None: absent on the source
    target: str | None  # None: absent on the target

    def as_dict(self) -> dict[str, str | None]:
        return asdict(self)


@dataclass
class SchemaSnapshot:
    values: dict[Key, str]
    parents: dict[Key, Key]  # an object's parent: reported missing alone, not with everything it holds


def _q(*parts: str) -> str:
    """Display name of an object; quoted only where needed (logs and reports, never SQL)."""
    return TableRef(parts[0], parts[1]).qualified + "".join(
        "." + (p if p.isidentifier() and p == p.lower() else f'"{p}"') for p in parts[2:]
    )


_SCHEMAS_SQL = """
SELECT nspname FROM pg_namespace
WHERE nspname <> ALL(%(ignored)s) AND nspname NOT LIKE 'pg\\_%%' AND nspname <> 'information_schema'
ORDER BY 1
"""

_TABLES_SQL = """
SELECT n.nspname, c.relname, c.relkind
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = ANY(%(schemas)s) AND c.relkind IN ('r', 'p')
"""

_COLUMNS_SQL = """
SELECT n.nspname, c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
       pg_get_expr(d.adbin, d.adrelid), a.attidentity, a.attgenerated
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE n.nspname = ANY(%(schemas)s) AND c.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped
"""

_CONSTRAINTS_SQL = """
SELECT n.nspname, c.relname, con.conname, con.contype, pg_get_constraintdef(con.oid), con.convalidated
FROM pg_constraint con
JOIN pg_class c ON c.oid = con.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = ANY(%(schemas)s) AND c.relkind IN ('r', 'p') AND con.contype IN ('p', 'u', 'f', 'c', 'x')
"""

# Indexes that back a primary key, unique or exclusion constraint are compared as that constraint.
_INDEXES_SQL = """
SELECT n.nspname, c.relname, ic.relname, pg_get_indexdef(i.indexrelid), i.indisvalid
FROM pg_index i
JOIN pg_class ic ON ic.oid = i.indexrelid
JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = ANY(%(schemas)s) AND c.relkind IN ('r', 'p')
  AND NOT EXISTS (SELECT 1 FROM pg_constraint con
                  WHERE con.conindid = i.indexrelid AND con.conrelid = i.indrelid AND con.contype IN ('p', 'u', 'x'))
"""

# A sequence's owner (OWNED BY or identity), to keep only the sequences of chosen tables.
_SEQUENCES_SQL = """
SELECT n.nspname, c.relname, format_type(s.seqtypid, NULL), s.seqstart, s.seqincrement, s.seqmin, s.seqmax,
       s.seqcache, s.seqcycle, tn.nspname, t.relname
FROM pg_sequence s
JOIN pg_class c ON c.oid = s.seqrelid JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = c.oid
     AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')
LEFT JOIN pg_class t ON t.oid = d.refobjid LEFT JOIN pg_namespace tn ON tn.oid = t.relnamespace
WHERE n.nspname = ANY(%(schemas)s)
"""

_IDENTITY = {"a": "GENERATED ALWAYS AS IDENTITY", "d": "GENERATED BY DEFAULT AS IDENTITY"}


def user_schemas(conn: psycopg.Connection) -> list[str]:
    """Every schema but the system's and the platform's own."""
    return [r[0] for r in conn.execute(_SCHEMAS_SQL, {"ignored": [CONTROL_SCHEMA]}).fetchall()]


def read_schema(
    conn: psycopg.Connection,
    schemas: Iterable[str],
    tables: Iterable[TableRef] | None = None,
    ignore_identity_generation: bool = True,
) -> SchemaSnapshot:
    """One side's objects in `schemas` (without the platform's schema); with `tables`, only those tables
    and the sequences they own."""
    schemas = [s for s in dict.fromkeys(schemas) if s != CONTROL_SCHEMA]
    wanted = None if tables is None else {(t.schema, t.name) for t in tables}
    keep = (lambda s, t: True) if wanted is None else (lambda s, t: (s, t) in wanted)
    values: dict[Key, str] = {}
    parents: dict[Key, Key] = {}

    def put(key: Key, value: str, parent: Key | None = None) -> None:
        values[key] = value
        if parent:
            parents[key] = parent

    conn.execute("SELECT set_config('search_path', '', false)")
    args = {"schemas": schemas}
    present = {r[0] for r in conn.execute("SELECT nspname FROM pg_namespace WHERE nspname = ANY(%s)", (schemas,))}
    for schema in present:
        put(("schema", schema), "present")
    for schema, name, kind in conn.execute(_TABLES_SQL, args).fetchall():
        if keep(schema, name):
            put(("table", _q(schema, name)), "partitioned table" if kind == "p" else "table", ("schema", schema))
    for schema, name, col, type_name, not_null, default, identity, generated in conn.execute(_COLUMNS_SQL, args):
        if not keep(schema, name):
            continue
        table, column = ("table", _q(schema, name)), _q(schema, name, col)
        put(("column", column), "present", table)
        put(("column_type", column), type_name, ("column", column))
        if not_null:
            put(("column_not_null", column), "NOT NULL", ("column", column))
        if default is not None:
            text = f"GENERATED ALWAYS AS ({default}) STORED" if generated == "s" else default
            put(("column_default", column), text, ("column", column))
        if identity:
            text = "identity" if ignore_identity_generation else _IDENTITY.get(identity, identity)
            put(("column_identity", column), text, ("column", column))
    for schema, name, con, kind, definition, validated in conn.execute(_CONSTRAINTS_SQL, args):
        if not keep(schema, name):
            continue
        table = ("table", _q(schema, name))
        definition = definition.removesuffix(" NOT VALID")
        if kind == "p":
            put(("primary_key", table[1]), definition, table)
            continue
        key = ("constraint", _q(schema, name, con))
        put(key, definition, table)
        put(("constraint_validated", key[1]), "valid" if validated else "NOT VALID", key)
    for schema, name, index, definition, valid in conn.execute(_INDEXES_SQL, args):
        if keep(schema, name):
            put(("index", _q(schema, index)), definition + ("" if valid else " (INVALID)"), ("table", _q(schema, name)))
    for schema, name, type_name, start, inc, lo, hi, cache, cycle, owner_schema, owner in conn.execute(
        _SEQUENCES_SQL, args
    ):
        if wanted is not None and (owner_schema, owner) not in wanted:
            continue
        text = f"{type_name} START {start} INCREMENT {inc} MINVALUE {lo} MAXVALUE {hi} CACHE {cache}"
        put(("sequence", _q(schema, name)), text + (" CYCLE" if cycle else ""), ("schema", schema))
    return SchemaSnapshot(values, parents)


def compare_snapshots(source: SchemaSnapshot, target: SchemaSnapshot) -> list[SchemaDifference]:
    """Every object whose value differs, in (kind, object) order; an object whose parent is absent on
    either side is left out (the parent is reported)."""
    differences = []
    for key in sorted(source.values.keys() | target.values.keys()):
        s, t = source.values.get(key), target.values.get(key)
        if s == t:
            continue
        parent = source.parents.get(key) or target.parents.get(key)
        if parent and (parent not in source.values or parent not in target.values):
            continue
        differences.append(SchemaDifference(key[0], key[1], s, t))
    return differences


def compare_schemas(
    source: PgEndpoint,
    target: PgEndpoint,
    schemas: Iterable[str] | None = None,
    tables: Iterable[TableRef] | None = None,
    ignore_identity_generation: bool = True,
) -> list[SchemaDifference]:
    """Schema differences between source and target in `schemas` (default: every user schema on either
    side but the platform's); with `tables`, only those tables' objects and owned sequences."""
    tables = list(tables) if tables is not None else None
    with source.connect(autocommit=True) as src, target.connect(autocommit=True) as dst:
        if schemas is None:
            schemas = sorted(set(user_schemas(src)) | set(user_schemas(dst)))
        schemas = list(schemas)
        differences = compare_snapshots(
            read_schema(src, schemas, tables, ignore_identity_generation),
            read_schema(dst, schemas, tables, ignore_identity_generation),
        )
    log.info("schema compare: %d differences in schemas %s", len(differences), schemas)
    return differences


def format_schema_differences(differences: list[SchemaDifference]) -> str:
    """One line per difference, for task logs and the CLI."""
    if not differences:
        return "schemas identical"

    def show(value: str | None) -> str:
        return "(absent)" if value is None else value

    return "\n".join(f"{d.kind} {d.object}: source {show(d.source)} | target {show(d.target)}" for d in differences)
