"""The base of every store of the control database's tables (`ControlStore`): one autocommit connection per
call, and the few ways a call reads or writes, so each store says only its SQL.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from pgmigrate.core.endpoints import PgEndpoint

Query = str | sql.Composable
Args = tuple | dict[str, Any]


class ControlStore:
    """Tables of the control database (`control_schema.sql`); each call is its own transaction."""

    def __init__(self, endpoint: PgEndpoint) -> None:
        self.endpoint = endpoint

    def _connect(self) -> psycopg.Connection:
        return self.endpoint.connect(autocommit=True)

    def _execute(self, query: Query, args: Args) -> None:
        with self._connect() as conn:
            conn.execute(query, args)

    def _row(self, query: Query, args: Args) -> dict[str, Any] | None:
        """The first row of `query`, by column name."""
        with self._connect() as conn, conn.cursor(row_factory=dict_row) as cur:
            cur.execute(query, args)
            return cur.fetchone()

    def _rows(self, query: Query, args: Args) -> list[dict[str, Any]]:
        """Every row of `query`, by column name."""
        with self._connect() as conn, conn.cursor(row_factory=dict_row) as cur:
            cur.execute(query, args)
            return cur.fetchall()
