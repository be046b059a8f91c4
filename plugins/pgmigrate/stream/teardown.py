"""Remove everything a migration created on the source and in Kafka: connectors (with their stored
offsets), topics, the replication slot (so the source stops keeping WAL for it), the publication,
the heartbeat and signal tables (on both servers when `target` is given), and the keyless tables'
subscription (on the target) with its slots and publication. Idempotent: what is already gone is
skipped."""

from __future__ import annotations

import logging

from psycopg import sql

from pgmigrate.core.endpoints import PgEndpoint
from pgmigrate.core.naming import MigrationNames
from pgmigrate.kafka.client_config import KafkaCluster
from pgmigrate.kafka.connect_client import ConnectClient
from pgmigrate.load.replication_slot import drop_slot_if_exists
from pgmigrate.stream.native_replication import drop_native_replication
from pgmigrate.stream.pipeline_reset import delete_topics, remove_connectors
from pgmigrate.stream.pipeline_tables import own_tables
from pgmigrate.stream.publication import drop_publication

log = logging.getLogger(__name__)


def teardown_migration(
    connect: ConnectClient,
    kafka: KafkaCluster | None,
    source: PgEndpoint,
    names: MigrationNames,
    target: PgEndpoint | None = None,
) -> dict:
    """`target`: where the native channel's subscription lives; without it only the source side of that
    channel (slot, publication) is removed and the target keeps a disabled-at-worst subscription."""
    removed = remove_connectors(connect, names)
    if target is not None:
        drop_native_replication(source, target, names)
    else:
        drop_slot_if_exists(source, names.native_subscription)
        drop_publication(source, names.native_publication)
    topics = delete_topics(kafka, names) if kafka else []
    slot_dropped = drop_slot_if_exists(source, names.slot)
    drop_publication(source, names.publication)
    for endpoint in (source, target) if target is not None else (source,):
        with endpoint.connect(autocommit=True) as conn:
            for table in own_tables(names):
                conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(table.ident))
    log.info(
        "teardown of %s: connectors %s, %d topics, slot %s, publication %s dropped",
        names.migration_id,
        removed or "none",
        len(topics),
        names.slot if slot_dropped else "(none)",
        names.publication,
    )
    return {"connectors": removed, "topics": topics, "slot_dropped": slot_dropped}
