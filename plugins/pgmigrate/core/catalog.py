"""What is in the source database: the tables a migration moves, with the facts the pipeline needs
(primary key, replica identity, column types, partitions, size), read from the system catalogs.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

# Objects of the platform itself live here on both servers; never migrated as user data.
CONTROL_SCHEMA = "pgmigrate"
# OIDs below this are built into PostgreSQL; user-defined types (enums, composites) are above.
FIRST_NORMAL_OID = 16384


@dataclass(frozen=True, order=True)
class TableRef:
    schema: str
    name: str

    @property
    def ident(self) -> sql.Identifier:
        return sql.Identifier(self.schema, self.name)

    @property
    def qualified(self) -> str:
        """Display form, quoted only where needed; for logs and messages, never for SQL."""
        return ".".join(p if p.isidentifier() and p == p.lower() else f'"{p}"' for p in (self.schema, self.name))

    def __str__(self) -> str:
        return self.qualified


@dataclass(frozen=True)
class Column:
    name: str
    type_name: str  # format_type(), e.g. numeric(38,10), "Status"[]
    type_oid: int
    type_kind: str  # pg_type.typtype of the column's type: b base, e enum, c composite, d domain, r range
    element_kind: str | None  # for arrays: typtype of the element type
    element_oid: int | None
    identity: str  # '' | 'a' (ALWAYS) | 'd' (BY DEFAULT)
    generated: str  # '' | 's' (stored generated column)
    not_null: bool
    toastable: bool  # attstorage != 'p': values can move out of line (TOAST)
    # The type under any domains (a domain's values are its base type's values): what the type rules judge.
    # For a column not of a domain these repeat the column's own type; 0/'' when not read from a catalog.
    base_oid: int = 0
    base_kind: str = ""  # typtype of the base type
    base_name: str = ""  # typname of the base type (extension types are recognised by it)
    base_element_oid: int | None = None  # the base type is an array of this
    # PostgreSQL can compare two values of it for equality (a default btree or hash operator class, as the type
    # cache looks it up): a keyless table's apply worker matches rows by comparing every column (json, xml, box…
    # have none).
    has_equality: bool = True

    @property
    def resolved_oid(self) -> int:
        return self.base_oid or self.type_oid

    @property
    def resolved_element_oid(self) -> int | None:
        return self.base_element_oid if self.base_oid else (self.element_oid if self.element_kind else None)

    @property
    def user_defined_type(self) -> bool:
        oid = self.element_oid if self.element_oid else self.type_oid
        return oid >= FIRST_NORMAL_OID


@dataclass
class TableInfo:
    ref: TableRef
    kind: str  # 'r' ordinary, 'p' partitioned
    primary_key: list[str]
    replica_identity: str  # d default, f full, i index, n nothing
    has_replica_identity_index: bool
    columns: list[Column]
    partitions: list[TableRef] = field(default_factory=list)  # leaf partitions of a partitioned table
    estimated_rows: int = 0
    pages: int = 0

    @property
    def has_toastable_columns(self) -> bool:
        return any(c.toastable for c in self.columns)

    @property
    def replicable(self) -> bool:
        """Logical decoding can identify its rows for UPDATE/DELETE."""
        return (
            bool(self.primary_key)
            or self.replica_identity == "f"
            or (self.replica_identity == "i" and self.has_replica_identity_index)
        )


_TABLES_SQL = """
SELECT c.oid, n.nspname, c.relname, c.relkind, c.relreplident,
       coalesce(greatest(c.reltuples, 0), 0)::bigint, c.relpages
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = ANY(%(schemas)s) AND c.relkind IN ('r', 'p') AND NOT c.relispartition
ORDER BY n.nspname, c.relname
"""

_PK_SQL = """
SELECT a.attname
FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
WHERE i.indrelid = %(oid)s AND i.indisprimary
ORDER BY array_position(i.indkey, a.attnum)
"""

# A real array is the `typarray` of its element type: int2vector and oidvector have an element type and the
# array category too, but their own text form ('1 2 3'), so they count as base types here.
_COLUMNS_SQL = """
SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.atttypid, t.typtype,
       et.typtype, nullif(t.typelem, 0), a.attidentity, a.attgenerated, a.attnotnull, a.attstorage <> 'p',
       b.oid, b.typtype, b.typname, bet.oid,
       CASE WHEN coalesce(bet.typtype, b.typtype) IN ('e', 'r', 'm', 'c', 'd') THEN true
            WHEN coalesce(bet.typcategory, b.typcategory) = 'A' AND coalesce(bet.typelem, b.typelem) <> 0
                 THEN true  -- int2vector: array_ops
            ELSE EXISTS (SELECT 1 FROM pg_opclass oc JOIN pg_am am ON am.oid = oc.opcmethod
                         WHERE oc.opcdefault AND am.amname IN ('btree', 'hash')
                           AND (oc.opcintype = coalesce(bet.oid, b.oid)
                                OR EXISTS (SELECT 1 FROM pg_cast k WHERE k.castsource = coalesce(bet.oid, b.oid)
                                           AND k.casttarget = oc.opcintype AND k.castmethod = 'b'))) END
FROM pg_attribute a
JOIN pg_type t ON t.oid = a.atttypid
LEFT JOIN pg_type et ON et.oid = t.typelem AND et.typarray = t.oid
CROSS JOIN LATERAL (
    WITH RECURSIVE under(oid, depth) AS (
        SELECT t.oid, 0
        UNION ALL
        SELECT d.typbasetype, under.depth + 1 FROM under JOIN pg_type d ON d.oid = under.oid
        WHERE d.typtype = 'd' AND under.depth < 20
    )
    SELECT oid FROM under ORDER BY depth DESC LIMIT 1
) base
JOIN pg_type b ON b.oid = base.oid
LEFT JOIN pg_type bet ON bet.oid = b.typelem AND bet.typarray = b.oid
WHERE a.attrelid = %(oid)s AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum
"""

_LEAVES_SQL = """
SELECT n.nspname, c.relname, coalesce(greatest(c.reltuples, 0), 0)::bigint, c.relpages
FROM pg_partition_tree(%(oid)s::regclass) p
JOIN pg_class c ON c.oid = p.relid JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE p.isleaf
ORDER BY n.nspname, c.relname
"""


def list_tables(conn: psycopg.Connection, schemas: Iterable[str]) -> list[TableInfo]:
    """Every ordinary and partitioned (root) table in `schemas`; partitions are listed under their root."""
    tables = []
    with conn.cursor() as cur:
        cur.execute(_TABLES_SQL, {"schemas": [s for s in schemas if s != CONTROL_SCHEMA]})
        rows = cur.fetchall()
        for oid, schema, name, kind, replident, reltuples, relpages in rows:
            cur.execute(_PK_SQL, {"oid": oid})
            pk = [r[0] for r in cur.fetchall()]
            cur.execute(
                "SELECT EXISTS (SELECT 1 FROM pg_index WHERE indrelid = %(oid)s AND indisreplident)", {"oid": oid}
            )
            has_ri_index = cur.fetchone()[0]
            cur.execute(_COLUMNS_SQL, {"oid": oid})
            columns = [Column(*r) for r in cur.fetchall()]
            info = TableInfo(
                ref=TableRef(schema, name),
                kind=kind,
                primary_key=pk,
                replica_identity=replident,
                has_replica_identity_index=has_ri_index,
                columns=columns,
                estimated_rows=reltuples,
                pages=relpages,
            )
            if kind == "p":
                cur.execute(_LEAVES_SQL, {"oid": oid})
                leaves = cur.fetchall()
                info.partitions = [TableRef(s, n) for s, n, _, _ in leaves]
                info.estimated_rows = sum(r for _, _, r, _ in leaves)
                info.pages = sum(p for _, _, _, p in leaves)
            tables.append(info)
    return tables


# Joins pg_class `c` and pg_namespace `n` to a list of relations, given as two arrays (schemas, names) so that
# names reach the server as parameters, never as SQL text.
_RELATIONS_JOIN = "JOIN unnest(%s::text[], %s::text[]) w(s, r) ON w.s = n.nspname AND w.r = c.relname"


def read_relations(conn: psycopg.Connection, query: str, refs: Iterable[TableRef], *args: Any) -> list[tuple[Any, ...]]:
    """The rows of `query` for the relations `refs`. Its `{relations}` placeholder becomes the join that keeps
    only those relations (`c` and `n` must be pg_class and pg_namespace); `args` are the parameters that
    follow the join in the query. One query for any number of relations, none formatted into the text."""
    refs = list(refs)
    statement = sql.SQL(query).format(relations=sql.SQL(_RELATIONS_JOIN))
    return conn.execute(statement, ([r.schema for r in refs], [r.name for r in refs], *args)).fetchall()


class UnknownTables(ValueError):
    pass


def select_tables(
    available: list[TableInfo], schemas: Iterable[str], wanted: Iterable[tuple[str, str]]
) -> list[TableInfo]:
    """The tables a migration moves: `wanted` (schema, table) pairs, or every table when empty."""
    wanted = list(wanted)
    if not wanted:
        return list(available)
    by_ref = {t.ref: t for t in available}
    missing = [TableRef(s, n) for s, n in wanted if TableRef(s, n) not in by_ref]
    if missing:
        names = ", ".join(m.qualified for m in missing)
        raise UnknownTables(
            f"tables not found on the source (or not ordinary/partitioned tables) in schemas "
            f"{list(schemas)}: {names}. Check the `tables` param (schema.table, case-sensitive)."
        )
    return [by_ref[TableRef(s, n)] for s, n in dict.fromkeys(wanted)]
