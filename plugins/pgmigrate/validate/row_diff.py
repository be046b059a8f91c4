"""Row-level diff of source and target: which rows are missing on the target, which are extra, and which
differ (with the names of the differing columns), while CDC keeps streaming. This module runs it; its parts
are `key_ranges` (ranges, hashes), `bisection`, `recheck` (rows in flight), `keyless`, `sampling` (sample
mode) and `diff_result`.

Why this shape:
- Full mode reads each table once per side when nothing differs: primary-key ranges are planned on the
  source (`key_ranges.plan_ranges`, a key-only scan) and each range is compared by count and checksum
  (`checksums.checksum_query`). The first range starts at -inf and the last ends at +inf, so rows on the
  target outside the source's key span are seen too.
- A range that differs is bisected at the median key of its larger side until it holds at most
  `leaf_rows` rows; only those leaves are compared row by row (md5 of each row's text). A single bad row
  in a 20,000-row range costs about two more passes over that range, not a row-by-row read of the table.
- Differences found on a live table include rows still in flight. Every differing key is re-read on the
  source before and after a pause longer than the pipeline's lag and on the target in between
  (`key_ranges.classify_keys`): a key the source changed during the pause is in flight (counted, not
  reported); a key at rest on the source that differs on the target twice in a row is reported. All
  tables are compared once first and their suspects re-checked together, one pause per round for all
  (`recheck_together`): many hot tables cost `attempts` pauses, not that many per table.
- Tables without a primary key are compared as row multisets (md5 of the row text -> count): the
  checksum first (one pass), the multisets only when it differs; the report has counts and a few example
  rows, since such rows have no key.
- Sample mode compares `sample_size` random keys picked on each side (`TABLESAMPLE SYSTEM`, so it reads
  about that many pages, not the table) row by row; keys picked on the target find extra rows too.
  `diff_tables` uses full mode for tables not larger than the sample, and for keyless tables.
Both sessions are canonical (`checksums.set_canonical_session`) so equal values render the same text.

`TableDiff.as_dict()` is the stable, JSON-able form used by the DAG, the CLI and the report:

    {"table": "public.accounts", "schema": "public", "name": "accounts",
     "mode": "full" | "sample", "ok": bool, "error": str | null,   # error: rows not compared, and why
     "primary_key": ["id"],                      # [] for a table compared as a row multiset
     "source_rows": int | null, "target_rows": int | null,   # null in sample mode (not counted)
     "chunks": int,                              # key ranges compared (full mode)
     "sampled": int,                             # keys compared (sample mode)
     "missing": [RowDifference], "missing_count": int,     # on the source, not on the target
     "extra": [RowDifference], "extra_count": int,         # on the target, not on the source
     "changed": [RowDifference], "changed_count": int,     # on both, different values
     "in_flight": [{column: value}], "in_flight_count": int,  # changed on the source during every re-check
     "differing_chunks": [str],                  # row_diff=False only: ranges like "[1 .. 20001)"
     "attempts": int, "seconds": float}
    RowDifference: {"key": {column: value}, "kind": "missing" | "extra" | "changed", "columns": [str]}

Lists are capped (`max_rows` per kind, 20 in-flight keys; keyless tables: a few example rows whose `key`
is the whole row); the `*_count` fields are the totals. `columns` names the differing columns of a changed
row (empty otherwise). Values are JSON types: numbers, strings, booleans, null; anything else as its text.
With `row_diff=False` (full mode) only chunk checksums are compared: a differing chunk is compared again after
each pause and the ones that never agree are listed in `differing_chunks` (no rows, no bisection).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from pgmigrate.core.catalog import TableInfo, TableRef, list_tables
from pgmigrate.core.endpoints import PgEndpoint
from pgmigrate.validate.bisection import LEAF_ROWS, bisect_differences, range_ops
from pgmigrate.validate.checksums import set_canonical_session
from pgmigrate.validate.diff_result import (
    Mode,
    RowDifference,
    TableDiff,
    classify_rows,
    describe_range,
    differing_columns,
    format_diff,
    jsonable,
    sorted_keys,
)
from pgmigrate.validate.key_ranges import (
    ROWS_PER_CHUNK,
    KeyRange,
    hashes_for_keys,
    keys_condition,
    plan_ranges,
    range_checksum,
)
from pgmigrate.validate.keyless import keyless_check, report_keyless
from pgmigrate.validate.recheck import Recheck, recheck_together
from pgmigrate.validate.sampling import diff_sample

__all__ = ["Mode", "RowDifference", "TableDiff", "diff_table", "diff_table_on", "diff_tables", "format_diff"]

log = logging.getLogger(__name__)

MAX_ROWS = 1_000  # differences listed per kind and table (the counts are complete)
IN_FLIGHT_LISTED = 20


# --- database side ------------------------------------------------------------------------------------


def _column_hashes(conn: psycopg.Connection, table: TableInfo, keys: list[tuple]) -> dict[tuple, tuple]:
    """key -> md5 of each column's text, for the rows of `keys` (which columns of a changed row differ)."""
    n_pk = len(table.primary_key)
    found: dict[tuple, tuple] = {}
    for n in range(0, len(keys), 500):
        condition, args = keys_condition(table, keys[n : n + 500])
        query = sql.SQL("SELECT {pk}, {cols} FROM {table} AS t WHERE {condition}").format(
            pk=sql.SQL(", ").join(sql.Identifier(name) for name in table.primary_key),
            cols=sql.SQL(", ").join(sql.SQL("md5(t.{}::text)").format(sql.Identifier(c.name)) for c in table.columns),
            table=table.ref.ident,
            condition=condition,
        )
        for row in conn.execute(query, args):
            found[tuple(row[:n_pk])] = tuple(row[n_pk:])
    return found


def _key_dict(table: TableInfo, key: tuple) -> dict[str, Any]:
    return {name: jsonable(value) for name, value in zip(table.primary_key, key, strict=True)}


def _report_keyed(
    result: TableDiff,
    src: psycopg.Connection,
    dst: psycopg.Connection,
    table: TableInfo,
    differing: set,
    changing: set,
    source: dict,
    target: dict,
    max_rows: int,
) -> None:
    missing, extra, changed = classify_rows(differing, source, target)
    result.missing = [RowDifference(_key_dict(table, k), "missing") for k in missing[:max_rows]]
    result.extra = [RowDifference(_key_dict(table, k), "extra") for k in extra[:max_rows]]
    shown = changed[:max_rows]
    names = [c.name for c in table.columns]
    s_cols, d_cols = _column_hashes(src, table, shown), _column_hashes(dst, table, shown)
    result.changed = [
        RowDifference(_key_dict(table, k), "changed", differing_columns(names, s_cols[k], d_cols[k]))
        if k in s_cols and k in d_cols
        else RowDifference(_key_dict(table, k), "changed")
        for k in shown
    ]
    result.missing_count, result.extra_count, result.changed_count = len(missing), len(extra), len(changed)
    result.in_flight = [_key_dict(table, k) for k in sorted_keys(changing)[:IN_FLIGHT_LISTED]]
    result.in_flight_count = len(changing)


def _differing_ranges(src, dst, table: TableInfo, result: TableDiff, rows_per_chunk: int) -> list:
    """Key ranges whose checksums differ, as (range, source checksum, target checksum): one pass per side."""
    ranges = plan_ranges(src, table, rows_per_chunk)
    # Cover the whole key space: target rows below the source's first key or above its last one count too.
    ranges[0] = KeyRange(None, ranges[0].upper, last=ranges[0].last)
    ranges[-1] = KeyRange(ranges[-1].lower, None, last=True)
    result.chunks = len(ranges)
    result.source_rows = result.target_rows = 0
    differing = []
    for rng in ranges:
        (s_rows, s_sum), (d_rows, d_sum) = range_checksum(src, table, rng), range_checksum(dst, table, rng)
        result.source_rows += s_rows
        result.target_rows += d_rows
        if (s_rows, s_sum) != (d_rows, d_sum):
            differing.append((rng, (s_rows, s_sum), (d_rows, d_sum)))
    return differing


def _recheck_chunks(src, dst, table: TableInfo, pending: list[KeyRange], attempts, pause_seconds, sleep) -> tuple:
    """(ranges that still differ after each pause, attempts used): checksums only (row_diff=False)."""
    used = 0
    while pending and used < attempts:
        used += 1
        sleep(pause_seconds)
        pending = [r for r in pending if range_checksum(src, table, r) != range_checksum(dst, table, r)]
    return pending, used


def _target_columns(conn: psycopg.Connection, ref: TableRef) -> list[tuple[str, str]] | None:
    rows = conn.execute(
        "SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a "
        "JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relname = %s AND c.relkind IN ('r', 'p') AND a.attnum > 0 "
        "AND NOT a.attisdropped ORDER BY a.attnum",
        (ref.schema, ref.name),
    ).fetchall()
    return [tuple(r) for r in rows] or None


@dataclass
class _OpenDiff:
    """A table compared once; its suspect rows (if any) wait for the shared re-check rounds."""

    result: TableDiff
    seconds: float = 0.0  # of the first pass
    check: Recheck | None = None
    report: Callable[[Recheck], None] | None = None


def _first_pass(
    src: psycopg.Connection,
    dst: psycopg.Connection,
    table: TableInfo,
    mode: Mode,
    sample_size: int,
    attempts: int,
    pause_seconds: float,
    sleep: Callable[[float], None],
    rows_per_chunk: int,
    leaf_rows: int,
    max_rows: int,
    row_diff: bool,
) -> _OpenDiff:
    """Compare `table` once and leave its suspects (rows that differed) to re-check."""
    started = time.monotonic()
    opened = _OpenDiff(TableDiff(table.ref, mode if table.primary_key else "full"))
    result, keyed = opened.result, bool(table.primary_key)
    result.primary_key = list(table.primary_key)
    source_columns = [(c.name, c.type_name) for c in table.columns]
    target_columns = _target_columns(dst, table.ref)
    if target_columns is None:
        result.error = "table missing on the target"
    elif target_columns != source_columns:
        only = sorted(set(source_columns) ^ set(target_columns))
        result.error = "columns differ on the target (rows not compared; see the schema comparison): " + (
            ", ".join(f"{n} {t}" for n, t in only) if only else "same columns in another order"
        )
    elif not row_diff and result.mode == "full":
        if keyed:
            pending = [r for r, _s, _d in _differing_ranges(src, dst, table, result, rows_per_chunk)]
        else:
            whole = KeyRange(None, None, last=True)
            (result.source_rows, s_sum), (result.target_rows, d_sum) = (
                range_checksum(src, table, whole),
                range_checksum(dst, table, whole),
            )
            result.chunks, pending = 1, ([whole] if (result.source_rows, s_sum) != (result.target_rows, d_sum) else [])
        pending, result.attempts = _recheck_chunks(src, dst, table, pending, attempts, pause_seconds, sleep)
        result.differing_chunks = [describe_range(r) if keyed else "whole table (no primary key)" for r in pending]
    elif not keyed:
        opened.check = keyless_check(src, dst, table, result)
        opened.report = lambda check: report_keyless(result, src, dst, table, check)
    else:
        if result.mode == "sample":
            suspects = diff_sample(src, dst, table, result, sample_size)
        else:
            differing = _differing_ranges(src, dst, table, result, rows_per_chunk)
            suspects = bisect_differences(differing, range_ops((src, dst), table), leaf_rows) if differing else set()
        opened.check = Recheck(
            suspects, lambda keys: hashes_for_keys(src, table, keys), lambda keys: hashes_for_keys(dst, table, keys)
        )
        opened.report = lambda check: _report_keyed(
            result, src, dst, table, check.differing, check.changing, check.source, check.target, max_rows
        )
    opened.seconds = time.monotonic() - started
    return opened


def _finish(opened: _OpenDiff) -> TableDiff:
    result, result.seconds = opened.result, opened.seconds
    if opened.check is not None and opened.report is not None:
        result.attempts, result.seconds = opened.check.used, result.seconds + opened.check.seconds
        opened.report(opened.check)
    log.info(
        "row diff: %s (%s): %s, %s missing, %s extra, %s changed, %s in flight, %.1f s",
        result.table.qualified,
        result.mode,
        "identical" if result.ok else (result.error or "DIFFERS"),
        result.missing_count,
        result.extra_count,
        result.changed_count,
        result.in_flight_count,
        result.seconds,
    )
    return result


def _diff_together(
    src: psycopg.Connection,
    dst: psycopg.Connection,
    tables: list[tuple[TableInfo, Mode]],
    sample_size: int,
    *,
    attempts: int = 6,
    pause_seconds: float = 5.0,
    sleep: Callable[[float], None] = time.sleep,
    rows_per_chunk: int = ROWS_PER_CHUNK,
    leaf_rows: int = LEAF_ROWS,
    max_rows: int = MAX_ROWS,
    row_diff: bool = True,
) -> list[TableDiff]:
    """Every table compared once, then the suspects of all of them re-checked in shared rounds."""
    opened = []
    for number, (table, mode) in enumerate(tables, 1):
        opened.append(
            _first_pass(
                src,
                dst,
                table,
                mode,
                sample_size,
                attempts,
                pause_seconds,
                sleep,
                rows_per_chunk,
                leaf_rows,
                max_rows,
                row_diff,
            )
        )
        check = opened[-1].check
        log.info(
            "row diff: %d/%d %s compared once: %s",
            number,
            len(tables),
            table.ref.qualified,
            f"{len(check.keys)} rows to re-check" if check and check.keys else "no differing rows",
        )
    recheck_together([o.check for o in opened if o.check is not None], attempts, pause_seconds, sleep)
    return [_finish(o) for o in opened]


def diff_table_on(
    src: psycopg.Connection,
    dst: psycopg.Connection,
    table: TableInfo,
    mode: Mode = "full",
    sample_size: int = 1000,
    **options: Any,
) -> TableDiff:
    """`diff_table` over open autocommit connections with canonical sessions (`set_canonical_session`)."""
    return _diff_together(src, dst, [(table, mode)], sample_size, **options)[0]


def connect_canonical(endpoint: PgEndpoint) -> psycopg.Connection:
    """An autocommit connection whose session renders rows in the one text form both sides compare."""
    conn = endpoint.connect(autocommit=True)
    set_canonical_session(conn)
    return conn


def _resolve(conn: psycopg.Connection, tables: Iterable[TableInfo | TableRef]) -> list[TableInfo]:
    tables = list(tables)
    refs = [t for t in tables if isinstance(t, TableRef)]
    if not refs:
        return tables  # type: ignore[return-value]
    known = {t.ref: t for t in list_tables(conn, sorted({r.schema for r in refs}))}
    missing = [r.qualified for r in refs if r not in known]
    if missing:
        raise ValueError(f"tables not found on the source: {', '.join(missing)}")
    return [known[t] if isinstance(t, TableRef) else t for t in tables]


def diff_table(
    source: PgEndpoint,
    target: PgEndpoint,
    table: TableInfo | TableRef,
    mode: Mode = "full",
    sample_size: int = 1000,
    **options: Any,
) -> TableDiff:
    """Row diff of one table (see the module docstring). `options`: attempts, pause_seconds (longer than the
    pipeline's lag), sleep, rows_per_chunk, leaf_rows, max_rows, row_diff (False: chunk checksums only)."""
    with connect_canonical(source) as src, connect_canonical(target) as dst:
        return diff_table_on(src, dst, _resolve(src, [table])[0], mode, sample_size, **options)


def diff_tables(
    source: PgEndpoint,
    target: PgEndpoint,
    tables: Iterable[TableInfo | TableRef] | None = None,
    mode: Mode = "full",
    sample_size: int = 1000,
    schemas: Iterable[str] = ("public",),
    **options: Any,
) -> list[TableDiff]:
    """Row diff of `tables` (default: every table of `schemas` on the source). In sample mode a table whose
    estimated size is within the sample is diffed in full: that reads no more and misses nothing."""
    with connect_canonical(source) as src, connect_canonical(target) as dst:
        chosen = _resolve(src, tables) if tables is not None else list_tables(src, schemas)
        modes: list[tuple[TableInfo, Mode]] = [
            (t, "full" if mode == "full" or 0 < t.estimated_rows <= sample_size else "sample") for t in chosen
        ]
        return _diff_together(src, dst, modes, sample_size, **options)
