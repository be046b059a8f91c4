"""What a drift plan is: each schema difference with what to do about it on the target (`DriftChange`), the
plan that groups them (`DriftPlan`: additive, non-additive, tables to load), and the message the on-call
person reads when non-additive drift halts the migration. `schema_drift` builds plans, `schema_sync`
applies them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from psycopg import sql

from pgmigrate.core.catalog import TableRef
from pgmigrate.schema.schema_compare import SchemaDifference

# Non-additive kinds after which the table's rows on the target should be copied again.
_ROW_KINDS = ("column", "column_type", "column_default", "column_identity", "primary_key")


@dataclass(frozen=True)
class DriftChange:
    """One difference and what to do about it on the target."""

    difference: SchemaDifference
    additive: bool
    statements: tuple[sql.Composable, ...] = ()  # to run on the target, in order (none: see `note`)
    table: TableRef | None = None
    note: str = ""

    def statement_texts(self) -> list[str]:
        return [s.as_string(None) + ";" for s in self.statements]

    def describe(self) -> str:
        d = self.difference
        show = lambda v: "(absent)" if v is None else v  # noqa: E731 - a one-line display helper
        text = f"{d.kind} {d.object}: source {show(d.source)} | target {show(d.target)}"
        return text + (f" ({self.note})" if self.note else "")

    def as_dict(self) -> dict[str, Any]:
        return {
            **self.difference.as_dict(),
            "additive": self.additive,
            "statements": self.statement_texts(),
            "table": self.table.qualified if self.table else None,
            "note": self.note,
        }


@dataclass
class DriftPlan:
    """The drift's changes by how they reach the target: applied by the sync, left to an operator (the
    migration halts), or tables the pipeline must load."""

    additive: list[DriftChange] = field(default_factory=list)
    non_additive: list[DriftChange] = field(default_factory=list)
    new_tables: list[TableRef] = field(default_factory=list)  # schema copy + publication + incremental snapshot
    resync_tables: list[TableRef] = field(default_factory=list)  # existing tables whose rows must be re-read

    @property
    def empty(self) -> bool:
        return not (self.additive or self.non_additive or self.new_tables)

    @property
    def touched_tables(self) -> list[TableRef]:
        tables = [c.table for c in self.additive if c.table] + self.new_tables + self.resync_tables
        return sorted(set(tables))

    @property
    def snapshot_tables(self) -> list[TableRef]:
        return sorted(set(self.new_tables) | set(self.resync_tables))

    def operator_statements(self) -> list[str]:
        """What an operator runs on the target for the non-additive changes, in order."""
        return [s for c in self.non_additive for s in c.statement_texts()]

    def as_dict(self) -> dict[str, Any]:
        return {
            "additive": [c.as_dict() for c in self.additive],
            "non_additive": [c.as_dict() for c in self.non_additive],
            "new_tables": [t.qualified for t in self.new_tables],
            "resync_tables": [t.qualified for t in self.resync_tables],
            "touched_tables": [t.qualified for t in self.touched_tables],
        }


def halt_message(migration_id: str, plan: DriftPlan) -> str:
    """What the on-call person reads when non-additive drift halts the migration: each change, the
    statements to run on the target, and how to resume."""
    lines = [f"non-additive schema change(s) on the source of {migration_id}; the migration is halted:"]
    lines += [f"  - {c.describe()}" for c in plan.non_additive]
    statements = plan.operator_statements()
    if statements:
        lines.append("Run on the target (after checking them):")
        lines += [f"  {s}" for s in statements]
    # Tables whose rows the change may have altered (not dropped ones, not mere indexes or constraints).
    tables = sorted({c.table.qualified for c in plan.non_additive if c.table and c.difference.kind in _ROW_KINDS})
    resync = " ".join(f"--table {t}" for t in tables)
    lines.append(
        f"Then resume: scripts/migration restart --migration-id {migration_id}"
        + (
            f"; then copy the changed tables again: scripts/migration resync --migration-id {migration_id} {resync}"
            if resync
            else ""
        )
        + f"; then scripts/migration schema-sync --migration-id {migration_id} for any additive changes left."
    )
    return "\n".join(lines)
