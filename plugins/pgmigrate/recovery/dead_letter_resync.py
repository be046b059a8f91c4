"""Resync of dead-lettered keys: re-read exactly the rows the DLQ names from the source, and check them.

The target's rows of those keys are deleted first (a rejected DELETE left a row the source no longer has;
the snapshot only upserts what exists), then Debezium's incremental snapshot restricted by
`additional-conditions` (Debezium 2.5+/3.x) reads them on the source and reconciles them with the stream.
`differing_keys` is what `scripts/migration dlq --ack` checks before acknowledging.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from psycopg import sql

from pgmigrate.core.catalog import TableRef
from pgmigrate.core.endpoints import PgEndpoint
from pgmigrate.core.naming import MigrationNames
from pgmigrate.kafka.connector_configs import table_include_regex
from pgmigrate.stream.resync import delete_on_target, send_signals
from pgmigrate.validate.checksums import set_canonical_session

log = logging.getLogger(__name__)

# --- signals (pure) ---------------------------------------------------------------------------------------


def key_condition(keys: Sequence[Mapping[str, Any]]) -> sql.Composable:
    """`(k1, k2) IN (('v1', 'v2'), …)` over the key columns. Values go in as untyped literals of their text
    form, so PostgreSQL casts them to each column's type (int, text, uuid, numeric-as-string keys)."""
    columns = list(keys[0])
    if any(list(k) != columns for k in keys):
        raise ValueError(f"dead letters of one table carry different key columns: {[list(k) for k in keys]}")

    def literal(value: Any) -> sql.Composable:
        return sql.Literal(json.dumps(value) if isinstance(value, bool) else str(value))

    rows = sql.SQL(", ").join(sql.SQL("({})").format(sql.SQL(", ").join(literal(k[c]) for c in columns)) for k in keys)
    return sql.SQL("({}) IN ({})").format(sql.SQL(", ").join(map(sql.Identifier, columns)), rows)


SIGNAL_DATA_MAX = 2048  # the signal table's `data varchar(2048)` (resync.ensure_signal_table)


def keys_snapshot_signal(by_table: Mapping[TableRef, Sequence[Mapping[str, Any]]]) -> dict[str, str]:
    """An incremental snapshot of just these keys: Debezium 2.5+/3.x `additional-conditions`, one
    `{"data-collection", "filter"}` per table; the filter is appended to the snapshot's SELECT as WHERE."""
    data = {
        "type": "incremental",
        "data-collections": [table_include_regex(t) for t in by_table],
        "additional-conditions": [
            {"data-collection": f"{t.schema}.{t.name}", "filter": key_condition(keys).as_string(None)}
            for t, keys in by_table.items()
        ],
    }
    return {"id": f"dlq-resync-{uuid.uuid4().hex[:16]}", "type": "execute-snapshot", "data": json.dumps(data)}


def keys_snapshot_signals(by_table: Mapping[TableRef, Sequence[Mapping[str, Any]]]) -> list[dict[str, str]]:
    """As many signals as the signal table's column needs: one per table, its keys split in batches that fit."""
    signals = []
    for table, keys in by_table.items():
        batch: list[Mapping[str, Any]] = []
        for key in keys:
            if batch and len(keys_snapshot_signal({table: [*batch, key]})["data"]) > SIGNAL_DATA_MAX:
                signals.append(keys_snapshot_signal({table: batch}))
                batch = []
            batch.append(key)
        if batch:
            signal = keys_snapshot_signal({table: batch})
            if len(signal["data"]) > SIGNAL_DATA_MAX:
                raise ValueError(
                    f"the key {batch[0]} of {table.qualified} is too long for a signal: resync the "
                    "table instead (scripts/migration resync --table …)"
                )
            signals.append(signal)
    return signals


# --- databases: resync and check the keys -----------------------------------------------------------------


def request_keys_resync(
    source: PgEndpoint, target: PgEndpoint, names: MigrationNames, by_table: Mapping[TableRef, Sequence[Mapping]]
) -> dict[str, Any]:
    """Delete the keys' rows on the target, then signal the incremental snapshot of just those keys (the
    table resync's steps, `resync.delete_on_target` and `resync.send_signals`, restricted to the keys)."""
    if not by_table:
        return {"signal_id": None, "keys": 0}
    tables = list(by_table)
    delete_on_target(target, tables, {t: key_condition(keys) for t, keys in by_table.items()})
    signals = keys_snapshot_signals(by_table)
    lsn = send_signals(source, names, signals)
    count = sum(len(k) for k in by_table.values())
    ids = ", ".join(s["id"] for s in signals)
    log.info("dlq resync: signalled %s for %d key(s) at %s", ids, count, lsn)
    return {"signal_id": ids, "signal_lsn": lsn, "keys": count, "tables": [t.qualified for t in by_table]}


def _rows_by_key(endpoint: PgEndpoint, table: TableRef, keys: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    columns = list(keys[0])
    with endpoint.connect(autocommit=True) as conn:
        set_canonical_session(conn)
        rows = conn.execute(
            sql.SQL("SELECT json_build_array({cols})::text, t::text FROM {table} t WHERE {cond}").format(
                cols=sql.SQL(", ").join(sql.SQL("t.{}::text").format(sql.Identifier(c)) for c in columns),
                table=table.ident,
                cond=key_condition(keys),
            )
        ).fetchall()
    return {r[0]: r[1] for r in rows}


def differing_keys(
    source: PgEndpoint, target: PgEndpoint, by_table: Mapping[TableRef, Sequence[Mapping[str, Any]]]
) -> dict[str, list[str]]:
    """Keys whose row (its text form) differs between source and target, per table; empty when whole."""
    result = {}
    for table, keys in by_table.items():
        src, dst = _rows_by_key(source, table, keys), _rows_by_key(target, table, keys)
        bad = sorted(k for k in set(src) | set(dst) if src.get(k) != dst.get(k))
        if bad:
            result[table.qualified] = bad
    return result
