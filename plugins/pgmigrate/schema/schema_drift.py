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

Pure: differences and the source's snapshot in, a plan (`drift_plan`) out. `classify` hands each difference
to the rule for its kind (`_RULES`: one `_plan_<kind>` function each); the statements come from
`drift_statements`, where every name we compose goes through `sql.Identifier`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from psycopg import sql

from pgmigrate.core.catalog import TableRef
from pgmigrate.schema.drift_plan import DriftChange, DriftPlan
from pgmigrate.schema.drift_statements import (
    add_constraint,
    alter_column,
    alter_table,
    change_column_type,
    column_definition,
    concurrent_index,
    drop_constraint,
    drop_index,
    ident,
    index_table,
    sequence_options,
    split_name,
    table_member,
    table_of,
)
from pgmigrate.schema.schema_compare import Key, SchemaDifference

# While the forward pipeline streams, foreign keys stay NOT VALID on the target by design (post_data: a
# child row may arrive before its parent); the cutover validates them after the switch (validate_foreign_keys,
# which fails the cutover run naming a key that does not hold). Not drift, and after the cutover not DDL on
# the target either: the monitor runs on its own schedule and may look before that task has run.
STREAMING_PHASES = ("post_data_applied", "caught_up", "streaming")
PENDING_FOREIGN_KEY_PHASES = (*STREAMING_PHASES, "cut_over")

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
_FUNCTION_CALL = re.compile(r"[A-Za-z_][\w$.]*\s*\(")


# --- detection --------------------------------------------------------------------------------------------


def expected_differences(differences: Iterable[SchemaDifference], phase: str) -> list[SchemaDifference]:
    """The differences that are no drift in this phase (foreign keys NOT VALID on the target until the cutover's
    validate_foreign_keys has run)."""
    if phase not in PENDING_FOREIGN_KEY_PHASES:
        return []
    return [d for d in differences if d.kind == "constraint_validated" and d.target == "NOT VALID"]


def drift(differences: Iterable[SchemaDifference], phase: str) -> list[SchemaDifference]:
    """Schema differences that are drift, in this phase."""
    differences = list(differences)
    expected = set(expected_differences(differences, phase))
    return [d for d in differences if d not in expected]


def volatile_default(default: str | None) -> bool:
    """A default that calls a function (now(), nextval(), gen_random_uuid()) gives the target's existing rows
    other values than the source's: the table must be re-read. Constants and casts of constants do not."""
    return default is not None and not default.startswith("GENERATED") and bool(_FUNCTION_CALL.search(default))


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


# --- one rule per kind of difference ----------------------------------------------------------------------


@dataclass
class _Planning:
    """What a rule reads besides its difference (the source's snapshot, the renames found), and the plan it
    adds to."""

    source: Mapping[Key, str]
    table_renames: dict[str, str]
    column_renames: dict[str, str]
    plan: DriftPlan

    def add(
        self, d: SchemaDifference, *statements: sql.Composable, table: TableRef | None = None, note: str = ""
    ) -> None:
        self.plan.additive.append(DriftChange(d, True, statements, table, note))

    def halt(
        self, d: SchemaDifference, *statements: sql.Composable, table: TableRef | None = None, note: str = ""
    ) -> None:
        self.plan.non_additive.append(DriftChange(d, False, statements, table, note))


def _plan_schema(d: SchemaDifference, p: _Planning) -> None:
    if d.target is None:
        p.add(d, sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(d.object)))
    else:
        p.halt(d, sql.SQL("DROP SCHEMA {}").format(sql.Identifier(d.object)), note="dropped on the source")


def _plan_table(d: SchemaDifference, p: _Planning) -> None:
    """A new keyed table is loaded by the pipeline; anything else about a table is the operator's."""
    table = table_of(d.object)
    if d.object in p.table_renames:
        new = table_of(p.table_renames[d.object])
        p.halt(
            d,
            sql.SQL("ALTER TABLE {} RENAME TO {}").format(table.ident, sql.Identifier(new.name)),
            table=table,
            note=f"renamed to {new.qualified} on the source",
        )
    elif d.target is None and ("primary_key", d.object) in p.source:
        p.plan.new_tables.append(table)
    elif d.target is None:
        p.halt(
            d,
            table=table,
            note="new table without a primary key: the native channel would have to carry "
            "it; add a primary key on the source, or run pg_migration again for it",
        )
    elif d.source is None:
        p.halt(d, sql.SQL("DROP TABLE {}").format(table.ident), table=table, note="dropped on the source")
    else:
        p.halt(d, table=table, note="table kind changed: recreate it on the target as on the source, then resync")


def _plan_column(d: SchemaDifference, p: _Planning) -> None:
    """A new column is added as on the source (its table re-read when its default differs per row); a new
    identity column, a dropped or renamed one are the operator's."""
    table, column = table_member(d.object)
    if d.object in p.column_renames:
        new = split_name(p.column_renames[d.object])[-1]
        p.halt(
            d,
            alter_table(table, sql.SQL("RENAME COLUMN {} TO {}").format(column, sql.Identifier(new))),
            table=table,
            note=f"renamed to {new} on the source",
        )
    elif d.source is None:
        p.halt(
            d, alter_table(table, sql.SQL("DROP COLUMN {}").format(column)), table=table, note="dropped on the source"
        )
    elif ("column_identity", d.object) in p.source:
        type_name = p.source[("column_type", d.object)]
        p.halt(
            d,
            alter_table(table, "ADD COLUMN ", column, f" {type_name} GENERATED BY DEFAULT AS IDENTITY"),
            table=table,
            note="new identity column: its values come from the source; resync the table after adding it",
        )
    else:
        p.add(d, alter_table(table, "ADD COLUMN IF NOT EXISTS ", column_definition(p.source, d.object)), table=table)
        if volatile_default(p.source.get(("column_default", d.object))):
            p.plan.resync_tables.append(table)


def _plan_column_type(d: SchemaDifference, p: _Planning) -> None:
    table, column = table_member(d.object)
    p.halt(d, change_column_type(table, column, d.source or ""), table=table, note="type changed on the source")


def _plan_column_not_null(d: SchemaDifference, p: _Planning) -> None:
    table, column = table_member(d.object)
    p.add(d, alter_column(table, column, "SET NOT NULL" if d.source else "DROP NOT NULL"), table=table)


def _plan_column_default(d: SchemaDifference, p: _Planning) -> None:
    """A default is set or dropped; a generation expression cannot be altered in place."""
    table, column = table_member(d.object)
    if (d.source or "").startswith("GENERATED") or (d.target or "").startswith("GENERATED"):
        p.halt(
            d,
            table=table,
            note="generation expression changed: drop and re-add the column on the target as on the source",
        )
    elif d.source is None:
        p.add(d, alter_column(table, column, "DROP DEFAULT"), table=table)
    else:
        p.add(d, alter_column(table, column, "SET DEFAULT " + d.source), table=table)


def _plan_column_identity(d: SchemaDifference, p: _Planning) -> None:
    table, column = table_member(d.object)
    action = "ADD GENERATED BY DEFAULT AS IDENTITY" if d.source else "DROP IDENTITY IF EXISTS"
    p.halt(d, alter_column(table, column, action), table=table, note="identity changed on the source")


def _plan_primary_key(d: SchemaDifference, p: _Planning) -> None:
    """The sink upserts by the primary key: any change is the operator's."""
    table = table_of(d.object)
    statements = [] if d.source is None else [alter_table(table, "ADD " + d.source)]
    p.halt(
        d,
        *statements,
        table=table,
        note="primary key changed: the sink upserts by it; drop the target's "
        "primary key first if it has one, then resync the table",
    )


def _plan_index(d: SchemaDifference, p: _Planning) -> None:
    """New indexes are built concurrently, an INVALID one rebuilt; a dropped or changed one is the operator's."""
    table = index_table(d.source or d.target or "")
    drop = drop_index(ident(d.object))
    if d.target is None:
        p.add(d, concurrent_index(d.source or ""), table=table)
    elif d.source is None:
        p.halt(d, drop, table=table, note="dropped on the source")
    elif d.target == d.source + " (INVALID)":
        p.add(d, drop, concurrent_index(d.source), table=table, note="an interrupted build left it INVALID")
    else:
        p.halt(d, drop, concurrent_index(d.source), table=table, note="definition changed on the source")


def _plan_constraint(d: SchemaDifference, p: _Planning) -> None:
    """New constraints are added (foreign keys NOT VALID, as post-data adds them); a dropped or changed one
    is the operator's."""
    table, constraint = table_member(d.object)
    if d.target is None:
        definition = d.source or ""
        not_valid = " NOT VALID" if definition.startswith("FOREIGN KEY") else ""
        p.add(
            d,
            add_constraint(table, constraint, definition + not_valid),
            table=table,
            note="validated at cutover" if not_valid else "",
        )
    elif d.source is None:
        p.halt(d, drop_constraint(table, constraint), table=table, note="dropped on the source")
    else:
        p.halt(
            d,
            drop_constraint(table, constraint),
            add_constraint(table, constraint, d.source),
            table=table,
            note="definition changed on the source",
        )


def _plan_constraint_validated(d: SchemaDifference, p: _Planning) -> None:
    table, constraint = table_member(d.object)
    if d.source == "valid":
        p.add(d, alter_table(table, sql.SQL("VALIDATE CONSTRAINT {}").format(constraint)), table=table)
    else:
        p.halt(d, table=table, note="NOT VALID on the source but valid on the target: nothing to run")


def _plan_sequence(d: SchemaDifference, p: _Planning) -> None:
    sequence = ident(d.object)
    if d.target is None:
        p.add(d, sql.SQL("CREATE SEQUENCE IF NOT EXISTS {} {}").format(sequence, sequence_options(d.source or "")))
    elif d.source is None:
        p.halt(d, sql.SQL("DROP SEQUENCE IF EXISTS {}").format(sequence), note="dropped on the source")
    else:
        p.add(d, sql.SQL("ALTER SEQUENCE {} {}").format(sequence, sequence_options(d.source)))


def _plan_unknown(d: SchemaDifference, p: _Planning) -> None:
    p.halt(d, note=f"no rule for {d.kind!r}: compare by hand")


_RULES: dict[str, Callable[[SchemaDifference, _Planning], None]] = {
    "schema": _plan_schema,
    "table": _plan_table,
    "column": _plan_column,
    "column_type": _plan_column_type,
    "column_not_null": _plan_column_not_null,
    "column_default": _plan_column_default,
    "column_identity": _plan_column_identity,
    "primary_key": _plan_primary_key,
    "index": _plan_index,
    "constraint": _plan_constraint,
    "constraint_validated": _plan_constraint_validated,
    "sequence": _plan_sequence,
}


# --- classification ---------------------------------------------------------------------------------------


def classify(
    differences: Iterable[SchemaDifference], source: Mapping[Key, str], target: Mapping[Key, str] | None = None
) -> DriftPlan:
    """The plan for `differences` (already without the expected ones); `source`/`target` are both sides'
    snapshot values (`schema_compare.read_schema(...).values`), for what a difference does not carry."""
    differences = sorted(differences)
    target = target or {}
    same_type = lambda old, new: target.get(("column_type", old)) == source.get(("column_type", new))  # noqa: E731
    planning = _Planning(
        source, _renames(differences, "table"), _renames(differences, "column", same_type), DriftPlan()
    )
    renamed_to = set(planning.column_renames.values()) | set(planning.table_renames.values())
    for d in differences:
        if d.object in renamed_to:
            continue  # planned with the object it was renamed from
        _RULES.get(d.kind, _plan_unknown)(d, planning)
    plan = planning.plan
    rank = {kind: n for n, kind in enumerate(_ORDER)}
    # Foreign keys last (they may reference a new unique constraint); otherwise containers before contents.
    plan.additive.sort(
        key=lambda c: ("FOREIGN KEY" in (c.difference.source or ""), rank.get(c.difference.kind, len(rank)))
    )
    plan.resync_tables = sorted(set(plan.resync_tables) - set(plan.new_tables))
    return plan
