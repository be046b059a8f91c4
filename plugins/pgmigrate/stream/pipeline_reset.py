"""Start the change pipeline over: remove the migration's connectors, their stored offsets and its
Kafka topics, so nothing from an earlier attempt is replayed over a fresh initial load.

Used when the `snapshot` task reruns: the new load is consistent with a new slot position, and any
old change event still in Kafka would overwrite newer rows if the sink replayed it.
"""

from __future__ import annotations

import logging
import re
import time

from pgmigrate.core.naming import MigrationNames
from pgmigrate.kafka.client_config import KafkaCluster, client_config
from pgmigrate.kafka.connect_client import ConnectClient

log = logging.getLogger(__name__)


def remove_connectors(connect: ConnectClient, names: MigrationNames) -> list[str]:
    """Stop, clear the offsets of, and delete both connectors; returns those that existed."""
    removed = []
    for name in (names.source_connector, names.sink_connector):
        if not connect.exists(name):
            continue
        log.info("reset: stopping connector %s, clearing its offsets and deleting it", name)
        connect.reset_offsets(name)  # stops it first; Connect accepts offset changes only when STOPPED
        connect.delete(name)
        removed.append(name)
    return removed


def delete_topics(kafka: KafkaCluster, names: MigrationNames, timeout: float = 60.0) -> list[str]:
    """Delete the migration's data, heartbeat and dead letter topics and wait until the broker no longer
    lists them."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient(client_config(kafka))
    own = "|".join(re.escape(t) for t in (names.heartbeat_topic, names.dead_letter_topic))
    pattern = re.compile(rf"^({re.escape(names.topic_prefix)}\.|({own})$)")
    topics = [t for t in admin.list_topics(timeout=10).topics if pattern.match(t)]
    if not topics:
        return []
    log.info("reset: deleting %d topics of %s", len(topics), names.migration_id)
    for topic, future in admin.delete_topics(topics, operation_timeout=30).items():
        try:
            future.result()
        except Exception as exc:
            if "UNKNOWN_TOPIC" not in str(exc):
                raise
            log.info("topic %s already gone", topic)
    deadline = time.monotonic() + timeout
    while any(t in admin.list_topics(timeout=10).topics for t in topics):
        if time.monotonic() > deadline:
            raise TimeoutError(f"Kafka still lists topics {topics} {timeout:.0f}s after deleting them")
        time.sleep(0.5)
    return topics
