"""The migration's topics on the cluster, where the platform itself manages them: how many brokers could hold their
replicas, and the sink's dead-letter topic (made with the change topics' settings before the sink exists)."""

from __future__ import annotations

from typing import Any

from pgmigrate.kafka.client_config import KafkaCluster, client_config
from pgmigrate.kafka.topic_settings import TopicSettings


class TopicAdmin:
    """One admin client and one metadata read for the deploy's checks (the read lists the live brokers and the
    topics at once)."""

    def __init__(self, kafka: KafkaCluster, timeout: float = 10.0) -> None:
        from confluent_kafka.admin import AdminClient

        self._admin = AdminClient(client_config(kafka))
        self._timeout = timeout
        self._metadata: Any = None

    def _read(self) -> Any:
        if self._metadata is None:
            self._metadata = self._admin.list_topics(timeout=self._timeout)
        return self._metadata

    def broker_count(self) -> int:
        """Brokers of the cluster that answered the metadata read (it lists the live ones)."""
        return len(self._read().brokers)

    def partition_counts(self, topic_prefix: str) -> dict[str, int]:
        """Partitions of each existing topic named `topic_prefix.…` (a migration's change topics)."""
        return {
            name: len(topic.partitions)
            for name, topic in self._read().topics.items()
            if name.startswith(f"{topic_prefix}.")
        }

    def ensure_dead_letter_topic(
        self, topic: str, settings: TopicSettings, max_message_bytes: int, timeout: float = 30.0
    ) -> bool:
        """Create the sink's dead-letter topic with the change topics' settings unless it exists (Connect would
        create it with the broker's defaults: its retention, and a message limit below the largest change event).
        Returns whether it was created."""
        from confluent_kafka.admin import NewTopic

        if topic in self._read().topics:
            return False
        configs = {**settings.topic_configs(), "max.message.bytes": str(max_message_bytes)}
        new = NewTopic(topic, num_partitions=1, replication_factor=settings.replication_factor, config=configs)
        try:
            self._admin.create_topics([new], operation_timeout=timeout)[topic].result()
        except Exception as exc:  # confluent_kafka raises KafkaException with a KafkaError inside
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise
            return False
        return True
