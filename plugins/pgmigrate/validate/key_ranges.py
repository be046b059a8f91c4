"""Primary-key ranges and row hashes, read the same way on source and target: what the row diff
(`row_diff`) compares with.

A table is cut into key ranges whose boundaries are read once from the source (`plan_ranges`, one
ordered key-only scan); a range is compared by count and checksum (`range_checksum`), a row by the md5
of its text (`hashes_for_keys`). Keys are bound with their column's type as a cast, so every key type
compares as PostgreSQL orders it. `classify_keys` is the re-check rule that tells a row in flight
from a real difference.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg
from psycopg import sql

from pgmigrate.core.catalog import TableInfo
from pgmigrate.validate.checksums import checksum_query

ROWS_PER_CHUNK = 20_000


@dataclass
class KeyRange:
    lower: tuple | None  # inclusive; None = from the first row
    upper: tuple | None  # exclusive, or inclusive when `last`
    last: bool = False


def pk_columns(table: TableInfo) -> list[tuple[str, str]]:
    """(name, type) of each primary-key column, in key order."""
    types = {c.name: c.type_name for c in table.columns}
    return [(name, types[name]) for name in table.primary_key]


def key_sql(pk: list[tuple[str, str]]) -> sql.Composable:
    return sql.SQL("({})").format(sql.SQL(", ").join(sql.Identifier(name) for name, _ in pk))


def bound_sql(pk: list[tuple[str, str]]) -> sql.Composable:
    # format_type() output is PostgreSQL's own quoted type name, safe to splice as a cast.
    return sql.SQL("({})").format(
        sql.SQL(", ").join(sql.SQL("{}::{}").format(sql.Placeholder(), sql.SQL(type_name)) for _, type_name in pk)
    )


def plan_ranges(conn: psycopg.Connection, table: TableInfo, rows_per_chunk: int = ROWS_PER_CHUNK) -> list[KeyRange]:
    """Primary-key boundaries every `rows_per_chunk` rows, read from the source in one ordered scan."""
    pk = pk_columns(table)
    key = key_sql(pk)
    cols = sql.SQL(", ").join(sql.Identifier(name) for name, _ in pk)
    boundaries = conn.execute(
        sql.SQL(
            "SELECT {cols} FROM (SELECT {cols}, row_number() OVER (ORDER BY {key}) AS rn FROM {table}) s "
            "WHERE rn % {n} = 1 ORDER BY {key}"
        ).format(cols=cols, key=key, table=table.ref.ident, n=sql.Literal(rows_per_chunk))
    ).fetchall()
    top = conn.execute(
        sql.SQL("SELECT {cols} FROM {table} ORDER BY {desc} LIMIT 1").format(
            cols=cols,
            table=table.ref.ident,
            desc=sql.SQL(", ").join(sql.SQL("{} DESC").format(sql.Identifier(name)) for name, _ in pk),
        )
    ).fetchone()
    if top is None:
        return [KeyRange(None, None, last=True)]
    starts = [tuple(b) for b in boundaries]
    ranges = [KeyRange(lo, hi) for lo, hi in zip(starts, starts[1:], strict=False)]
    ranges.append(KeyRange(starts[-1], tuple(top), last=True))
    return ranges


def range_checksum(conn: psycopg.Connection, table: TableInfo, rng: KeyRange) -> tuple[int, str]:
    """(rows, checksum) of the rows of `rng` (`checksums.checksum_query`)."""
    condition, args = where_range(table, rng)
    count, checksum = conn.execute(checksum_query(table.ref, condition), args).fetchone()
    return count, checksum


def where_range(table: TableInfo, rng: KeyRange) -> tuple[sql.Composable, list]:
    pk = pk_columns(table)
    key, bound = key_sql(pk), bound_sql(pk)
    where, args = [], []
    if rng.lower is not None:
        where.append(sql.SQL("{} >= {}").format(key, bound))
        args.extend(rng.lower)
    if rng.upper is not None:
        where.append(sql.SQL("{} {} {}").format(key, sql.SQL("<=" if rng.last else "<"), bound))
        args.extend(rng.upper)
    return (sql.SQL(" AND ").join(where) if where else sql.SQL("true")), args


def row_hashes(conn: psycopg.Connection, table: TableInfo, condition: sql.Composable, args: list) -> dict:
    pk = pk_columns(table)
    cols = sql.SQL(", ").join(sql.Identifier(name) for name, _ in pk)
    query = sql.SQL("SELECT {cols}, md5(t::text) FROM {table} AS t WHERE {condition}").format(
        cols=cols, table=table.ref.ident, condition=condition
    )
    return {tuple(row[:-1]): row[-1] for row in conn.execute(query, args)}


def keys_condition(table: TableInfo, keys: list[tuple]) -> tuple[sql.Composable, list]:
    pk = pk_columns(table)
    condition = sql.SQL("{} IN ({})").format(key_sql(pk), sql.SQL(", ").join(bound_sql(pk) for _ in keys))
    return condition, [v for key in keys for v in key]


def hashes_for_keys(conn: psycopg.Connection, table: TableInfo, keys: list[tuple]) -> dict:
    """{key: md5 of the row text} of those `keys` present, 500 keys per query."""
    found: dict = {}
    for n in range(0, len(keys), 500):
        found |= row_hashes(conn, table, *keys_condition(table, keys[n : n + 500]))
    return found


def classify_keys(before: dict, target: dict, after: dict, keys: set[tuple]) -> tuple[set[tuple], set[tuple]]:
    """(differing, changing) among `keys`, from source hashes read `before` and `after` a pause longer
    than the lag, and the target's read in between. A row the source did not change during the pause
    must be on the target by then: if not, it differs. A row the source changed is in flight; it is
    compared again."""
    differing = {k for k in keys if before.get(k) == after.get(k) and target.get(k) != after.get(k)}
    changing = {k for k in keys if before.get(k) != after.get(k)}
    return differing, changing
