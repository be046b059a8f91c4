"""Reverse replication: from cutover on, every change made on the target flows back to the source, so a
rollback loses nothing written after the switch.

It starts inside the write pause, after the drain. The forward connectors are stopped first (their
slot stays until teardown) and the forward native subscription disabled, so a change applied to one
side is never captured there and sent back: no loops. The reverse slots are created on the target
before clients reach it, so every target write after the switch is kept even if the reverse
connectors start later. The reverse pipeline is the forward one with the roles swapped
(`names.reversed()`: its own slot, publication, connectors, topics and heartbeat).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import psycopg
from psycopg import sql

from pgmigrate.core.catalog import TableRef
from pgmigrate.core.endpoints import PgEndpoint
from pgmigrate.core.naming import MigrationNames
from pgmigrate.kafka.client_config import KafkaCluster
from pgmigrate.kafka.connect_client import ConnectClient
from pgmigrate.kafka.connect_secrets import ConnectorSecrets
from pgmigrate.kafka.connector_configs import SINK_CLASS, SOURCE_CLASS, build_sink_config, build_source_config
from pgmigrate.kafka.topic_settings import TopicSettings
from pgmigrate.load.replication_slot import drop_slot_if_exists
from pgmigrate.stream.native_replication import drop_native_replication, ensure_native_replication, subscription_oid
from pgmigrate.stream.pipeline_reset import delete_topics, remove_connectors
from pgmigrate.stream.pipeline_tables import ensure_own_tables, own_tables
from pgmigrate.stream.publication import drop_publication, ensure_publication

log = logging.getLogger(__name__)

# For an operator whose step waited on a lock: who holds the locks others wait for.
LOCK_BLOCKERS_QUERY = (
    "SELECT pid, state, xact_start, query FROM pg_stat_activity WHERE pid IN "
    "(SELECT unnest(pg_blocking_pids(pid)) FROM pg_stat_activity WHERE wait_event_type = 'Lock')"
)


def _set_native_subscription(target: PgEndpoint, names: MigrationNames, enabled: bool) -> None:
    with target.connect(autocommit=True) as conn:
        if subscription_oid(conn, names) is not None:
            verb = sql.SQL("ENABLE" if enabled else "DISABLE")
            conn.execute(sql.SQL("ALTER SUBSCRIPTION {} {}").format(sql.Identifier(names.native_subscription), verb))
            log.info(
                "%s subscription %s on %s",
                "enabled" if enabled else "disabled",
                names.native_subscription,
                target.label,
            )


def stop_pipeline(connect: ConnectClient, subscriber: PgEndpoint, names: MigrationNames) -> list[str]:
    """Stop a direction's connectors (config, offsets and slot kept) and disable its native subscription
    (which lives on `subscriber`: the target for forward, the source for reverse)."""
    stopped = []
    for name in (names.source_connector, names.sink_connector):
        if connect.exists(name):
            connect.stop(name)
            stopped.append(name)
    _set_native_subscription(subscriber, names, enabled=False)
    return stopped


def resume_pipeline(connect: ConnectClient, subscriber: PgEndpoint, names: MigrationNames) -> list[str]:
    """Undo `stop_pipeline`: the connectors go on from their stored offsets, nothing is lost. A task that FAILED
    meanwhile is restarted too (resume alone leaves it failed): when a killed cutover task never stopped the
    connectors, the sink may have met a target identity column already ALWAYS after the pause guard put clients
    back ("cannot insert a non-DEFAULT value", measured), before this undo set it BY DEFAULT again. Its batch was
    not committed, so the restarted task writes it again."""
    _set_native_subscription(subscriber, names, enabled=True)  # first: it needs no Kafka Connect
    resumed = []
    for name in (names.sink_connector, names.source_connector):
        if connect.exists(name):
            connect.resume(name)
            if any(t.get("state") == "FAILED" for t in connect.get_status(name).get("tasks", [])):
                connect.restart(name, include_tasks=True, only_failed=True)
                log.warning("Connector '%s' had a FAILED task: restarted it after the undo", name)
            resumed.append(name)
    return resumed


def set_identity_generation(endpoint: PgEndpoint, columns: list[dict], always: bool) -> int:
    """GENERATED ALWAYS <-> BY DEFAULT for the recorded identity columns. A replicating sink inserts
    explicit ids, which ALWAYS rejects; applications need ALWAYS back on the side they write to."""
    with endpoint.connect(autocommit=True) as conn:
        return set_identity_generation_on(conn, endpoint.label, columns, always)


def set_identity_generation_on(conn: psycopg.Connection, label: str, columns: list[dict], always: bool) -> int:
    """`set_identity_generation` over an open autocommit connection (inside the pause: its lock_timeout)."""
    changed = 0
    want = "a" if always else "d"
    for c in columns:
        row = conn.execute(
            "SELECT a.attidentity FROM pg_attribute a JOIN pg_class t ON t.oid = a.attrelid "
            "JOIN pg_namespace n ON n.oid = t.relnamespace WHERE n.nspname = %s AND t.relname = %s "
            "AND a.attname = %s",
            (c["schema"], c["table"], c["column"]),
        ).fetchone()
        if row is None or row[0] in ("", want):
            continue
        try:
            conn.execute(
                sql.SQL("ALTER TABLE {} ALTER COLUMN {} SET GENERATED {}").format(
                    sql.Identifier(c["schema"], c["table"]),
                    sql.Identifier(c["column"]),
                    sql.SQL("ALWAYS" if always else "BY DEFAULT"),
                )
            )
        except (psycopg.errors.LockNotAvailable, psycopg.errors.QueryCanceled) as exc:
            raise RuntimeError(
                f"changing the identity of {c['schema']}.{c['table']} on {label} waited past its lock_timeout: "
                f"another session holds a lock on the table. Find it with: {LOCK_BLOCKERS_QUERY}; end it, then rerun."
            ) from exc
        changed += 1
    log.info("identity columns on %s: %d set %s", label, changed, "ALWAYS" if always else "BY DEFAULT")
    return changed


def stop_connectors(connect: ConnectClient, names: MigrationNames) -> list[str]:
    """Inside the pause: ask Connect to stop a direction's connectors (config, offsets and slot kept). Connect
    completes a stop asynchronously; `fence.wait_slot_released` waits for the capture to let go of its slot."""
    from pgmigrate.kafka.connect_errors import ConnectError

    stopped = []
    for name in (names.source_connector, names.sink_connector):
        try:
            connect.stop(name)
            stopped.append(name)
        except ConnectError as exc:
            if exc.status_code != 404:
                raise
    return stopped


def disable_native_subscription(subscriber: psycopg.Connection, names: MigrationNames) -> bool:
    """Inside the pause, over an open connection to the server the direction's native subscription lives on."""
    if subscription_oid(subscriber, names) is None:
        return False
    subscriber.execute(sql.SQL("ALTER SUBSCRIPTION {} DISABLE").format(sql.Identifier(names.native_subscription)))
    return True


def create_slot_on(target: psycopg.Connection, slot: str) -> bool:
    """Inside the pause, over an open connection to the target: one of the reverse pipeline's logical slots
    (Debezium's, or the native channel's). From here on every target change is kept for the source; the
    connectors and the subscription start from these slots after the pause. Rerun-safe: False if it exists."""
    if target.execute("SELECT 1 FROM pg_replication_slots WHERE slot_name = %s", (slot,)).fetchone():
        return False
    lsn = target.execute(
        "SELECT lsn::text FROM pg_create_logical_replication_slot(%s, 'pgoutput')", (slot,)
    ).fetchone()[0]
    log.info("reverse: slot %s created at %s", slot, lsn)
    return True


def prepare_reverse(
    source: PgEndpoint, target: PgEndpoint, names: MigrationNames, tables: list[TableRef], native: list[TableRef]
) -> None:
    """Before the pause (nothing here captures a change yet): the reverse pipeline's own tables on both
    servers and its publications on the target. Publications must exist before their slots anyway
    (pgoutput decodes with the catalog as of each WAL record). Rerun-safe."""
    reverse = names.reversed()
    ensure_own_tables(target, source, reverse)
    ensure_publication(target, reverse.publication, [*tables, *own_tables(reverse)])
    if native:
        ensure_publication(target, reverse.native_publication, native)


def start_reverse_native(
    source: PgEndpoint, target: PgEndpoint, names: MigrationNames, native: list[TableRef], subscriber_passfile: str = ""
) -> str:
    """After the pause: the native channel's reverse subscription on the source, streaming from the slot the
    pause created on the target (no initial copy: both sides were identical at the switch)."""
    if not native:
        return "none"
    return ensure_native_replication(
        target,
        source,
        names.reversed(),
        native,
        initial_copy=False,
        existing_slot=True,
        subscriber_passfile=subscriber_passfile,
    )


def deploy_reverse_connectors(
    connect: ConnectClient,
    secrets: ConnectorSecrets,
    source: PgEndpoint,
    target: PgEndpoint,
    names: MigrationNames,
    tables: list[TableRef],
    schemas: list[str],
    generated_columns: Sequence[tuple[TableRef, str]] = (),
    *,
    topics: TopicSettings,
) -> tuple[str, str]:
    """A Debezium source on the target streaming from the reverse slot (no snapshot), and a JDBC sink
    writing into the source: the forward pipeline with the roles swapped."""
    reverse = names.reversed()
    refs = secrets.refs(reverse, target, source)
    source_config = build_source_config(reverse, target, tables, "copy", refs, generated_columns, topics=topics)
    sink_config = build_sink_config(reverse, source, schemas, refs, topics=topics)
    connect.validate_or_raise(SINK_CLASS, sink_config, name=reverse.sink_connector)
    connect.validate_or_raise(SOURCE_CLASS, source_config, name=reverse.source_connector)
    connect.create_or_update(reverse.sink_connector, sink_config)
    connect.create_or_update(reverse.source_connector, source_config)
    log.info("reverse: deployed %s and %s", reverse.source_connector, reverse.sink_connector)
    return reverse.source_connector, reverse.sink_connector


def remove_reverse_replication(
    connect: ConnectClient, kafka: KafkaCluster | None, source: PgEndpoint, target: PgEndpoint, names: MigrationNames
) -> dict:
    """Everything the cutover's reverse slots and `deploy_reverse_connectors` made, gone (abort, rollback,
    teardown). The connectors go first when Kafka Connect answers: a running Debezium source would create its
    slot again right after the drop. The servers' part is done even when Connect is unreachable (a slot keeps
    WAL), and the connectors are tried again after it."""
    reverse = names.reversed()
    removed: list[str] = []
    try:
        removed = remove_connectors(connect, reverse)
    except Exception as exc:  # Connect down: the slots still go; the connectors are retried below
        log.warning("reverse: Kafka Connect did not answer (%s); dropping the slots first", exc)
    slot_dropped = drop_slot_if_exists(target, reverse.slot)
    drop_publication(target, reverse.publication)
    drop_native_replication(target, source, reverse)
    for endpoint in (source, target):
        with endpoint.connect(autocommit=True) as conn:
            for table in own_tables(reverse):
                conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(table.ident))
    removed = removed or remove_connectors(connect, reverse)
    topics = delete_topics(kafka, reverse) if kafka else []
    log.info(
        "reverse: removed connectors %s, %d topics, slot %s",
        removed or "none",
        len(topics),
        reverse.slot if slot_dropped else "(none)",
    )
    return {"connectors": removed, "topics": topics, "slot_dropped": slot_dropped}
