"""Schema drift: DDL run on the source during a migration, found by comparing schemas, and the plan that
brings the target along (`pg_migration_schema_sync`, `schema_sync.py` applies it).

Logical decoding carries rows, never DDL: a column added on the source makes the sink fail on the first
row that uses it, a new table is neither published nor captured. The monitor compares both schemas every
run (P1 `schema_mismatch`); this module classifies each difference:

- ADDITIVE (applied on the target, streaming continues): a new schema, sequence, table (created by the
  schema copy, published, loaded by an incremental snapshot), column (same type, default, nullability),
  index (CONCURRENTLY IF NOT EXISTS), constraint (foreign keys NOT VALID, as post-data adds them),
  a changed default or NOT NULL, a changed sequence.
- NON-ADDITIVE (the migration halts; an operator decides): anything dropped or renamed, a column type,
  identity or generation expression changed, a primary key or table kind changed, a new identity column,
  a new table without a primary key (it would need the native channel). Each carries the statement to run
  on the target, when one exists.

Pure: differences and the source's snapshot in, a plan (`drift_plan`) out. Types, defaults and index/constraint
definitions are the server's own rendering (`format_type`, `pg_get_expr`, `pg_get_indexdef`,
`pg_get_constraintdef` under an empty search_path): they are reused as SQL text; every name we compose
goes through `sql.Identifier`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from psycopg import sql

from pgmigrate.core.catalog import TableRef
from pgmigrate.schema.drift_plan import DriftChange, DriftPlan
from pgmigrate.schema.schema_compare import SchemaDifference

Key = tuple[str, str]

# While the forward pipeline streams, foreign keys stay NOT VALID on the target by design (post_data: a
# child row may arrive before its parent); the cutover validates them. Not drift.
STREAMING_PHASES = ("post_data_applied", "caught_up", "streaming")

# Order in which additive statements run: containers before contents, FKs last.
_ORDER = (
    "schema",
    "sequence",
    "column",
    "column_default",
    "column_not_null",
    "constraint",
    "index",
    "constraint_validated",
)
_INDEX_ON = re.compile(r" ON (?:ONLY )?(.+?) USING ")
_NAME_PART = re.compile(r'"((?:[^"]|"")*)"|([^."]+)')
_FUNCTION_CALL = re.compile(r"[A-Za-z_][\w$.]*\s*\(")
_SEQUENCE = re.compile(
    r"^(?P<type>.+?) START (?P<start>-?\d+) INCREMENT (?P<inc>-?\d+) MINVALUE (?P<min>-?\d+) "
    r"MAXVALUE (?P<max>-?\d+) CACHE (?P<cache>\d+)(?P<cycle> CYCLE)?$"
)


def split_name(name: str) -> list[str]:
    """`schema_compare`'s display name (`public.orders."Note"`) back into its parts."""
    return [m.group(1).replace('""', '"') if m.group(1) is not None else m.group(2) for m in _NAME_PART.finditer(name)]


def expected_differences(differences: Iterable[SchemaDifference], phase: str) -> list[SchemaDifference]:
    """The differences that are no drift in this phase (foreign keys NOT VALID on the target while streaming)."""
    if phase not in STREAMING_PHASES:
        return []
    return [d for d in differences if d.kind == "constraint_validated" and d.target == "NOT VALID"]


def drift(differences: Iterable[SchemaDifference], phase: str) -> list[SchemaDifference]:
    """Schema differences that are drift, in this phase."""
    differences = list(differences)
    expected = set(expected_differences(differences, phase))
    return [d for d in differences if d not in expected]


# --- statements -------------------------------------------------------------------------------------------


def _ident(name: str) -> sql.Identifier:
    return sql.Identifier(*split_name(name))


def _column_parts(obj: str) -> tuple[TableRef, sql.Identifier, sql.Identifier]:
    schema, table, column = split_name(obj)
    return TableRef(schema, table), sql.Identifier(schema, table), sql.Identifier(column)


def _alter(table: sql.Identifier, *action: sql.Composable | str) -> sql.Composed:
    """`ALTER TABLE table <action…>`; plain strings are SQL text taken as is (never a format string, so the
    server's rendering of a default or a constraint may hold braces)."""
    parts = [p if isinstance(p, sql.Composable) else sql.SQL(p) for p in action]
    return sql.Composed([sql.SQL("ALTER TABLE "), table, sql.SQL(" "), *parts])


def column_definition(source: Mapping[Key, str], obj: str) -> sql.Composed:
    """`name type [GENERATED … STORED | DEFAULT …] [NOT NULL]` as on the source."""
    _, _, column = _column_parts(obj)
    parts: list[sql.Composable] = [column, sql.SQL(source[("column_type", obj)])]
    default = source.get(("column_default", obj))
    if default is not None:
        parts.append(sql.SQL(default) if default.startswith("GENERATED ALWAYS AS") else sql.SQL("DEFAULT " + default))
    if ("column_not_null", obj) in source:
        parts.append(sql.SQL("NOT NULL"))
    return sql.SQL(" ").join(parts)


def volatile_default(default: str | None) -> bool:
    """A default that calls a function (now(), nextval(), gen_random_uuid()) gives the target's existing rows
    other values than the source's: the table must be re-read. Constants and casts of constants do not."""
    return default is not None and not default.startswith("GENERATED") and bool(_FUNCTION_CALL.search(default))


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


def sequence_options(text: str) -> sql.Composed:
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


# --- classification ---------------------------------------------------------------------------------------


def _table_of(obj: str) -> TableRef:
    parts = split_name(obj)
    return TableRef(parts[0], parts[1])


def _index_table(definition: str) -> TableRef | None:
    match = _INDEX_ON.search(definition)
    return _table_of(match.group(1)) if match else None


def _renames(differences: list[SchemaDifference], kind: str, same=lambda old, new: True) -> dict[str, str]:
    """old -> new for one object dropped and one added in the same parent, when `same(old, new)`."""

    def parent(obj: str) -> tuple[str, ...]:
        return tuple(split_name(obj)[:-1])

    gone = [d.object for d in differences if d.kind == kind and d.source is None and d.target is not None]
    new = [d.object for d in differences if d.kind == kind and d.target is None and d.source is not None]
    renames = {}
    for old in gone:
        candidates = [n for n in new if parent(n) == parent(old) and n not in renames.values() and same(old, n)]
        if len(candidates) == 1:
            renames[old] = candidates[0]
    return renames


def classify(
    differences: Iterable[SchemaDifference], source: Mapping[Key, str], target: Mapping[Key, str] | None = None
) -> DriftPlan:
    """The plan for `differences` (already without the expected ones); `source`/`target` are both sides'
    snapshot values (`schema_compare.read_schema(...).values`), for what a difference does not carry."""
    differences = sorted(differences)
    target = target or {}
    plan = DriftPlan()
    same_type = lambda old, new: target.get(("column_type", old)) == source.get(("column_type", new))  # noqa: E731
    column_renames, table_renames = _renames(differences, "column", same_type), _renames(differences, "table")
    renamed_to = set(column_renames.values()) | set(table_renames.values())

    def add(d: SchemaDifference, *statements: sql.Composable, table: TableRef | None = None, note: str = "") -> None:
        plan.additive.append(DriftChange(d, True, statements, table, note))

    def halt(d: SchemaDifference, *statements: sql.Composable, table: TableRef | None = None, note: str = "") -> None:
        plan.non_additive.append(DriftChange(d, False, statements, table, note))

    for d in differences:
        obj, kind = d.object, d.kind
        if d.object in renamed_to:
            continue  # planned with the object it was renamed from
        if kind == "schema":
            if d.target is None:
                add(d, sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(obj)))
            else:
                halt(d, sql.SQL("DROP SCHEMA {}").format(sql.Identifier(obj)), note="dropped on the source")
        elif kind == "table":
            table = _table_of(obj)
            if obj in table_renames:
                new = _table_of(table_renames[obj])
                halt(
                    d,
                    sql.SQL("ALTER TABLE {} RENAME TO {}").format(table.ident, sql.Identifier(new.name)),
                    table=table,
                    note=f"renamed to {new.qualified} on the source",
                )
            elif d.target is None and ("primary_key", obj) in source:
                plan.new_tables.append(table)
            elif d.target is None:
                halt(
                    d,
                    table=table,
                    note="new table without a primary key: the native channel would have to carry "
                    "it; add a primary key on the source, or run pg_migration again for it",
                )
            elif d.source is None:
                halt(d, sql.SQL("DROP TABLE {}").format(table.ident), table=table, note="dropped on the source")
            else:
                halt(d, table=table, note="table kind changed: recreate it on the target as on the source, then resync")
        elif kind == "column":
            table, table_ident, column = _column_parts(obj)
            if obj in column_renames:
                new = split_name(column_renames[obj])[-1]
                halt(
                    d,
                    _alter(table_ident, sql.SQL("RENAME COLUMN {} TO {}").format(column, sql.Identifier(new))),
                    table=table,
                    note=f"renamed to {new} on the source",
                )
            elif d.source is None:
                halt(
                    d,
                    _alter(table_ident, sql.SQL("DROP COLUMN {}").format(column)),
                    table=table,
                    note="dropped on the source",
                )
            elif ("column_identity", obj) in source:
                type_name = source[("column_type", obj)]
                halt(
                    d,
                    _alter(table_ident, "ADD COLUMN ", column, f" {type_name} GENERATED BY DEFAULT AS IDENTITY"),
                    table=table,
                    note="new identity column: its values come from the source; resync the table after adding it",
                )
            else:
                add(d, _alter(table_ident, "ADD COLUMN IF NOT EXISTS ", column_definition(source, obj)), table=table)
                if volatile_default(source.get(("column_default", obj))):
                    plan.resync_tables.append(table)
        elif kind == "column_type":
            table, table_ident, column = _column_parts(obj)
            halt(
                d,
                _alter(
                    table_ident,
                    sql.SQL("ALTER COLUMN {} TYPE {} USING {}::{}").format(
                        column, sql.SQL(d.source or ""), column, sql.SQL(d.source or "")
                    ),
                ),
                table=table,
                note="type changed on the source",
            )
        elif kind == "column_not_null":
            table, table_ident, column = _column_parts(obj)
            action = "SET NOT NULL" if d.source else "DROP NOT NULL"
            add(d, _alter(table_ident, "ALTER COLUMN ", column, " " + action), table=table)
        elif kind == "column_default":
            table, table_ident, column = _column_parts(obj)
            if (d.source or "").startswith("GENERATED") or (d.target or "").startswith("GENERATED"):
                halt(
                    d,
                    table=table,
                    note="generation expression changed: drop and re-add the column on the target as on the source",
                )
            elif d.source is None:
                add(d, _alter(table_ident, "ALTER COLUMN ", column, " DROP DEFAULT"), table=table)
            else:
                add(d, _alter(table_ident, "ALTER COLUMN ", column, " SET DEFAULT " + d.source), table=table)
        elif kind == "column_identity":
            table, table_ident, column = _column_parts(obj)
            action = "ADD GENERATED BY DEFAULT AS IDENTITY" if d.source else "DROP IDENTITY IF EXISTS"
            halt(
                d,
                _alter(table_ident, "ALTER COLUMN ", column, " " + action),
                table=table,
                note="identity changed on the source",
            )
        elif kind == "primary_key":
            table = _table_of(obj)
            statements = [] if d.source is None else [_alter(table.ident, "ADD " + d.source)]
            halt(
                d,
                *statements,
                table=table,
                note="primary key changed: the sink upserts by it; drop the target's "
                "primary key first if it has one, then resync the table",
            )
        elif kind == "index":
            table = _index_table(d.source or d.target or "")
            index = _ident(obj)
            drop = sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}").format(index)
            if d.target is None:
                add(d, concurrent_index(d.source or ""), table=table)
            elif d.source is None:
                halt(d, drop, table=table, note="dropped on the source")
            elif d.target == d.source + " (INVALID)":
                add(d, drop, concurrent_index(d.source), table=table, note="an interrupted build left it INVALID")
            else:
                halt(d, drop, concurrent_index(d.source), table=table, note="definition changed on the source")
        elif kind in ("constraint", "constraint_validated"):
            schema, table_name, name = split_name(obj)
            table = TableRef(schema, table_name)
            constraint = sql.Identifier(name)
            if kind == "constraint_validated":
                if d.source == "valid":
                    add(d, _alter(table.ident, sql.SQL("VALIDATE CONSTRAINT {}").format(constraint)), table=table)
                else:
                    halt(d, table=table, note="NOT VALID on the source but valid on the target: nothing to run")
            elif d.target is None:
                definition = d.source or ""
                not_valid = " NOT VALID" if definition.startswith("FOREIGN KEY") else ""
                add(
                    d,
                    _alter(table.ident, "ADD CONSTRAINT ", constraint, " " + definition + not_valid),
                    table=table,
                    note="validated at cutover" if not_valid else "",
                )
            else:
                drop = _alter(table.ident, sql.SQL("DROP CONSTRAINT IF EXISTS {}").format(constraint))
                if d.source is None:
                    halt(d, drop, table=table, note="dropped on the source")
                else:
                    halt(
                        d,
                        drop,
                        _alter(table.ident, "ADD CONSTRAINT ", constraint, " " + d.source),
                        table=table,
                        note="definition changed on the source",
                    )
        elif kind == "sequence":
            sequence = _ident(obj)
            if d.target is None:
                options = sequence_options(d.source or "")
                add(d, sql.SQL("CREATE SEQUENCE IF NOT EXISTS {} {}").format(sequence, options))
            elif d.source is None:
                halt(d, sql.SQL("DROP SEQUENCE IF EXISTS {}").format(sequence), note="dropped on the source")
            else:
                add(d, sql.SQL("ALTER SEQUENCE {} {}").format(sequence, sequence_options(d.source)))
        else:
            halt(d, note=f"no rule for {kind!r}: compare by hand")
    rank = {kind: n for n, kind in enumerate(_ORDER)}
    # Foreign keys last (they may reference a new unique constraint); otherwise containers before contents.
    plan.additive.sort(
        key=lambda c: ("FOREIGN KEY" in (c.difference.source or ""), rank.get(c.difference.kind, len(rank)))
    )
    plan.resync_tables = sorted(set(plan.resync_tables) - set(plan.new_tables))
    return plan
