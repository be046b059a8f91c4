"""Remove everything a migration created on the source and in Kafka: connectors (with their stored
offsets), topics, the replication slot (so the source stops keeping WAL for it), the publication
and the heartbeat table. Idempotent: what is already gone is skipped."""

from __future__ import annotations

import logging

from psycopg import sql

from pgmigrate.connect_client import ConnectClient
from pgmigrate.endpoints import PgEndpoint
from pgmigrate.heartbeat import heartbeat_table
from pgmigrate.naming import MigrationNames
from pgmigrate.pipeline_reset import delete_topics, remove_connectors
from pgmigrate.publication import drop_publication
from pgmigrate.snapshot_copy import drop_slot_if_exists

log = logging.getLogger(__name__)


def teardown_migration(
    connect: ConnectClient, bootstrap_servers: str | None, source: PgEndpoint, names: MigrationNames
) -> dict:
    removed = remove_connectors(connect, names)
    topics = delete_topics(bootstrap_servers, names) if bootstrap_servers else []
    slot_dropped = drop_slot_if_exists(source, names.slot)
    drop_publication(source, names.publication)
    with source.connect(autocommit=True) as conn:
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {t}").format(t=heartbeat_table(names).ident))
    log.info(
        "teardown of %s: connectors %s, %d topics, slot %s, publication %s dropped",
        names.migration_id, removed or "none", len(topics), names.slot if slot_dropped else "(none)",
        names.publication,
    )
    return {"connectors": removed, "topics": topics, "slot_dropped": slot_dropped}
