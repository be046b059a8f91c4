"""Row-level diff of source and target: which rows are missing on the target, which are extra, and which
differ (with the names of the differing columns), while CDC keeps streaming.

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
import math
import time
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from datetime import time as dtime
from typing import Any, Literal

import psycopg
from psycopg import sql

from pgmigrate.core.catalog import TableInfo, TableRef, list_tables
from pgmigrate.core.endpoints import PgEndpoint
from pgmigrate.validate.checksums import checksum_query, set_canonical_session
from pgmigrate.validate.key_ranges import (
    ROWS_PER_CHUNK,
    KeyRange,
    classify_keys,
    hashes_for_keys,
    key_sql,
    keys_condition,
    pk_columns,
    plan_ranges,
    range_checksum,
    row_hashes,
    where_range,
)

log = logging.getLogger(__name__)

Mode = Literal["full", "sample"]
LEAF_ROWS = 1_000  # a differing range this small is compared row by row
MAX_ROWS = 1_000  # differences listed per kind and table (the counts are complete)
KEYLESS_EXAMPLES = 5
IN_FLIGHT_LISTED = 20
MAX_BISECT_DEPTH = 64  # live writes can move a range's rows; stop splitting and compare rows instead
EXAMPLE_TEXT_CHARS = 200
SOURCE, TARGET = 0, 1


@dataclass(frozen=True)
class RowDifference:
    key: dict[str, Any]  # primary key column -> value; for a keyless table, the whole (example) row
    kind: Literal["missing", "extra", "changed"]
    columns: list[str] = field(default_factory=list)  # differing columns of a changed row

    def as_dict(self) -> dict[str, Any]:
        return {"key": dict(self.key), "kind": self.kind, "columns": list(self.columns)}


@dataclass
class TableDiff:
    table: TableRef
    mode: Mode
    primary_key: list[str] = field(default_factory=list)
    source_rows: int | None = None
    target_rows: int | None = None
    chunks: int = 0
    sampled: int = 0
    missing: list[RowDifference] = field(default_factory=list)
    extra: list[RowDifference] = field(default_factory=list)
    changed: list[RowDifference] = field(default_factory=list)
    missing_count: int = 0
    extra_count: int = 0
    changed_count: int = 0
    in_flight: list[dict[str, Any]] = field(default_factory=list)
    in_flight_count: int = 0
    differing_chunks: list[str] = field(default_factory=list)  # row_diff=False: key ranges that still differ
    attempts: int = 0
    seconds: float = 0.0
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and not (
            self.missing_count or self.extra_count or self.changed_count or self.differing_chunks
        )

    def as_dict(self) -> dict[str, Any]:
        """The stable JSON-able form documented in the module docstring."""
        return {
            "table": self.table.qualified,
            "schema": self.table.schema,
            "name": self.table.name,
            "mode": self.mode,
            "ok": self.ok,
            "error": self.error,
            "primary_key": list(self.primary_key),
            "source_rows": self.source_rows,
            "target_rows": self.target_rows,
            "chunks": self.chunks,
            "sampled": self.sampled,
            "missing": [d.as_dict() for d in self.missing],
            "missing_count": self.missing_count,
            "extra": [d.as_dict() for d in self.extra],
            "extra_count": self.extra_count,
            "changed": [d.as_dict() for d in self.changed],
            "changed_count": self.changed_count,
            "in_flight": [dict(k) for k in self.in_flight],
            "in_flight_count": self.in_flight_count,
            "differing_chunks": list(self.differing_chunks),
            "attempts": self.attempts,
            "seconds": round(self.seconds, 3),
        }


# --- pure logic (unit-tested with fakes) -------------------------------------------------------------


def jsonable(value: Any, max_text: int | None = None) -> Any:
    """A value as a JSON type; text longer than `max_text` is cut (example rows of keyless tables)."""
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, datetime | date | dtime):
        return value.isoformat()
    if isinstance(value, bytes | bytearray | memoryview):
        text = "\\x" + bytes(value).hex()
    elif isinstance(value, list | tuple):
        return [jsonable(v, max_text) for v in value]
    elif isinstance(value, dict):
        return {str(k): jsonable(v, max_text) for k, v in value.items()}
    else:
        text = value if isinstance(value, str) else str(value)
    if max_text is not None and len(text) > max_text:
        return text[:max_text] + f"… ({len(text)} chars)"
    return text


def sorted_keys(keys: Iterable[Hashable]) -> list:
    """Keys in their natural order when comparable (stable reports), else by their text."""
    keys = list(keys)
    try:
        return sorted(keys)
    except TypeError:
        return sorted(keys, key=repr)


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


@dataclass
class Recheck:
    """One table's suspect keys being re-checked (`recheck_together`); the readings are keyed like the keys."""

    keys: set
    read_source: Callable[[list], dict]
    read_target: Callable[[list], dict]
    differing: set = field(default_factory=set)
    changing: set = field(default_factory=set)
    source: dict = field(default_factory=dict)
    target: dict = field(default_factory=dict)
    used: int = 0
    previous: set | None = None
    settled: bool = False
    seconds: float = 0.0  # spent in the rounds this check took part in


def recheck_together(
    checks: list[Recheck], attempts: int, pause_seconds: float, sleep: Callable[[float], None]
) -> None:
    """Separate real differences from rows in flight, for several tables in shared rounds. Each round reads the
    source of every open check, pauses once, then reads the target and the source again (`classify_keys`). A
    check settles when nothing differs any more, or when every differing key also differed in its previous
    round with nothing in flight; keys still in flight after `attempts` rounds are counted as such, not
    reported as differences. One pause per round for all tables: a validation of many hot tables waits at most
    `attempts` pauses, not that many per table."""
    round_no = 0
    while active := [c for c in checks if c.keys and not c.settled and c.used < attempts]:
        round_no += 1
        log.info("row diff: re-check %d/%d of %d rows in %d tables (pause %.0f s)",
                 round_no, attempts, sum(len(c.keys) for c in active), len(active), pause_seconds)  # fmt: skip
        started = time.monotonic()
        ordered = [sorted_keys(c.keys) for c in active]
        before = [c.read_source(keys) for c, keys in zip(active, ordered, strict=True)]
        sleep(pause_seconds)
        for check, keys, earlier in zip(active, ordered, before, strict=True):
            check.used += 1
            check.target = check.read_target(keys)
            check.source = check.read_source(keys)
            check.differing, check.changing = classify_keys(earlier, check.target, check.source, check.keys)
            previous, check.previous = check.previous, check.differing
            if check.differing and not check.changing and previous is not None and check.differing <= previous:
                check.settled = True
            check.keys = check.differing | check.changing
        for check in active:
            check.seconds += time.monotonic() - started


def classify_rows(differing: set, source: dict, target: dict) -> tuple[list, list, list]:
    """(missing on target, extra on target, changed), each in key order."""
    missing = [k for k in sorted_keys(differing) if k in source and k not in target]
    extra = [k for k in sorted_keys(differing) if k in target and k not in source]
    changed = [k for k in sorted_keys(differing) if k in source and k in target]
    return missing, extra, changed


def multiset_difference(hashes: Iterable[str], source: dict[str, int], target: dict[str, int]) -> tuple[int, int]:
    """(rows missing on the target, rows extra on the target) of a keyless table, from row-hash counts."""
    missing = extra = 0
    for h in hashes:
        n = source.get(h, 0) - target.get(h, 0)
        missing, extra = missing + max(n, 0), extra + max(-n, 0)
    return missing, extra


def differing_columns(columns: list[str], source: tuple, target: tuple) -> list[str]:
    """Names of the columns whose (hashed) values differ between two readings of one row."""
    return [name for name, s, t in zip(columns, source, target, strict=True) if s != t]


def sample_percent(sample_size: int, estimated_rows: int, oversample: float = 3.0) -> float:
    """TABLESAMPLE SYSTEM percentage that yields about `oversample` x `sample_size` rows (100 when unknown)."""
    if estimated_rows <= 0:
        return 100.0
    return min(100.0, max(0.0001, 100.0 * oversample * sample_size / estimated_rows))


def describe_range(rng: KeyRange) -> str:
    """A key range for people: "[5001 .. 10001)", "[-inf .. 5001)", "[25001 .. +inf]"."""

    def show(bound: tuple | None, infinity: str) -> str:
        return infinity if bound is None else ",".join(str(v) for v in bound)

    return f"[{show(rng.lower, '-inf')} .. {show(rng.upper, '+inf')}{']' if rng.last else ')'}"


def _key_text(key: dict[str, Any]) -> str:
    return ", ".join(f"{name}={value}" for name, value in key.items())


def format_diff(diffs: list[TableDiff], keys_per_kind: int = 5) -> str:
    """A few lines per table for task logs and the CLI: the verdict, then the first keys of each kind."""
    lines = []
    for d in diffs:
        rows = f"sampled {d.sampled} keys" if d.mode == "sample" else f"{d.source_rows} rows"
        head = f"{d.table.qualified}: "
        if d.error:
            lines.append(head + f"NOT COMPARED: {d.error}")
            continue
        flight = f"; {d.in_flight_count} rows in flight (changed during every re-check)" if d.in_flight_count else ""
        if d.ok:
            lines.append(head + f"identical ({d.mode}, {rows}, {d.seconds:.1f} s){flight}")
            continue
        if d.differing_chunks:
            shown = ", ".join(d.differing_chunks[:keys_per_kind])
            extra = len(d.differing_chunks) - keys_per_kind
            more = f" … (+{extra} more)" if extra > 0 else ""
            lines.append(head + f"DIFFERS (checksums only): {len(d.differing_chunks)} key ranges differ: {shown}{more}")
            continue
        lines.append(
            head + f"DIFFERS ({d.mode}, {rows}): {d.missing_count} missing on target, {d.extra_count} extra on "
            f"target, {d.changed_count} changed{flight}"
        )
        if not d.primary_key:
            for kind, examples in (("missing on target", d.missing), ("extra on target", d.extra)):
                for row in examples[:keys_per_kind]:
                    lines.append(f"  {kind}, e.g. ({_key_text(row.key)})")
            continue
        for kind, items, count in (
            ("missing on target", d.missing, d.missing_count),
            ("extra on target", d.extra, d.extra_count),
            ("changed", d.changed, d.changed_count),
        ):
            if not count:
                continue
            shown = [
                _key_text(r.key) + (f" ({', '.join(r.columns)})" if r.columns else "") for r in items[:keys_per_kind]
            ]
            more = f" … (+{count - len(shown)} more)" if count > len(shown) else ""
            lines.append(f"  {kind}: {'; '.join(shown)}{more}")
    return "\n".join(lines)


# --- database side ------------------------------------------------------------------------------------


def _median_key(conn: psycopg.Connection, table: TableInfo, rng: KeyRange, offset: int) -> tuple | None:
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


def _range_ops(conns: tuple[psycopg.Connection, psycopg.Connection], table: TableInfo) -> RangeOps:
    return RangeOps(
        checksum=lambda side, rng: range_checksum(conns[side], table, rng),
        median=lambda side, rng, offset: _median_key(conns[side], table, rng, offset),
        row_hashes=lambda side, rng: row_hashes(conns[side], table, *where_range(table, rng)),
    )


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


def _sample_keys(conn: psycopg.Connection, table: TableInfo, sample_size: int) -> list[tuple]:
    pk = pk_columns(table)
    rows = conn.execute(
        sql.SQL("SELECT {cols} FROM {table} TABLESAMPLE SYSTEM ({pct}) ORDER BY random() LIMIT {n}").format(
            cols=sql.SQL(", ").join(sql.Identifier(name) for name, _ in pk),
            table=table.ref.ident,
            pct=sql.Literal(sample_percent(sample_size, table.estimated_rows)),
            n=sql.Literal(sample_size),
        )
    ).fetchall()
    return [tuple(r) for r in rows]


def _diff_sample(src, dst, table: TableInfo, result: TableDiff, sample_size: int) -> set[tuple]:
    """Suspect keys among `sample_size` keys picked on each side, compared row by row."""
    keys = sorted_keys(set(_sample_keys(src, table, sample_size)) | set(_sample_keys(dst, table, sample_size)))
    result.sampled = len(keys)
    source, target = hashes_for_keys(src, table, keys), hashes_for_keys(dst, table, keys)
    return {k for k in keys if source.get(k) != target.get(k)}


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


def _keyless_check(src, dst, table: TableInfo, result: TableDiff) -> Recheck | None:
    """Row multisets: checksum (one pass per side); when it differs, row-hash counts to re-check like keys."""
    query = checksum_query(table.ref)
    (s_rows, s_sum), (d_rows, d_sum) = src.execute(query).fetchone(), dst.execute(query).fetchone()
    result.chunks, result.source_rows, result.target_rows = 1, s_rows, d_rows
    if (s_rows, s_sum) == (d_rows, d_sum):
        return None
    source, target = _multiset(src, table), _multiset(dst, table)
    suspects = {h for h in source.keys() | target.keys() if source.get(h) != target.get(h)}
    return Recheck(suspects, lambda _k: _multiset(src, table), lambda _k: _multiset(dst, table))


def _report_keyless(result: TableDiff, src, dst, table: TableInfo, check: Recheck) -> None:
    source, target, differing = check.source, check.target, check.differing
    result.source_rows, result.target_rows = sum(source.values()), sum(target.values())
    result.missing_count, result.extra_count = multiset_difference(differing, source, target)
    ordered = sorted_keys(differing)
    fewer = [h for h in ordered if source.get(h, 0) > target.get(h, 0)][:KEYLESS_EXAMPLES]
    more = [h for h in ordered if target.get(h, 0) > source.get(h, 0)][:KEYLESS_EXAMPLES]
    result.missing = [RowDifference(row, "missing") for row in _example_rows(src, table, fewer)]
    result.extra = [RowDifference(row, "extra") for row in _example_rows(dst, table, more)]
    result.in_flight_count = len(check.changing)  # distinct row values whose count changed during every re-check


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
        result.error = (
            "columns differ on the target (rows not compared; see the schema comparison): "
            + (", ".join(f"{n} {t}" for n, t in only) if only else "same columns in another order")
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
        opened.check = _keyless_check(src, dst, table, result)
        opened.report = lambda check: _report_keyless(result, src, dst, table, check)
    else:
        if result.mode == "sample":
            suspects = _diff_sample(src, dst, table, result, sample_size)
        else:
            differing = _differing_ranges(src, dst, table, result, rows_per_chunk)
            suspects = bisect_differences(differing, _range_ops((src, dst), table), leaf_rows) if differing else set()
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
        opened.append(_first_pass(src, dst, table, mode, sample_size, attempts, pause_seconds, sleep,
                                  rows_per_chunk, leaf_rows, max_rows, row_diff))  # fmt: skip
        check = opened[-1].check
        log.info("row diff: %d/%d %s compared once: %s", number, len(tables), table.ref.qualified,
                 f"{len(check.keys)} rows to re-check" if check and check.keys else "no differing rows")  # fmt: skip
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


def _connect(endpoint: PgEndpoint) -> psycopg.Connection:
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
    with _connect(source) as src, _connect(target) as dst:
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
    with _connect(source) as src, _connect(target) as dst:
        chosen = _resolve(src, tables) if tables is not None else list_tables(src, schemas)
        modes: list[tuple[TableInfo, Mode]] = [
            (t, "full" if mode == "full" or 0 < t.estimated_rows <= sample_size else "sample") for t in chosen
        ]
        return _diff_together(src, dst, modes, sample_size, **options)
