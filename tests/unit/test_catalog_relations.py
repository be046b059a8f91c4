"""Unit test of `catalog.read_relations`, the one join of a query to a list of relations: the names travel as
parameters, never in the SQL text. A recording fake stands in for the connection (no database)."""

from __future__ import annotations

from typing import Any

import pytest
from psycopg import sql

from pgmigrate.core.catalog import TableRef, read_relations

pytestmark = pytest.mark.unit


class RecordingConnection:
    def __init__(self) -> None:
        self.calls: list[tuple[sql.Composable, tuple[Any, ...]]] = []

    def execute(self, query: sql.Composable, params: tuple[Any, ...]) -> RecordingConnection:
        self.calls.append((query, params))
        return self

    def fetchall(self) -> list[tuple[Any, ...]]:
        return [("Sales", "Odd Name")]


def test_the_relations_join_takes_the_names_as_parameters():
    conn = RecordingConnection()
    refs = [TableRef("public", "orders"), TableRef("Sales", "Odd Name'; DROP TABLE x; --")]
    rows = read_relations(
        conn,  # type: ignore[arg-type]
        "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace {relations} "
        "WHERE c.relkind = %s",
        refs,
        "r",
    )
    assert rows == [("Sales", "Odd Name")]
    ((query, params),) = conn.calls
    assert query.as_string(None) == (
        "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "JOIN unnest(%s::text[], %s::text[]) w(s, r) ON w.s = n.nspname AND w.r = c.relname WHERE c.relkind = %s"
    )
    assert params == (["public", "Sales"], ["orders", "Odd Name'; DROP TABLE x; --"], "r")
