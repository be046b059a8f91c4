"""The set of tables one migration moves, resolved the same way by every task from its params."""

from __future__ import annotations

from pgmigrate.core.catalog import TableInfo, list_tables, select_tables
from pgmigrate.core.endpoints import PgEndpoint
from pgmigrate.core.params import MigrationParams


def resolve_tables(source: PgEndpoint, params: MigrationParams) -> list[TableInfo]:
    with source.connect(autocommit=True) as conn:
        available = list_tables(conn, params.schemas)
    return select_tables(available, params.schemas, params.tables)
