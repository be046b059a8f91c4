"""Resync: copy one or more tables again while streaming continues, through a Debezium incremental
snapshot requested on the source's signal table (tables of the native channel: through their
subscription, which copies them again with its table-sync workers).

The target's copy is emptied first (extra rows a damaged copy may hold would survive an upsert-only
reload). Debezium then reads the tables in primary-key chunks and reconciles each chunk with the
change stream (watermarks in the signal table), so every row ends at its current source value whatever
the application writes meanwhile. Emptying uses DELETE as a replica session: like the sink, it does not
fire the target's FK checks or triggers (TRUNCATE would need CASCADE into other tables).
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from psycopg import sql

from pgmigrate.core.catalog import CONTROL_SCHEMA, TableRef
from pgmigrate.core.endpoints import PgEndpoint
from pgmigrate.core.naming import MigrationNames
from pgmigrate.core.waits import WaitStatus
from pgmigrate.kafka.connector_configs import signal_table, table_include_regex

if TYPE_CHECKING:
    from pgmigrate.kafka.connect_client import ConnectClient

log = logging.getLogger(__name__)

NOT_STARTED, RUNNING, DONE = "not_started", "running", "done"


def ensure_signal_table(endpoint: PgEndpoint, names: MigrationNames) -> None:
    """Debezium's required shape: (id, type, data) in that order. On both servers: the sink copies the
    watermark rows Debezium writes there, like any other row of the pipeline's own schema."""
    with endpoint.connect(autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(CONTROL_SCHEMA)))
        conn.execute(
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} (id varchar(64) PRIMARY KEY, type varchar(32) NOT NULL, "
                "data varchar(2048))"
            ).format(signal_table(names).ident)
        )


def execute_snapshot_signal(tables: list[TableRef]) -> dict[str, str]:
    """The signal row asking for an incremental snapshot of exactly `tables` (anchored regexes)."""
    data = {"data-collections": [table_include_regex(t) for t in tables], "type": "incremental"}
    return {"id": f"resync-{uuid.uuid4().hex[:20]}", "type": "execute-snapshot", "data": json.dumps(data)}


def delete_on_target(target: PgEndpoint, tables: list[TableRef], where: Mapping[TableRef, sql.Composable] = {}) -> None:
    """Delete the rows a resync re-reads: whole tables, or only the rows matching `where[table]` (dead-lettered
    keys), in one transaction, the way the sink writes (`session_replication_role = replica`: no triggers, no FK
    checks). Deleting first repairs a row the source no longer has: the snapshot only upserts what exists."""
    with target.connect() as conn:
        conn.execute("SET LOCAL session_replication_role = replica")
        for t in tables:
            condition = where.get(t, sql.SQL("true"))
            deleted = conn.execute(sql.SQL("DELETE FROM {} WHERE {}").format(t.ident, condition)).rowcount
            log.info("resync: deleted %d rows of the target's %s before re-reading them", deleted, t.qualified)
        conn.commit()


def resync_native_tables(source: PgEndpoint, target: PgEndpoint, names: MigrationNames, tables: list[TableRef]) -> None:
    """Copy native-channel tables again: out of the publication and the subscription (their changes stop
    being applied), emptied on the target, back in with `copy_data`. The table-sync worker copies each
    at a fresh snapshot and then applies what changed since, so writes made meanwhile are kept."""
    pub, sub = sql.Identifier(names.native_publication), sql.Identifier(names.native_subscription)
    listed = sql.SQL(", ").join(t.ident for t in tables)
    refresh = "ALTER SUBSCRIPTION {} REFRESH PUBLICATION WITH (copy_data = {})"
    with source.connect(autocommit=True) as conn:
        conn.execute(sql.SQL("ALTER PUBLICATION {} DROP TABLE {}").format(pub, listed))
    with target.connect(autocommit=True) as conn:
        conn.execute(sql.SQL(refresh).format(sub, sql.Literal(False)))
    delete_on_target(target, tables)
    with source.connect(autocommit=True) as conn:
        conn.execute(sql.SQL("ALTER PUBLICATION {} ADD TABLE {}").format(pub, listed))
    with target.connect(autocommit=True) as conn:
        conn.execute(sql.SQL(refresh).format(sub, sql.Literal(True)))
    log.info(
        "resync: subscription %s copies %s again", names.native_subscription, ", ".join(t.qualified for t in tables)
    )


def request_resync(
    source: PgEndpoint,
    target: PgEndpoint,
    names: MigrationNames,
    tables: list[TableRef],
    native: list[TableRef] = (),
) -> dict:
    """Empty the target's copies, then signal the snapshot of `tables` (Debezium's) and re-subscribe
    `native` (the native channel's). Returns the signal id and the source LSN after it (None without
    Debezium tables)."""
    if native:
        resync_native_tables(source, target, names, list(native))
    if not tables:
        return {"signal_id": None, "signal_lsn": None, "native_tables": [t.qualified for t in native]}
    delete_on_target(target, tables)
    signal_id, lsn = signal_incremental_snapshot(source, names, tables)
    return {"signal_id": signal_id, "signal_lsn": lsn, "native_tables": [t.qualified for t in native]}


def signal_incremental_snapshot(source: PgEndpoint, names: MigrationNames, tables: list[TableRef]) -> tuple[str, str]:
    """Signal the incremental snapshot of `tables`; (signal id, source LSN after it)."""
    signal = execute_snapshot_signal(tables)
    lsn = send_signals(source, names, [signal])
    log.info("resync: signalled %s for %s at %s", signal["id"], ", ".join(t.qualified for t in tables), lsn)
    return signal["id"], lsn


def send_signals(source: PgEndpoint, names: MigrationNames, signals: list[dict[str, str]]) -> str:
    """Insert signal rows into the source's signal table (Debezium reads them from the WAL); the source LSN
    after them, which is what `resync_phase` waits for the connector's offsets to pass."""
    insert = sql.SQL("INSERT INTO {} (id, type, data) VALUES (%(id)s, %(type)s, %(data)s)").format(
        signal_table(names).ident
    )
    with source.connect(autocommit=True) as conn:
        for signal in signals:
            conn.execute(insert, signal)
        return conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()[0]


def lsn_to_int(lsn: str) -> int:
    high, low = lsn.split("/")
    return (int(high, 16) << 32) + int(low, 16)


def resync_phase(offsets: list[dict[str, Any]], signal_lsn: str | None) -> str:
    """From the source connector's offsets: not started until it committed a position past the signal;
    running while the offset carries incremental-snapshot state; done after (at once without a signal)."""
    if signal_lsn is None:
        return DONE
    offset = (offsets[0].get("offset") or {}) if offsets else {}
    position = offset.get("lsn_commit") or offset.get("lsn")
    if position is None or int(position) < lsn_to_int(signal_lsn):
        return NOT_STARTED
    if any(key.startswith("incremental_snapshot") for key in offset):
        return RUNNING
    return DONE


def resync_done(
    connect: ConnectClient, names: MigrationNames, signal_lsn: str | None, target: PgEndpoint | None
) -> WaitStatus:
    """`wait_resync`: done when the source connector finished the incremental snapshot signalled at `signal_lsn`
    and, with `target` (native-channel tables copied again), the subscription synced them; fatal when a connector
    FAILED."""
    from pgmigrate.kafka.connector_status import failed_connectors
    from pgmigrate.stream.native_replication import read_native_sync_state

    failed = failed_connectors(connect, [names.source_connector, names.sink_connector])
    if failed:
        return WaitStatus.failed(f"during resync: {failed}")
    phase = resync_phase(connect.get_offsets(names.source_connector), signal_lsn)
    native_done = True
    if target is not None:
        native = read_native_sync_state(target, names)
        native_done = native is None or native.complete
        phase += f"; {native.describe() if native else 'no native channel'}"
    message = f"resync: incremental snapshot {phase} (signal at {signal_lsn})"
    return WaitStatus(phase.startswith(DONE) and native_done, message)
