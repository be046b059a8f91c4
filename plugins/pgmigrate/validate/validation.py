"""Validate a streaming migration: every table's rows agree on source and target, compared while
the application keeps writing.

A whole-table checksum taken on a live table never matches: the target trails the source by the
pipeline's lag. So each table is cut into primary-key ranges (boundaries read once from the source),
each range is compared by row count and checksum, and a range that differs is compared again after
a pause, when in-flight changes have arrived. A difference that persists through every attempt is
real. Ranges end at the largest key present when validation started: rows added later are the next
validation's business (they are still streaming), and the log says so.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from pgmigrate.core.catalog import TableInfo
from pgmigrate.core.endpoints import PgEndpoint
from pgmigrate.validate.checksums import checksum_query, set_canonical_session

log = logging.getLogger(__name__)

ROWS_PER_CHUNK = 20_000


@dataclass
class KeyRange:
    lower: tuple | None  # inclusive; None = from the first row
    upper: tuple | None  # exclusive, or inclusive when `last`
    last: bool = False


@dataclass
class TableValidation:
    table: str
    source_rows: int = 0
    target_rows: int = 0
    chunks: int = 0
    differing_chunks: list[str] = field(default_factory=list)
    differing_keys: list[list] = field(default_factory=list)  # the first 20 keys that still differ
    differing_key_count: int = 0
    changing_keys: list[list] = field(default_factory=list)  # hot rows: changed during every comparison
    changing_key_count: int = 0
    attempts: int = 0

    @property
    def ok(self) -> bool:
        return not self.differing_chunks and not self.differing_key_count


class ValidationFailed(RuntimeError):
    def __init__(self, results: list[TableValidation]) -> None:
        self.results = results
        bad = [r for r in results if not r.ok]
        details = "; ".join(f"{r.table}: {_difference(r)}" for r in bad)
        super().__init__(
            f"{len(bad)} of {len(results)} tables differ after {max(r.attempts for r in bad)} comparisons: "
            f"{details}. Check the sink connector's status and lag, then rerun `validate`; if the difference "
            "persists, resync the tables named here."
        )


def _pk_columns(table: TableInfo) -> list[tuple[str, str]]:
    types = {c.name: c.type_name for c in table.columns}
    return [(name, types[name]) for name in table.primary_key]


def _key_sql(pk: list[tuple[str, str]]) -> sql.Composable:
    return sql.SQL("({})").format(sql.SQL(", ").join(sql.Identifier(name) for name, _ in pk))


def _bound_sql(pk: list[tuple[str, str]]) -> sql.Composable:
    # format_type() output is PostgreSQL's own quoted type name, safe to splice as a cast.
    return sql.SQL("({})").format(
        sql.SQL(", ").join(sql.SQL("{}::{}").format(sql.Placeholder(), sql.SQL(type_name)) for _, type_name in pk)
    )


def plan_ranges(conn: psycopg.Connection, table: TableInfo, rows_per_chunk: int = ROWS_PER_CHUNK) -> list[KeyRange]:
    """Primary-key boundaries every `rows_per_chunk` rows, read from the source in one ordered scan."""
    pk = _pk_columns(table)
    key = _key_sql(pk)
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


def _range_checksum(conn: psycopg.Connection, table: TableInfo, rng: KeyRange) -> tuple[int, str]:
    condition, args = _where_range(table, rng)
    count, checksum = conn.execute(checksum_query(table.ref, condition), args).fetchone()
    return count, checksum


def _describe(rng: KeyRange) -> str:
    def show(bound: tuple | None) -> str:
        return "start" if bound is None else ",".join(str(v) for v in bound)

    return f"[{show(rng.lower)} .. {show(rng.upper)}{']' if rng.last else ')'}"


def _where_range(table: TableInfo, rng: KeyRange) -> tuple[sql.Composable, list]:
    pk = _pk_columns(table)
    key, bound = _key_sql(pk), _bound_sql(pk)
    where, args = [], []
    if rng.lower is not None:
        where.append(sql.SQL("{} >= {}").format(key, bound))
        args.extend(rng.lower)
    if rng.upper is not None:
        where.append(sql.SQL("{} {} {}").format(key, sql.SQL("<=" if rng.last else "<"), bound))
        args.extend(rng.upper)
    return (sql.SQL(" AND ").join(where) if where else sql.SQL("true")), args


def _row_hashes(conn: psycopg.Connection, table: TableInfo, condition: sql.Composable, args: list) -> dict:
    pk = _pk_columns(table)
    cols = sql.SQL(", ").join(sql.Identifier(name) for name, _ in pk)
    query = sql.SQL("SELECT {cols}, md5(t::text) FROM {table} AS t WHERE {condition}").format(
        cols=cols, table=table.ref.ident, condition=condition
    )
    return {tuple(row[:-1]): row[-1] for row in conn.execute(query, args)}


def _keys_condition(table: TableInfo, keys: list[tuple]) -> tuple[sql.Composable, list]:
    pk = _pk_columns(table)
    condition = sql.SQL("{} IN ({})").format(_key_sql(pk), sql.SQL(", ").join(_bound_sql(pk) for _ in keys))
    return condition, [v for key in keys for v in key]


def _hashes_for_keys(conn, table: TableInfo, keys: list[tuple]) -> dict:
    found: dict = {}
    for n in range(0, len(keys), 500):
        found |= _row_hashes(conn, table, *_keys_condition(table, keys[n : n + 500]))
    return found


def _differing_keys(src, dst, table: TableInfo, condition: sql.Composable, args: list) -> set[tuple]:
    source_rows, target_rows = _row_hashes(src, table, condition, args), _row_hashes(dst, table, condition, args)
    return {k for k in source_rows.keys() | target_rows.keys() if source_rows.get(k) != target_rows.get(k)}


def classify_keys(before: dict, target: dict, after: dict, keys: set[tuple]) -> tuple[set[tuple], set[tuple]]:
    """(differing, changing) among `keys`, from source hashes read `before` and `after` a pause longer
    than the lag, and the target's read in between. A row the source did not change during the pause
    must be on the target by then: if not, it differs. A row the source changed is in flight; it is
    compared again."""
    differing = {k for k in keys if before.get(k) == after.get(k) and target.get(k) != after.get(k)}
    changing = {k for k in keys if before.get(k) != after.get(k)}
    return differing, changing


def compare_table(
    src: psycopg.Connection,
    dst: psycopg.Connection,
    table: TableInfo,
    attempts: int,
    pause_seconds: float,
    sleep: Callable[[float], None],
) -> TableValidation:
    """Ranges by checksum first; ranges that differ twice are compared row by row, and only the rows that
    still differ are followed: each is read on the source before and after a pause longer than the lag,
    and on the target in between. A row that stayed unchanged on the source yet differs on the target
    twice in a row is a real difference; a row that changes during every pause (a hot row) is reported
    as not comparable while writes continue, and compared at cutover when writes are paused."""
    ranges = plan_ranges(src, table)
    result = TableValidation(table=table.ref.qualified, chunks=len(ranges))
    pending = list(range(len(ranges)))
    counts: dict[int, tuple[int, int]] = {}
    suspects: set[tuple] = set()
    differing: set[tuple] = set()
    changing: set[tuple] = set()
    for attempt in range(1, attempts + 1):
        result.attempts = attempt
        if pending:
            still = []
            for i in pending:
                s_count, s_sum = _range_checksum(src, table, ranges[i])
                d_count, d_sum = _range_checksum(dst, table, ranges[i])
                counts[i] = (s_count, d_count)
                if (s_count, s_sum) != (d_count, d_sum):
                    still.append(i)
            pending = still
            if pending and attempt >= 2:
                for i in pending:
                    suspects |= _differing_keys(src, dst, table, *_where_range(table, ranges[i]))
                pending = []
            if pending or suspects:
                sleep(pause_seconds)
            continue
        if not suspects:
            break
        keys = sorted(suspects, key=repr)
        before = _hashes_for_keys(src, table, keys)
        sleep(pause_seconds)
        target = _hashes_for_keys(dst, table, keys)
        after = _hashes_for_keys(src, table, keys)
        now_differing, changing = classify_keys(before, target, after, suspects)
        confirmed = now_differing & differing  # differed with the source at rest, twice in a row
        differing = now_differing
        suspects = now_differing | changing
        log.info(
            "validate: %s attempt %d/%d: %d rows differ, %d rows changing on the source (in flight)",
            table.ref.qualified,
            attempt,
            attempts,
            len(now_differing),
            len(changing),
        )
        if confirmed and confirmed == now_differing and not changing:
            break
    result.source_rows = sum(s for s, _ in counts.values())
    result.target_rows = sum(d for _, d in counts.values())
    result.differing_chunks = [_describe(ranges[i]) for i in pending]
    result.differing_keys = [list(k) for k in sorted(differing, key=repr)[:20]]
    result.differing_key_count = len(differing)
    result.changing_keys = [list(k) for k in sorted(changing, key=repr)[:20]]
    result.changing_key_count = len(changing)
    return result


def compare_keyless_table(
    src: psycopg.Connection,
    dst: psycopg.Connection,
    table: TableInfo,
    attempts: int,
    pause_seconds: float,
    sleep: Callable[[float], None],
) -> TableValidation:
    """A table without a primary key has neither key ranges nor keys: its rows are compared as a multiset
    (count and sum of row hashes, so duplicates count). The source is read before and after a pause
    longer than the lag and the target in between. Equal target and source: identical. Source unchanged
    during the pause yet target different, twice in a row: a real difference. Source written during every
    pause: reported as changing, compared at cutover when writes are paused."""
    result = TableValidation(table=table.ref.qualified, chunks=1)
    query = checksum_query(table.ref)
    before, target = src.execute(query).fetchone(), dst.execute(query).fetchone()
    state = "identical" if before == target else "pending"
    for attempt in range(1, attempts + 1):
        result.attempts = attempt
        if state == "identical":
            break
        sleep(pause_seconds)
        target = dst.execute(query).fetchone()
        after = src.execute(query).fetchone()
        if after == target:
            state, before = "identical", after
            break
        if before == after:
            state = "differs" if state == "differing_once" else "differing_once"
            if state == "differs":
                break
        else:
            state = "changing"
        before = after
        log.info("validate: %s (no primary key) attempt %d/%d: %s", table.ref.qualified, attempt, attempts, state)
    result.source_rows, result.target_rows = before[0], target[0]
    if state in ("differs", "differing_once"):
        result.differing_chunks = ["whole table (no primary key): row multisets differ"]
    elif state == "changing":
        result.changing_keys = [["whole table (no primary key)"]]
        result.changing_key_count = 1
    return result


def compare_tables(
    source: PgEndpoint,
    target: PgEndpoint,
    tables: list[TableInfo],
    attempts: int = 6,
    pause_seconds: float = 5.0,
    sleep: Callable[[float], None] = time.sleep,
) -> list[TableValidation]:
    """Compare every table (by primary-key ranges, or as a whole for keyless tables); what differs is
    recompared until it agrees or the attempts run out."""
    results = []
    with source.connect(autocommit=True) as src, target.connect(autocommit=True) as dst:
        set_canonical_session(src)
        set_canonical_session(dst)
        for n, table in enumerate(tables, 1):
            compare = compare_table if table.primary_key else compare_keyless_table
            result = compare(src, dst, table, attempts, pause_seconds, sleep)
            log.info(
                "validate: %d/%d %s: %s (%d rows, %d key ranges)",
                n,
                len(tables),
                result.table,
                "identical" if result.ok else "DIFFERS",
                result.source_rows,
                result.chunks,
            )
            results.append(result)
    log.info("validate: rows inserted after validation started are compared by the next validation run")
    return results


def _difference(r: TableValidation) -> str:
    if r.differing_key_count:
        keys = ", ".join(str(tuple(k)) for k in r.differing_keys[:5])
        return f"{r.differing_key_count} rows differ (keys {keys}{' …' if r.differing_key_count > 5 else ''})"
    return f"{len(r.differing_chunks)} key ranges differ: {', '.join(r.differing_chunks[:3])}"


def format_results(results: list[TableValidation]) -> str:
    """A fixed-width table for the task log."""
    width = max([len("table"), *(len(r.table) for r in results)])
    lines = [f"{'table':<{width}}  {'source rows':>12}  {'target rows':>12}  {'ranges':>6}  result"]
    for r in results:
        verdict = "ok" if r.ok else f"MISMATCH: {_difference(r)}"
        if r.ok and r.changing_key_count:
            verdict += f" ({r.changing_key_count} hot rows changed during every comparison; compared at cutover)"
        lines.append(f"{r.table:<{width}}  {r.source_rows:>12}  {r.target_rows:>12}  {r.chunks:>6}  {verdict}")
    return "\n".join(lines)


def results_as_dicts(results: list[TableValidation]) -> list[dict[str, Any]]:
    return [{**asdict(r), "ok": r.ok} for r in results]
