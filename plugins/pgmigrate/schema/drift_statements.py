"""The DDL statements a drift plan runs on the target, and the name handling they need: `schema_compare`'s
display names split back into their parts, every name we compose quoted by `sql.Identifier`, the
`ALTER TABLE` forms, a column as defined on the source, an index built concurrently, a sequence's options.

Types, defaults and index/constraint definitions are the server's own rendering (`format_type`,
`pg_get_expr`, `pg_get_indexdef`, `pg_get_constraintdef` under an empty search_path): they are reused as SQL
text, never as a format string (they may hold braces).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from psycopg import sql

from pgmigrate.core.catalog import TableRef
from pgmigrate.schema.schema_compare import Key

_NAME_PART = re.compile(r'"((?:[^"]|"")*)"|([^."]+)')
_INDEX_ON = re.compile(r" ON (?:ONLY )?(.+?) USING ")
_SEQUENCE = re.compile(
    r"^(?P<type>.+?) START (?P<start>-?\d+) INCREMENT (?P<inc>-?\d+) MINVALUE (?P<min>-?\d+) "
    r"MAXVALUE (?P<max>-?\d+) CACHE (?P<cache>\d+)(?P<cycle> CYCLE)?$"
)


# --- names ------------------------------------------------------------------------------------------------


def split_name(name: str) -> list[str]:
    """`schema_compare`'s display name (`public.orders."Note"`) back into its parts."""
    return [m.group(1).replace('""', '"') if m.group(1) is not None else m.group(2) for m in _NAME_PART.finditer(name)]


def ident(name: str) -> sql.Identifier:
    """A display name (schema, schema.sequence, schema.index) as a qualified identifier."""
    return sql.Identifier(*split_name(name))


def table_of(obj: str) -> TableRef:
    """The table of `schema.table` or of an object inside it (`schema.table.column`)."""
    parts = split_name(obj)
    return TableRef(parts[0], parts[1])


def table_member(obj: str) -> tuple[TableRef, sql.Identifier]:
    """`schema.table.name` (a column or a constraint): its table, and its own name as an identifier."""
    schema, table, name = split_name(obj)
    return TableRef(schema, table), sql.Identifier(name)


def index_table(definition: str) -> TableRef | None:
    """The table an index definition (`CREATE INDEX … ON [ONLY] table USING …`) is on."""
    match = _INDEX_ON.search(definition)
    return table_of(match.group(1)) if match else None


# --- ALTER TABLE ------------------------------------------------------------------------------------------


def alter_table(table: TableRef, *action: sql.Composable | str) -> sql.Composed:
    """`ALTER TABLE table <action…>`; plain strings are SQL text taken as is (never a format string, so the
    server's rendering of a default or a constraint may hold braces)."""
    parts = [p if isinstance(p, sql.Composable) else sql.SQL(p) for p in action]
    return sql.Composed([sql.SQL("ALTER TABLE "), table.ident, sql.SQL(" "), *parts])


def alter_column(table: TableRef, column: sql.Identifier, action: str) -> sql.Composed:
    """`ALTER TABLE table ALTER COLUMN column <action>` (action: SQL text, e.g. `SET DEFAULT <expr>`)."""
    return alter_table(table, "ALTER COLUMN ", column, " " + action)


def change_column_type(table: TableRef, column: sql.Identifier, type_name: str) -> sql.Composed:
    """The column to the source's type, its values cast."""
    return alter_table(
        table,
        sql.SQL("ALTER COLUMN {} TYPE {} USING {}::{}").format(column, sql.SQL(type_name), column, sql.SQL(type_name)),
    )


def add_constraint(table: TableRef, constraint: sql.Identifier, definition: str) -> sql.Composed:
    return alter_table(table, "ADD CONSTRAINT ", constraint, " " + definition)


def drop_constraint(table: TableRef, constraint: sql.Identifier) -> sql.Composed:
    return alter_table(table, sql.SQL("DROP CONSTRAINT IF EXISTS {}").format(constraint))


def column_definition(source: Mapping[Key, str], obj: str) -> sql.Composed:
    """`name type [GENERATED … STORED | DEFAULT …] [NOT NULL]` as on the source."""
    _, column = table_member(obj)
    parts: list[sql.Composable] = [column, sql.SQL(source[("column_type", obj)])]
    default = source.get(("column_default", obj))
    if default is not None:
        parts.append(sql.SQL(default) if default.startswith("GENERATED ALWAYS AS") else sql.SQL("DEFAULT " + default))
    if ("column_not_null", obj) in source:
        parts.append(sql.SQL("NOT NULL"))
    return sql.SQL(" ").join(parts)


# --- indexes and sequences --------------------------------------------------------------------------------


def concurrent_index(definition: str) -> sql.SQL:
    """The source's `CREATE [UNIQUE] INDEX name ON …` as CONCURRENTLY IF NOT EXISTS (no write lock on the
    target); an index on a partitioned table (`ON ONLY`) cannot be built concurrently: plain, cascading."""
    definition = definition.removesuffix(" (INVALID)")
    if " ON ONLY " in definition:
        return sql.SQL(
            re.sub(
                r"^CREATE (UNIQUE )?INDEX ",
                r"CREATE \1INDEX IF NOT EXISTS ",
                definition.replace(" ON ONLY ", " ON ", 1),
            )
        )
    return sql.SQL(re.sub(r"^CREATE (UNIQUE )?INDEX ", r"CREATE \1INDEX CONCURRENTLY IF NOT EXISTS ", definition))


def drop_index(index: sql.Identifier) -> sql.Composed:
    return sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}").format(index)


def sequence_options(text: str) -> sql.Composed:
    """`schema_compare`'s sequence description as the options of CREATE/ALTER SEQUENCE."""
    match = _SEQUENCE.match(text)
    if not match:
        raise ValueError(f"unexpected sequence description {text!r}")
    g = match.groupdict()
    return sql.SQL("AS {} INCREMENT BY {} MINVALUE {} MAXVALUE {} START WITH {} CACHE {} {}").format(
        sql.SQL(g["type"]),
        sql.Literal(int(g["inc"])),
        sql.Literal(int(g["min"])),
        sql.Literal(int(g["max"])),
        sql.Literal(int(g["start"])),
        sql.Literal(int(g["cache"])),
        sql.SQL("CYCLE" if g["cycle"] else "NO CYCLE"),
    )
