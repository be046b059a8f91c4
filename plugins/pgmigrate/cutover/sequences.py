"""The migrated schemas' sequences: where each one is, and setting one side's past the other's.

Pre-data (`schema_copy`) creates every sequence of the schemas on the target at its start value, with its
options. `sequences_snapshot` reads the source's for the state record. `sync_sequences` runs inside the
cutover's write pause, and the rollback's the other way round: it sets each destination sequence so that
its next value is past the origin's, so rows inserted after the switch never reuse an id.

Where a sequence is: (last_value, is_called), kept only in the sequence relation itself. Its next value is
last_value once is_called, else last_value itself (a sequence never used, or reset with
`setval(s, 500, false)`). `pg_sequence_last_value()` reads the relation but hides last_value when is_called
is false, so for those sequences the relation is read again, through `table_to_xml`: one SQL statement then
lists and reads every sequence of a side, whose names are not known before the catalog is read. The sync
runs with client writes paused, so it costs one statement per side for reading and one for the setvals,
however many sequences there are. Measured on the local stack, reading 1000 sequences takes ~25 ms when
all have been used and ~75 ms when none has (`table_to_xml` per sequence); one `UNION ALL` of 1000 selects
took 1-5 s to plan. The sync leaves the sequences it sets with is_called true where it can, so a rerun, or
the rollback reading them back, takes the cheap path.

Reading needs SELECT on the sequences (USAGE is enough for those already used); setting needs UPDATE.
Statements carry whatever lock_timeout/statement_timeout the connections have (`PgEndpoint.with_settings`,
or the critical section's own settings): nothing here changes them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

import psycopg

from pgmigrate.core.catalog import CONTROL_SCHEMA, TableRef
from pgmigrate.core.endpoints import PgEndpoint

log = logging.getLogger(__name__)

# The CTEs are MATERIALIZED so the relation reads touch only the schemas' sequences (another schema's may
# not be readable), and the CASE reads a relation only where pg_sequence_last_value() hid its position.
_SEQUENCES_SQL = """
WITH seq AS MATERIALIZED (
    SELECT c.oid, n.nspname, c.relname, format_type(s.seqtypid, NULL) AS data_type, s.seqstart, s.seqincrement,
           s.seqmin, s.seqmax, s.seqcache, s.seqcycle, pg_sequence_last_value(c.oid) AS called_value
    FROM pg_sequence s JOIN pg_class c ON c.oid = s.seqrelid JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = ANY(%s)
), hidden AS MATERIALIZED (
    SELECT seq.*, CASE WHEN called_value IS NULL THEN table_to_xml(oid::regclass, true, false, '') END AS relation
    FROM seq
)
SELECT h.oid, h.nspname, h.relname, h.data_type, h.seqstart, h.seqincrement, h.seqmin, h.seqmax, h.seqcache,
       h.seqcycle, COALESCE(h.called_value, x.last_value), h.called_value IS NOT NULL OR COALESCE(x.is_called, false),
       tn.nspname, t.relname, a.attname, d.deptype = 'i'
FROM hidden h
LEFT JOIN LATERAL XMLTABLE('/*/row' PASSING h.relation COLUMNS last_value bigint, is_called boolean) x ON true
LEFT JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = h.oid
     AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')
LEFT JOIN pg_class t ON t.oid = d.refobjid LEFT JOIN pg_namespace tn ON tn.oid = t.relnamespace
LEFT JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
ORDER BY 2, 3
"""
_SETVALS_SQL = (
    "SELECT setval(u.seq::regclass, u.value, u.called) "
    "FROM unnest(%s::oid[], %s::bigint[], %s::boolean[]) AS u(seq, value, called)"
)

SAFETY_GAP = 1000  # increments added on top of the origin's value: ids taken in the last moments stay unique


@dataclass(frozen=True)
class SequenceState:
    """One sequence on one side: its options and its position (last_value, is_called)."""

    schema: str
    name: str
    data_type: str
    start: int
    increment: int
    minvalue: int
    maxvalue: int
    cache: int
    cycle: bool
    last_value: int
    is_called: bool
    oid: int = 0  # on its own server; 0 in tests
    owned_by: str | None = None  # "public.orders.id" for serial and identity sequences
    identity: bool = False

    @property
    def qualified(self) -> str:
        return TableRef(self.schema, self.name).qualified

    @property
    def next_value(self) -> int:
        """What nextval() returns next. Past maxvalue (minvalue, descending) for a sequence used up."""
        return self.last_value + self.increment if self.is_called else self.last_value

    @property
    def used(self) -> bool:
        """False for a sequence at its start, never called: its next value is its start value."""
        return self.is_called or self.last_value != self.start


def wanted_position(origin: SequenceState, destination: SequenceState, gap: int) -> tuple[int, bool] | None:
    """The (value, is_called) to `setval()` on `destination` so its next value is at least the origin's
    plus `gap` increments, or None when it is there already: a destination is never moved backwards, so a
    second sync changes nothing. A sequence never used on the origin needs no gap: no id was taken from it.

    Clamped to the destination's bounds: past its end the destination is left used up (nextval() fails, or
    cycles, as the origin's soon would). The position is written as "called, one increment before" where
    the bounds allow, so the next read of it is the cheap one (see the module docstring).
    """
    if gap < 0:
        raise ValueError(f"gap must be 0 or more increments, not {gap}")
    step = destination.increment
    wanted = origin.next_value + (gap * origin.increment if origin.used else 0)
    lo, hi = destination.minvalue, destination.maxvalue
    if wanted > hi:
        value, called = hi, step > 0
    elif wanted < lo:
        value, called = lo, step < 0
    elif lo <= wanted - step <= hi:
        value, called = wanted - step, True
    else:
        value, called = wanted, False
    target_next = value + step if called else value
    if (destination.next_value - target_next) * (1 if step > 0 else -1) >= 0:
        return None
    return value, called


def read_sequences(conn: psycopg.Connection, schemas: Iterable[str]) -> list[SequenceState]:
    """Every sequence of `schemas` on this side, with its position, in one statement."""
    states = []
    for oid, schema, name, data_type, start, inc, lo, hi, cache, cycle, last_value, called, *owner in conn.execute(
        _SEQUENCES_SQL, (_schemas(schemas),)
    ).fetchall():
        owner_schema, owner_table, owner_column, identity = owner
        owned_by = f"{TableRef(owner_schema, owner_table).qualified}.{owner_column}" if owner_table else None
        states.append(
            SequenceState(
                schema,
                name,
                data_type,
                start,
                inc,
                lo,
                hi,
                cache,
                cycle,
                last_value,
                called,
                oid,
                owned_by,
                bool(identity),
            )
        )
    return states


def sequences_snapshot(source: PgEndpoint, schemas: Iterable[str]) -> list[dict[str, Any]]:
    """Every sequence of `schemas` with its options and position, read only, for the state record."""
    with source.connect(autocommit=True) as conn:
        states = read_sequences(conn, schemas)
    return [
        {
            "schema": s.schema,
            "name": s.name,
            "data_type": s.data_type,
            "start": s.start,
            "increment": s.increment,
            "min": s.minvalue,
            "max": s.maxvalue,
            "cache": s.cache,
            "cycle": s.cycle,
            "last_value": s.last_value,
            "is_called": s.is_called,
            "next_value": s.next_value,
            "owned_by": s.owned_by,
            "identity": s.identity,
        }
        for s in states
    ]


def sync_sequences_on(
    origin: psycopg.Connection, destination: psycopg.Connection, schemas: Iterable[str], gap: int = SAFETY_GAP
) -> list[dict[str, Any]]:
    """`sync_sequences` on connections the caller holds (the critical section's, with its timeouts)."""
    schemas = _schemas(schemas)
    there = {(s.schema, s.name): s for s in read_sequences(destination, schemas)}
    synced: list[dict[str, Any]] = []
    setvals: list[tuple[int, int, bool]] = []
    missing: list[str] = []
    for seq in read_sequences(origin, schemas):
        dest = there.get((seq.schema, seq.name))
        if dest is None:
            missing.append(seq.qualified)
            synced.append({"sequence": seq.qualified, "source": seq.next_value, "target": None, "changed": False})
            continue
        position = wanted_position(seq, dest, gap)
        if position is not None:
            setvals.append((dest.oid, *position))
        after = dest if position is None else replace(dest, last_value=position[0], is_called=position[1])
        synced.append(
            {
                "sequence": seq.qualified,
                "source": seq.next_value,
                "target": after.next_value,
                "changed": position is not None,
            }
        )
    if setvals:
        oids, values, called = (list(c) for c in zip(*setvals, strict=True))
        destination.execute(_SETVALS_SQL, (oids, values, called)).fetchall()
    if missing:
        log.warning(
            "sequences: %d of the origin's are not on the destination, nothing set for them: %s. An identity "
            "sequence of a table not migrated is expected here; any other one clients use needs copy_schema.",
            len(missing),
            ", ".join(missing[:20]),
        )
    log.info(
        "sequences: %d read, %d set past the origin's (gap %d increments), %d already past",
        len(synced),
        len(setvals),
        gap,
        len(synced) - len(setvals) - len(missing),
    )
    return synced


def sync_sequences(
    origin: PgEndpoint, destination: PgEndpoint, schemas: Iterable[str], gap: int = SAFETY_GAP
) -> list[dict[str, Any]]:
    """Set every sequence of `schemas` on `destination` so its next value is at least its next value on
    `origin` plus `gap` increments, so rows inserted after the switch never reuse an id. Run while writes
    are paused; rerun-safe (never moves a sequence backwards). One `{"sequence", "source", "target",
    "changed"}` per origin sequence, with the next value on each side (`target` None: not on the
    destination)."""
    with origin.connect(autocommit=True) as src, destination.connect(autocommit=True) as dst:
        return sync_sequences_on(src, dst, schemas, gap)


def _schemas(schemas: Iterable[str]) -> list[str]:
    return [s for s in dict.fromkeys(schemas) if s != CONTROL_SCHEMA]
