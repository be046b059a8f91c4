"""Tables Debezium cannot carry exactly travel by PostgreSQL's own logical replication instead.

Three kinds: tables without a primary key; tables with a column Debezium has no mapping for, or whose
streamed values it normalizes (`column_types.debezium_problem`: composites, multiranges, pg_lsn, the
geometric types, extension types it does not know; timetz offsets become +00 before any converter sees
them); and tables with a double quote in a name. PostgreSQL's logical replication carries every value in
its own text form, exactly.

Keyless tables: the JDBC sink applies a change by its Kafka key. A keyless table has none, so the sink could only key
it by the whole row: exact duplicate rows (legal in such a table) would collapse into one, and an
UPDATE of one duplicate would touch all of them. PostgreSQL's apply worker does what is needed: with
REPLICA IDENTITY FULL on the source it finds ONE row equal to the old row and changes or deletes just
that one, so duplicates survive exactly.

So a migration with such tables runs a second, native channel beside the Debezium pipeline:
a publication of just those tables on the source and a subscription on the target (its own slot,
initial copy by the subscription's table-sync workers, which is consistent by construction). Both
channels start from the same empty target and never touch the same table. The price: the target
server must reach the source over the network and the target role must be allowed to CREATE
SUBSCRIPTION (superuser on PostgreSQL 15), and each UPDATE/DELETE on a large keyless table costs the
apply worker a scan of it (as it would for any logical replica of such a table).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from psycopg import sql

from pgmigrate.core.catalog import TableInfo, TableRef
from pgmigrate.core.column_types import routes_to_native_channel
from pgmigrate.core.endpoints import PgEndpoint
from pgmigrate.core.naming import MigrationNames
from pgmigrate.load.replication_slot import drop_slot_if_exists
from pgmigrate.stream.publication import drop_publication, ensure_publication

log = logging.getLogger(__name__)

# pg_subscription_rel.srsubstate: r = ready (streaming), s = synchronized (handing over to the apply worker).
_SYNCED_STATES = ("r", "s")


def needs_native_channel(table: TableInfo) -> bool:
    """Keyless tables, tables with a type Debezium cannot carry exactly, and tables whose names Debezium cannot
    handle in every task. A double quote in the schema, table or a column name: Debezium's source (measured on
    3.6.0) parses the table names pgoutput sends without unescaping quotes ("Unexpected input", the task fails on
    the table's first change), and its JDBC sink quotes column names without doubling an embedded quote. Whitespace
    or a dot in the schema or table name: streaming works, but an incremental snapshot (resync, recover, schema
    sync's new tables, `dlq --resync`) stores the table as an unquoted `schema.table` in the connector's offsets,
    which its TableId parser splits at whitespace and dots; measured on 3.7.0: the snapshot skipped the table ("Unable
    to parse table identifier from public.Clients été"), and quoted in the signal, the task then FAILED reloading
    its offsets ("Unexpected input: é"). Non-ASCII letters and other characters stay with Debezium (its topic names
    replace them, and the sink subscribes to those). A comma in any of these names: Debezium splits
    `table.include.list` and `column.exclude.list` at commas (`Strings.setOfRegex` on 3.7.0 reads `public\\.a,b`
    as `public\\.a` and `b`), so the table would not be captured."""
    names = (table.ref.schema, table.ref.name)
    return (
        not table.primary_key
        or routes_to_native_channel(table)
        or any(ch in name for name in (*names, *(c.name for c in table.columns)) for ch in ('"', ","))
        or any(ch.isspace() or ch == "." for name in names for ch in name)
    )


def split_by_channel(tables: list[TableInfo]) -> tuple[list[TableInfo], list[TableInfo]]:
    """(tables for Debezium, tables for native logical replication: see `needs_native_channel`)."""
    native = [t for t in tables if needs_native_channel(t)]
    return [t for t in tables if t not in native], native


@dataclass(frozen=True)
class NativeSyncState:
    tables: int
    synced: int
    states: dict[str, str]  # table -> srsubstate, for the ones not yet synced

    @property
    def complete(self) -> bool:
        return self.synced == self.tables

    def describe(self) -> str:
        waiting = ", ".join(f"{t} ({_STATE_NAMES.get(s, s)})" for t, s in sorted(self.states.items()))
        synced = f"native-channel tables synced {self.synced}/{self.tables}"
        return synced + (f"; waiting for {waiting}" if waiting else "")


_STATE_NAMES = {"i": "initializing", "d": "copying", "f": "copy finished", "s": "synchronized", "r": "ready"}


def subscription_oid(conn, names: MigrationNames) -> int | None:
    row = conn.execute(
        "SELECT s.oid FROM pg_subscription s JOIN pg_database d ON d.oid = s.subdbid "
        "WHERE s.subname = %s AND d.datname = current_database()",
        (names.native_subscription,),
    ).fetchone()
    return row[0] if row else None


def subscription_conninfo(publisher: PgEndpoint, subscriber_passfile: str = "") -> str:
    """How the subscriber's server reaches the publisher (the subscription connects from the subscriber's host).
    With `subscriber_passfile` (the migration's param: a libpq password file on the subscribing server's own host)
    the password stays in that file, never in the subscription; without one it is in the conninfo, as PostgreSQL
    stores it (visible in pg_subscription and in superuser dumps)."""
    if subscriber_passfile:
        return publisher.conninfo(
            application_name=None, connect_timeout=10, password=None, passfile=subscriber_passfile
        )
    return publisher.conninfo(application_name=None, connect_timeout=10)


def ensure_native_replication(
    source: PgEndpoint,
    target: PgEndpoint,
    names: MigrationNames,
    tables: list[TableRef],
    initial_copy: bool = True,
    existing_slot: bool = False,
    subscriber_passfile: str = "",
) -> str:
    """Publication on the source and subscription on the target for exactly `tables`. An existing
    subscription is kept (a rerun never restarts a copy in progress); a new one first empties the target
    tables, because its table-sync workers COPY into them without truncating. `initial_copy=False`
    (reverse replication at cutover, both sides identical): stream changes from now on, copy nothing.
    `existing_slot=True`: stream from the slot of that name the cutover created inside its pause (so
    nothing written since is missed) instead of creating one. `subscriber_passfile`: see `subscription_conninfo`."""
    if not tables:
        return "none"
    ensure_publication(source, names.native_publication, tables)
    with target.connect(autocommit=True) as conn:
        if subscription_oid(conn, names) is not None:
            # How it connects follows the endpoints as they are now (a password file configured since, a new password).
            conn.execute(
                sql.SQL("ALTER SUBSCRIPTION {} CONNECTION {}").format(
                    sql.Identifier(names.native_subscription),
                    sql.Literal(subscription_conninfo(source, subscriber_passfile)),
                )
            )
            conn.execute(sql.SQL("ALTER SUBSCRIPTION {} ENABLE").format(sql.Identifier(names.native_subscription)))
            conn.execute(
                sql.SQL("ALTER SUBSCRIPTION {} REFRESH PUBLICATION WITH (copy_data = {})").format(
                    sql.Identifier(names.native_subscription), sql.Literal(initial_copy)
                )
            )
            log.info("native channel: subscription %s exists, enabled", names.native_subscription)
            return "exists"
        if not existing_slot:
            # A slot left by an earlier subscription that was dropped without its slot: start from a fresh one.
            drop_slot_if_exists(source, names.native_subscription)
        if initial_copy:
            conn.execute(sql.SQL("TRUNCATE {}").format(sql.SQL(", ").join(t.ident for t in tables)))
        # The target's copies get REPLICA IDENTITY FULL too: reverse replication after cutover needs it.
        for t in tables:
            conn.execute(sql.SQL("ALTER TABLE {} REPLICA IDENTITY FULL").format(t.ident))
        conn.execute(
            sql.SQL(
                "CREATE SUBSCRIPTION {sub} CONNECTION {conninfo} PUBLICATION {pub} "
                "WITH (copy_data = {copy}, create_slot = {create}, slot_name = {slot}, enabled = true)"
            ).format(
                copy=sql.Literal(initial_copy),
                create=sql.Literal(not existing_slot),
                sub=sql.Identifier(names.native_subscription),
                conninfo=sql.Literal(subscription_conninfo(source, subscriber_passfile)),
                pub=sql.Identifier(names.native_publication),
                slot=sql.Literal(names.native_subscription),
            )
        )
    log.info(
        "native channel: subscription %s on %s copies and streams %d tables from publication %s",
        names.native_subscription,
        target.label,
        len(tables),
        names.native_publication,
    )
    return "created"


def read_native_sync_state(target: PgEndpoint, names: MigrationNames) -> NativeSyncState | None:
    """Table-sync progress of the subscription; None when the migration has no native channel."""
    with target.connect(autocommit=True) as conn:
        oid = subscription_oid(conn, names)
        if oid is None:
            return None
        rows = conn.execute(
            "SELECT format('%%I.%%I', n.nspname, c.relname), r.srsubstate FROM pg_subscription_rel r "
            "JOIN pg_class c ON c.oid = r.srrelid JOIN pg_namespace n ON n.oid = c.relnamespace WHERE r.srsubid = %s",
            (oid,),
        ).fetchall()
    waiting = {table: state for table, state in rows if state not in _SYNCED_STATES}
    return NativeSyncState(tables=len(rows), synced=len(rows) - len(waiting), states=waiting)


def read_native_lag(source: PgEndpoint, names: MigrationNames) -> float | None:
    """Seconds the subscription trails the source, from the source's walsender statistics. 0 when it has
    applied everything it was sent (PostgreSQL reports no lag then); None when it is not streaming."""
    with source.connect(autocommit=True) as conn:
        row = conn.execute(
            "SELECT state, coalesce(extract(epoch FROM replay_lag), 0)::float8 FROM pg_stat_replication "
            "WHERE application_name = %s",
            (names.native_subscription,),
        ).fetchone()
    if row is None or row[0] != "streaming":
        return None
    return float(row[1])


def has_native_channel(source: PgEndpoint, names: MigrationNames) -> bool:
    """The native channel's slot exists on the source (the subscription created it)."""
    with source.connect(autocommit=True) as conn:
        return bool(
            conn.execute(
                "SELECT 1 FROM pg_replication_slots WHERE slot_name = %s", (names.native_subscription,)
            ).fetchone()
        )


def drop_native_replication(source: PgEndpoint, target: PgEndpoint, names: MigrationNames) -> bool:
    """Remove the subscription, its slots on the source and the publication. Works even when the target
    cannot reach the source: the subscription is detached from its slot first and the slots (including
    the table-sync workers' `pg_<oid>_sync_…` slots) are dropped from here. Returns whether it existed."""
    sub = sql.Identifier(names.native_subscription)
    existed = False
    with target.connect(autocommit=True) as conn:
        oid = subscription_oid(conn, names)
        if oid is not None:
            existed = True
            conn.execute(sql.SQL("ALTER SUBSCRIPTION {} DISABLE").format(sub))
            conn.execute(sql.SQL("ALTER SUBSCRIPTION {} SET (slot_name = NONE)").format(sub))
            conn.execute(sql.SQL("DROP SUBSCRIPTION {}").format(sub))
            log.info("native channel: dropped subscription %s on %s", names.native_subscription, target.label)
    drop_slot_if_exists(source, names.native_subscription)
    if oid is not None:
        with source.connect(autocommit=True) as conn:
            sync_slots = [
                r[0]
                for r in conn.execute(
                    "SELECT slot_name FROM pg_replication_slots WHERE slot_name LIKE %s", (f"pg\\_{oid}\\_sync\\_%",)
                )
            ]
        for slot in sync_slots:
            drop_slot_if_exists(source, slot)
    drop_publication(source, names.native_publication)
    return existed
