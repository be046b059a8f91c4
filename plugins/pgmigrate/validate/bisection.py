"""Bisection of the key ranges whose checksums differ: each is split at the median key of its larger side
until it holds at most `leaf_rows` rows, and only those leaves are compared row by row. A single bad row in a
20,000-row range costs about two more passes over that range, not a row-by-row read of the table. Pure over
`RangeOps` (unit-tested with fakes); `range_ops` answers it from the two servers."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import psycopg
from psycopg import sql

from pgmigrate.core.catalog import TableInfo
from pgmigrate.validate.key_ranges import KeyRange, key_sql, pk_columns, range_checksum, row_hashes, where_range

LEAF_ROWS = 1_000  # a differing range this small is compared row by row
MAX_BISECT_DEPTH = 64  # live writes can move a range's rows; stop splitting and compare rows instead
SOURCE, TARGET = 0, 1


def split_range(rng: KeyRange, middle: tuple) -> tuple[KeyRange, KeyRange]:
    """[lower, middle) and [middle, upper): disjoint, together exactly `rng`."""
    return KeyRange(rng.lower, middle, last=False), KeyRange(middle, rng.upper, last=rng.last)


@dataclass
class RangeOps:
    """What bisection needs from the two servers; `side` is SOURCE or TARGET."""

    checksum: Callable[[int, KeyRange], tuple[int, str]]  # (rows, checksum) of a range
    median: Callable[[int, KeyRange, int], tuple | None]  # key at offset n in the range, in key order
    row_hashes: Callable[[int, KeyRange], dict]  # key -> row hash, every row of the range


def _minus(whole: tuple[int, str], part: tuple[int, str]) -> tuple[int, str]:
    return whole[0] - part[0], str(int(whole[1]) - int(part[1]))


def bisect_differences(
    differing: list[tuple[KeyRange, tuple[int, str], tuple[int, str]]], ops: RangeOps, leaf_rows: int = LEAF_ROWS
) -> set[tuple]:
    """Keys whose rows differ, found by halving the (range, source checksum, target checksum) that differ.

    A range is split at the median key of its larger side, so that side shrinks by half each step and both
    halves are non-empty there. Only the lower half is read: counts and checksums are sums, so the upper
    half's are the range's minus the lower's. Halves that agree are dropped; ranges of at most `leaf_rows`
    rows (or too deep: live writes) are compared row by row."""
    keys: set[tuple] = set()
    stack = [(rng, s, d, 0) for rng, s, d in differing]
    while stack:
        rng, s_sum, d_sum, depth = stack.pop()
        middle = None
        if max(s_sum[0], d_sum[0]) > leaf_rows and depth < MAX_BISECT_DEPTH:
            side, rows = (SOURCE, s_sum[0]) if s_sum[0] >= d_sum[0] else (TARGET, d_sum[0])
            middle = ops.median(side, rng, rows // 2)
        # OFFSET >= 1 puts the median after the range's first row, so both halves shrink (keys are unique);
        # None: rows deleted meanwhile. Key order is the server's (collations), never compared in Python.
        if middle is None:
            source, target = ops.row_hashes(SOURCE, rng), ops.row_hashes(TARGET, rng)
            keys |= {k for k in source.keys() | target.keys() if source.get(k) != target.get(k)}
            continue
        low, high = split_range(rng, tuple(middle))
        s_low, d_low = ops.checksum(SOURCE, low), ops.checksum(TARGET, low)
        for half, s_half, d_half in ((low, s_low, d_low), (high, _minus(s_sum, s_low), _minus(d_sum, d_low))):
            if s_half != d_half:
                stack.append((half, s_half, d_half, depth + 1))
    return keys


def median_key(conn: psycopg.Connection, table: TableInfo, rng: KeyRange, offset: int) -> tuple | None:
    pk = pk_columns(table)
    condition, args = where_range(table, rng)
    row = conn.execute(
        sql.SQL("SELECT {cols} FROM {table} AS t WHERE {condition} ORDER BY {key} OFFSET {offset} LIMIT 1").format(
            cols=sql.SQL(", ").join(sql.Identifier(name) for name, _ in pk),
            table=table.ref.ident,
            condition=condition,
            key=key_sql(pk),
            offset=sql.Literal(offset),
        ),
        args,
    ).fetchone()
    return tuple(row) if row else None


def range_ops(conns: tuple[psycopg.Connection, psycopg.Connection], table: TableInfo) -> RangeOps:
    return RangeOps(
        checksum=lambda side, rng: range_checksum(conns[side], table, rng),
        median=lambda side, rng, offset: median_key(conns[side], table, rng, offset),
        row_hashes=lambda side, rng: row_hashes(conns[side], table, *where_range(table, rng)),
    )
