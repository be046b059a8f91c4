"""Row count and an order-independent checksum of a table, computed the same way on both servers.

The checksum is the sum of a 64-bit hash of each row's text form: independent of row order and
physical layout, sensitive to duplicates (a multiset hash), and cheap (one sequential scan).
Both sessions pin the settings that change a row's text form (time zone, DateStyle, float digits,
IntervalStyle, bytea output) so equal data gives equal text on both servers.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg
from psycopg import sql

from pgmigrate.core.catalog import TableRef

# Settings that shape `row::text`; identical on both sides so identical rows hash identically.
CANONICAL_SESSION_SETTINGS = (
    ("TimeZone", "UTC"),
    ("DateStyle", "ISO, YMD"),
    ("IntervalStyle", "postgres"),
    ("extra_float_digits", "3"),
    ("bytea_output", "hex"),
)


@dataclass(frozen=True)
class TableChecksum:
    table: str
    rows: int
    checksum: str  # decimal text of a numeric sum; compare as strings

    def matches(self, other: TableChecksum) -> bool:
        return self.rows == other.rows and self.checksum == other.checksum


def set_canonical_session(conn: psycopg.Connection) -> None:
    for name, value in CANONICAL_SESSION_SETTINGS:
        conn.execute("SELECT set_config(%s, %s, false)", (name, value))


def checksum_query(table: TableRef, condition: sql.Composable | None = None) -> sql.Composed:
    """count(*) and sum of the first 64 bits of md5(row::text) as a signed bigint (as numeric: no overflow),
    over the rows matching `condition` (the table's alias is `t`)."""
    return sql.SQL(
        "SELECT count(*), coalesce(sum(('x' || substr(md5(t::text), 1, 16))::bit(64)::bigint::numeric), 0)::text "
        "FROM {table} AS t WHERE {condition}"
    ).format(table=table.ident, condition=condition if condition is not None else sql.SQL("true"))


def table_checksum(conn: psycopg.Connection, table: TableRef) -> TableChecksum:
    with conn.cursor() as cur:
        cur.execute(checksum_query(table))
        rows, checksum = cur.fetchone()
    return TableChecksum(table=table.qualified, rows=rows, checksum=checksum)
