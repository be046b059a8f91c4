"""The source's sequences. Pre-data creates them on the target at their start values; what they have
reached on the source is read here for the state record, and the cutover sets the target's past it."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pgmigrate.catalog import CONTROL_SCHEMA, TableRef
from pgmigrate.endpoints import PgEndpoint

_SEQUENCES_SQL = """
SELECT n.nspname, c.relname, format_type(s.seqtypid, NULL), s.seqincrement, pg_sequence_last_value(c.oid),
       tn.nspname, t.relname, a.attname, d.deptype = 'i'
FROM pg_sequence s JOIN pg_class c ON c.oid = s.seqrelid JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = c.oid
     AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')
LEFT JOIN pg_class t ON t.oid = d.refobjid LEFT JOIN pg_namespace tn ON tn.oid = t.relnamespace
LEFT JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
WHERE n.nspname = ANY(%s) ORDER BY 1, 2
"""


def sequences_snapshot(source: PgEndpoint, schemas: Iterable[str]) -> list[dict[str, Any]]:
    """Every sequence of `schemas` with its current value, read only, for the state record (the cutover
    sets the target's sequences past these). `last_value` is None for a sequence never used. Needs
    SELECT or USAGE on the sequences."""
    schemas = [s for s in dict.fromkeys(schemas) if s != CONTROL_SCHEMA]
    with source.connect(autocommit=True) as conn:
        rows = conn.execute(_SEQUENCES_SQL, (schemas,)).fetchall()
    return [
        {
            "schema": schema,
            "name": name,
            "data_type": data_type,
            "increment": increment,
            "last_value": last_value,
            "is_called": last_value is not None,
            "owned_by": f"{TableRef(ts, tr).qualified}.{col}" if tr else None,
            "identity": bool(identity),
        }
        for schema, name, data_type, increment, last_value, ts, tr, col, identity in rows
    ]


SAFETY_GAP = 1000  # increments added on top of the source's value: ids taken in the last moments stay unique


def sync_sequences(origin: PgEndpoint, destination: PgEndpoint, schemas: Iterable[str], gap: int = SAFETY_GAP) -> list:
    """Set every sequence of `schemas` on `destination` past its value on `origin` (plus `gap`
    increments), so rows inserted after the switch never reuse an id. Run while writes are paused; a
    sequence the destination is already past is left alone (rerun-safe, never moves backwards)."""
    from psycopg import sql

    synced = []
    with destination.connect(autocommit=True) as conn:
        for seq in sequences_snapshot(origin, schemas):
            if seq["last_value"] is None:
                continue  # never used on the origin: the destination's start value is right
            ident = sql.Identifier(seq["schema"], seq["name"])
            query = sql.SQL(
                "SELECT s.last_value, p.seqmin, p.seqmax FROM {} s, pg_sequence p WHERE p.seqrelid = {}::regclass"
            ).format(ident, sql.Literal(ident.as_string(conn)))
            current, lo, hi = conn.execute(query).fetchone()
            wanted = max(lo, min(hi, seq["last_value"] + gap * seq["increment"]))
            ahead = current >= wanted if seq["increment"] > 0 else current <= wanted
            if not ahead:
                conn.execute("SELECT setval(%s::regclass, %s, true)", (ident.as_string(conn), wanted))
            synced.append({"sequence": f"{seq['schema']}.{seq['name']}", "source": seq["last_value"],
                           "target": wanted if not ahead else current})  # fmt: skip
    return synced
