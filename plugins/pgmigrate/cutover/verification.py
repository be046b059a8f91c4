"""Verification whose cost grows with the changes, not with the database.

`pre_validate` compared every row while streaming (the row diff) and recorded the change-topic positions
it started at. Any row not changed after those positions is still as it was validated. So inside the pause
only the rows whose keys appear in the change topics between the recorded positions and the drain point
need comparing, at rest: `compare_keys`. To keep that set small, the cutover first runs passes while
streaming, the way live VM migration pre-copies memory (`PrecopyPasses`): each pass compares the keys
changed since the previous pass started, until a pass covers only seconds of changes; a key that differed
(in flight, most likely) is carried into the next pass, so it is compared again, at rest at the latest.

Not covered by key: tables whose change records hold no usable key (a TRUNCATE, an undecodable key type)
are compared whole (count and checksum); tables on the native channel (no primary key, timetz) travel by
PostgreSQL's own replication and are proven by position (the subscription flushed past the drain point),
then compared whole by the full validation after the switch.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from pgmigrate.core.catalog import TableInfo, TableRef
from pgmigrate.cutover.change_topics import ChangedKeys, ChangeTopics, Positions, reached
from pgmigrate.validate.checksums import checksum_query

log = logging.getLogger(__name__)

KEYS_PER_QUERY = 5000
# A pass this short (or this small) ends the passes: the keys left for the pause are seconds of changes.
PASS_SECONDS_GOAL = 1.5
PASS_KEYS_GOAL = 2000
MAX_PASSES = 8


@dataclass(frozen=True)
class KeyDifference:
    table: TableRef
    key: tuple[str, ...] | None  # None: the whole table differs (count and checksum)
    kind: str  # missing (on the destination) | extra (on the destination) | changed
    detail: str = ""

    def describe(self) -> str:
        what = f"key ({', '.join(self.key)})" if self.key is not None else "whole table"
        return f"{self.table.qualified} {what} {self.kind}" + (f" ({self.detail})" if self.detail else "")


def _key_columns(table: TableInfo) -> list[tuple[str, str]]:
    by_name = {c.name: c.type_name for c in table.columns}
    return [(name, by_name[name]) for name in table.primary_key]


def _hash_query(table: TableInfo) -> sql.Composed:
    """For a JSON array of keys (text per key column): each key with md5 of its row's text, NULL if absent.
    The keys are typed with the column types (`jsonb_to_recordset … AS k(col type)`), so each value is parsed
    by its type's own input function; the row is looked up by a correlated subquery, which PostgreSQL runs
    as one primary-key index probe per key (a join would let it hash the keys and scan the whole table)."""
    columns = _key_columns(table)
    return sql.SQL(
        "SELECT {k_cols}, (SELECT md5(t::text) FROM {table} AS t WHERE {match}) "
        "FROM jsonb_to_recordset(%s) AS k({k_defs})"
    ).format(
        k_cols=sql.SQL(", ").join(sql.SQL("k.{}::text").format(sql.Identifier(name)) for name, _ in columns),
        k_defs=sql.SQL(", ").join(
            sql.SQL("{} {}").format(sql.Identifier(name), sql.SQL(type_name)) for name, type_name in columns
        ),
        table=table.ref.ident,
        match=sql.SQL(" AND ").join(sql.SQL("t.{c} = k.{c}").format(c=sql.Identifier(name)) for name, _ in columns),
    )


def key_hashes(conn: psycopg.Connection, table: TableInfo, keys: list[tuple[str, ...]]) -> dict:
    """key (as the database prints it) -> md5 of the row's text, or None when the row does not exist."""
    names = table.primary_key
    found: dict[tuple[str, ...], str | None] = {}
    query = _hash_query(table)
    for n in range(0, len(keys), KEYS_PER_QUERY):
        batch = [dict(zip(names, key, strict=True)) for key in keys[n : n + KEYS_PER_QUERY]]
        for row in conn.execute(query, (Jsonb(batch),)):
            found[tuple(row[:-1])] = row[-1]
    return found


def compare_keys(
    src: psycopg.Connection, dst: psycopg.Connection, table: TableInfo, keys: set[tuple[str, ...]]
) -> list[KeyDifference]:
    """The keys whose rows differ between the two sides (canonical sessions, see checksums)."""
    if not keys:
        return []
    ordered = sorted(keys)
    # Both sides at once (inside the pause every millisecond counts; psycopg releases the GIL while it waits).
    with ThreadPoolExecutor(max_workers=1) as pool:
        on_target = pool.submit(key_hashes, dst, table, ordered)
        source = key_hashes(src, table, ordered)
        target = on_target.result()
    differences = []
    for key in sorted(set(source) | set(target)):
        s, d = source.get(key), target.get(key)
        if s != d:
            kind = "missing" if d is None else "extra" if s is None else "changed"
            differences.append(KeyDifference(table.ref, key, kind))
    return differences


def compare_whole(src: psycopg.Connection, dst: psycopg.Connection, table: TableRef) -> KeyDifference | None:
    """Count and checksum of a whole table on both sides (for a table truncated since the last pass)."""
    query = checksum_query(table)
    s, d = src.execute(query).fetchone(), dst.execute(query).fetchone()
    if tuple(s) == tuple(d):
        return None
    return KeyDifference(table, None, "changed", f"{s[0]} rows on the origin, {d[0]} on the destination")


@dataclass
class VerificationResult:
    """One comparison of changed keys: a pass while streaming, or the one in the pause."""

    tables: int = 0
    keys: int = 0
    records: int = 0
    whole_tables: list[str] = field(default_factory=list)
    differences: list[KeyDifference] = field(default_factory=list)
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "tables": self.tables,
            "keys": self.keys,
            "records": self.records,
            "whole_tables": self.whole_tables,
            "differences": [d.describe() for d in self.differences[:20]],
            "difference_count": len(self.differences),
            "seconds": round(self.seconds, 3),
        }


def verify_changes(
    src: psycopg.Connection, dst: psycopg.Connection, tables: dict[TableRef, TableInfo], changes: ChangedKeys
) -> VerificationResult:
    """Compare every key in `changes`, and whole the tables whose keys cannot say what changed."""
    started = time.monotonic()
    result = VerificationResult(records=changes.records)
    whole = changes.whole_tables()
    for ref in sorted(whole, key=lambda r: r.qualified):
        difference = compare_whole(src, dst, ref)
        result.whole_tables.append(ref.qualified)
        if difference:
            result.differences.append(difference)
    for ref, keys in sorted(changes.keys.items(), key=lambda item: item[0].qualified):
        if ref in whole or ref not in tables:
            continue
        result.differences.extend(compare_keys(src, dst, tables[ref], keys))
        result.keys += len(keys)
    result.tables = len(set(changes.keys) | whole)
    result.seconds = time.monotonic() - started
    return result


def as_changes(differences: list[KeyDifference]) -> ChangedKeys:
    """Differences to compare again (the next pass, or the pause)."""
    carried = ChangedKeys()
    for d in differences:
        if d.key is None:
            carried.truncated.add(d.table)
        else:
            carried.keys.setdefault(d.table, set()).add(d.key)
    return carried


@dataclass
class PassLog:
    number: int
    keys: int
    records: int
    differing: int
    seconds: float
    covered_seconds: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "pass": self.number,
            "keys": self.keys,
            "records": self.records,
            "differing": self.differing,
            "seconds": round(self.seconds, 3),
            "covered_seconds": round(self.covered_seconds, 3),
        }


class PersistentDifference(RuntimeError):
    """Rows differ in pass after pass although the sink applied their changes: not in flight."""


def confirmed_differences(
    previous: list[KeyDifference], previous_applied: bool, changes: ChangedKeys
) -> list[KeyDifference]:
    """Differences of the previous pass that cannot be in flight: that pass compared after the sink had applied
    everything up to its positions, and the origin has not changed those rows since (their keys are not in
    this pass's changes), so the origin's value was already applied when it was compared."""
    if not previous_applied:
        return []
    whole = changes.whole_tables()

    def unchanged(d: KeyDifference) -> bool:
        if d.table in whole:
            return False
        if d.key is None:
            return d.table not in changes.keys
        return d.key not in changes.keys.get(d.table, set())

    return [d for d in previous if unchanged(d)]


def barrier(topics: ChangeTopics, origin: psycopg.Connection, timeout: float) -> bool:
    """Every change committed on the origin before this call is in Kafka once it returns True (False at
    timeout): its WAL position is taken, a heartbeat written after it, and the capture's slot must confirm
    that position. Debezium confirms a position only once Connect has committed the offsets of the records
    before it, that is once Kafka has acknowledged them."""
    from pgmigrate.stream.heartbeat import heartbeat_action_query

    lsn = origin.execute("SELECT pg_current_wal_lsn()::text").fetchone()[0]
    origin.execute(heartbeat_action_query(topics.names))  # a change after the position: the capture moves past it
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = origin.execute(
            "SELECT confirmed_flush_lsn >= %s::pg_lsn FROM pg_replication_slots WHERE slot_name = %s",
            (lsn, topics.names.slot),
        ).fetchone()
        if row and row[0]:
            return True
        time.sleep(0.02)
    return False


def precopy_passes(
    topics: ChangeTopics,
    src: psycopg.Connection,
    dst: psycopg.Connection,
    tables: dict[TableRef, TableInfo],
    since: Positions,
    *,
    sink_wait_seconds: float = 30.0,
    max_passes: int = MAX_PASSES,
    say: Callable[[str], None] = log.info,
) -> tuple[Positions, ChangedKeys, list[PassLog]]:
    """Passes while streaming, each comparing the keys changed since the previous one started (and the
    keys that differed in it), until a pass took under PASS_SECONDS_GOAL over at most PASS_KEYS_GOAL keys.
    Before comparing, each pass waits (at most `sink_wait_seconds`) until the sink applied everything up
    to its end positions, so what still differs changed again on the origin since, or really differs
    (`confirmed_differences`: then no cutover). Returns the positions the last pass read up to and the keys
    that differed in it: both go to the pause."""
    carried = ChangedKeys()
    previous: list[KeyDifference] = []
    previous_applied = False
    logs: list[PassLog] = []
    covered_from = time.monotonic()
    for number in range(1, max_passes + 1):
        started = time.monotonic()
        # Every origin change committed before now (so before the previous pass compared) in Kafka: a key the
        # previous pass saw differ that the topics do not name since was at rest on the origin, not still on its
        # way through the capture.
        captured = barrier(topics, src, sink_wait_seconds) if previous else True
        until = topics.end_offsets()
        applied_by = time.monotonic() + sink_wait_seconds
        applied = reached(until, topics.sink_committed())
        while not applied and time.monotonic() < applied_by:
            time.sleep(0.1)
            applied = reached(until, topics.sink_committed())
        changes = topics.read_changes(since, until)
        confirmed = confirmed_differences(previous, previous_applied and captured, changes)
        if confirmed:
            raise PersistentDifference(
                f"{len(confirmed)} rows differ although the sink had applied their last change and the origin has not "
                f"changed them since: {'; '.join(d.describe() for d in confirmed[:5])}. Not switching: compare them "
                "(scripts/migration compare), repair (scripts/migration resync), then trigger the DAG again."
            )
        changes.add(carried)
        result = verify_changes(src, dst, tables, changes)
        carried, previous, previous_applied = as_changes(result.differences), result.differences, applied
        seconds = time.monotonic() - started
        logs.append(
            PassLog(number, result.keys, changes.records, len(result.differences), seconds, started - covered_from)
        )
        say(
            f"pre-pause pass {number}: {result.keys} changed keys in {result.tables} tables ({changes.records} "
            f"change records) compared in {seconds:.2f}s; {len(result.differences)} differ (compared again next)"
            + ("" if applied else f"; the sink had not applied them all after {sink_wait_seconds:.0f}s")
        )
        since = until
        covered_from = started
        if seconds <= PASS_SECONDS_GOAL and result.keys <= PASS_KEYS_GOAL:
            break
    return since, carried, logs
