"""How a migration's topics are created: replication, in-sync replicas, partitions and retention.

Connect creates the change topics itself (`topic.creation.*` on the source connector) and the sink's dead-letter
topic (`errors.deadletterqueue.*`); left to the broker's defaults they get one replica on a cluster whose default is
1, as many partitions as the broker's `num.partitions` (which breaks the order of a table's keyless events), and its
retention, which deletes change records the sink has not applied yet when the lag grows. The settings come from the
Kafka cluster's Airflow connection (`kafka_default`), are the same for every connector of a deployment, and default
to what a production cluster needs: 3 replicas, 2 in sync.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# The extra keys of the Kafka cluster connection that say how topics are created (the rest of the extra is the
# Kafka client's own configuration).
REPLICATION_FACTOR_KEY = "topic.replication.factor"
MIN_INSYNC_REPLICAS_KEY = "topic.min.insync.replicas"
TOPIC_SETTING_KEYS = (REPLICATION_FACTOR_KEY, MIN_INSYNC_REPLICAS_KEY)


class InvalidTopicSettings(ValueError):
    pass


@dataclass(frozen=True)
class TopicSettings:
    """`replication_factor` copies of every record, of which `min_insync_replicas` must acknowledge a write
    (Connect's producers use acks=all): a write survives the loss of `min_insync_replicas - 1` brokers, and
    `replication_factor - min_insync_replicas` brokers may be down while the pipeline keeps writing."""

    replication_factor: int = 3
    min_insync_replicas: int = 2

    def __post_init__(self) -> None:
        if self.replication_factor < 1:
            raise InvalidTopicSettings(f"{REPLICATION_FACTOR_KEY} must be at least 1, got {self.replication_factor}.")
        if not 1 <= self.min_insync_replicas <= self.replication_factor:
            raise InvalidTopicSettings(
                f"{MIN_INSYNC_REPLICAS_KEY} must be between 1 and {REPLICATION_FACTOR_KEY} "
                f"({self.replication_factor}), got {self.min_insync_replicas}."
            )

    def topic_configs(self) -> dict[str, str]:
        """Topic-level configs of every migration topic. Retention is unlimited: a change record is deleted with
        its topic (teardown, reset), never while the sink may still need it; the broker's free space is watched
        by the monitor instead (the `kafka_disk` alert)."""
        return {
            "min.insync.replicas": str(self.min_insync_replicas),
            "retention.ms": "-1",
            "retention.bytes": "-1",
            "cleanup.policy": "delete",
        }

    def source_connector_keys(self) -> dict[str, str]:
        """`topic.creation.default.*` for the source connector. One partition per table: the sink applies a
        table's changes in their order in the partition, and keyless events (TRUNCATE) and primary-key changes
        are ordered only within one; the broker's `num.partitions` default must not decide it. A migration with
        `change_topic_partitions` > 1 overrides the count with the key-hash partitioned source
        (`kafka.key_partitioning`), which places every record itself."""
        keys = {
            "topic.creation.default.partitions": "1",
            "topic.creation.default.replication.factor": str(self.replication_factor),
        }
        keys.update({f"topic.creation.default.{k}": v for k, v in self.topic_configs().items()})
        return keys

    def check_cluster(self, broker_count: int, cluster: str) -> None:
        """Refuse before anything is deployed when the cluster cannot hold the replicas (Connect would fail each
        topic's creation later, inside a running connector)."""
        if broker_count < self.replication_factor:
            raise InvalidTopicSettings(
                f"the Kafka cluster at {cluster} has {broker_count} broker(s) up, fewer than "
                f"{REPLICATION_FACTOR_KEY}={self.replication_factor}: start the missing brokers, or on a "
                f'single-broker cluster set {{"{REPLICATION_FACTOR_KEY}": 1, "{MIN_INSYNC_REPLICAS_KEY}": 1}} '
                "in the extra of the Kafka cluster's Airflow connection (kafka_default)."
            )


def topic_settings_from_extra(extra: Mapping[str, Any]) -> TopicSettings:
    """The settings of a Kafka cluster connection's extra, with production defaults for what it leaves out
    (`min.insync.replicas` defaults to one less than the replication factor, at most 2)."""
    defaults = TopicSettings()
    try:
        replication = int(extra.get(REPLICATION_FACTOR_KEY, defaults.replication_factor))
        default_insync = min(defaults.min_insync_replicas, max(1, replication - 1))
        insync = int(extra.get(MIN_INSYNC_REPLICAS_KEY, default_insync))
    except (TypeError, ValueError) as exc:
        raise InvalidTopicSettings(
            f"{REPLICATION_FACTOR_KEY} and {MIN_INSYNC_REPLICAS_KEY} in the Kafka cluster connection's extra must be "
            f"whole numbers ({exc})."
        ) from exc
    return TopicSettings(replication, insync)
