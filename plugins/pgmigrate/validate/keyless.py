"""Tables without a primary key, compared as row multisets (md5 of the row text -> count): the checksum
first (one pass), the multisets only when it differs; such rows have no key, so the report has counts and a
few example rows."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

from pgmigrate.core.catalog import TableInfo
from pgmigrate.validate.checksums import checksum_query
from pgmigrate.validate.diff_result import RowDifference, TableDiff, jsonable, multiset_difference, sorted_keys
from pgmigrate.validate.recheck import Recheck

KEYLESS_EXAMPLES = 5
EXAMPLE_TEXT_CHARS = 200


def _multiset(conn: psycopg.Connection, table: TableInfo) -> dict[str, int]:
    query = sql.SQL("SELECT md5(t::text), count(*) FROM {} AS t GROUP BY 1").format(table.ref.ident)
    return dict(conn.execute(query).fetchall())


def _example_rows(conn: psycopg.Connection, table: TableInfo, hashes: list[str]) -> list[dict[str, Any]]:
    if not hashes:
        return []
    cur = conn.execute(
        sql.SQL("SELECT md5(t::text), t.* FROM {} AS t WHERE md5(t::text) = ANY(%s)").format(table.ref.ident),
        (hashes,),
    )
    names = [d.name for d in cur.description[1:]]
    by_hash: dict[str, dict[str, Any]] = {}
    for h, *values in cur:
        by_hash.setdefault(h, {n: jsonable(v, EXAMPLE_TEXT_CHARS) for n, v in zip(names, values, strict=True)})
    return [by_hash[h] for h in hashes if h in by_hash]


def keyless_check(src, dst, table: TableInfo, result: TableDiff) -> Recheck | None:
    """Row multisets: checksum (one pass per side); when it differs, row-hash counts to re-check like keys."""
    query = checksum_query(table.ref)
    (s_rows, s_sum), (d_rows, d_sum) = src.execute(query).fetchone(), dst.execute(query).fetchone()
    result.chunks, result.source_rows, result.target_rows = 1, s_rows, d_rows
    if (s_rows, s_sum) == (d_rows, d_sum):
        return None
    source, target = _multiset(src, table), _multiset(dst, table)
    suspects = {h for h in source.keys() | target.keys() if source.get(h) != target.get(h)}
    return Recheck(suspects, lambda _k: _multiset(src, table), lambda _k: _multiset(dst, table))


def report_keyless(result: TableDiff, src, dst, table: TableInfo, check: Recheck) -> None:
    source, target, differing = check.source, check.target, check.differing
    result.source_rows, result.target_rows = sum(source.values()), sum(target.values())
    result.missing_count, result.extra_count = multiset_difference(differing, source, target)
    ordered = sorted_keys(differing)
    fewer = [h for h in ordered if source.get(h, 0) > target.get(h, 0)][:KEYLESS_EXAMPLES]
    more = [h for h in ordered if target.get(h, 0) > source.get(h, 0)][:KEYLESS_EXAMPLES]
    result.missing = [RowDifference(row, "missing") for row in _example_rows(src, table, fewer)]
    result.extra = [RowDifference(row, "extra") for row in _example_rows(dst, table, more)]
    result.in_flight_count = len(check.changing)  # distinct row values whose count changed during every re-check
