"""The migration's topics on the cluster, where the platform itself manages them: how many brokers could hold their
replicas, and the sink's dead-letter topic (made with the change topics' settings before the sink exists)."""

from __future__ import annotations

from pgmigrate.kafka.client_config import KafkaCluster, client_config
from pgmigrate.kafka.topic_settings import TopicSettings


def broker_count(kafka: KafkaCluster, timeout: float = 10.0) -> int:
    """Brokers of the cluster that answer now (the metadata lists the live ones)."""
    from confluent_kafka.admin import AdminClient

    return len(AdminClient(client_config(kafka)).list_topics(timeout=timeout).brokers)


def ensure_dead_letter_topic(
    kafka: KafkaCluster, topic: str, settings: TopicSettings, max_message_bytes: int, timeout: float = 30.0
) -> bool:
    """Create the sink's dead-letter topic with the change topics' settings unless it exists (Connect would create
    it with the broker's defaults: its retention, and a message limit below the largest change event). Returns
    whether it was created."""
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient(client_config(kafka))
    if topic in admin.list_topics(timeout=10).topics:
        return False
    configs = {**settings.topic_configs(), "max.message.bytes": str(max_message_bytes)}
    new = NewTopic(topic, num_partitions=1, replication_factor=settings.replication_factor, config=configs)
    try:
        admin.create_topics([new], operation_timeout=timeout)[topic].result()
    except Exception as exc:  # confluent_kafka raises KafkaException with a KafkaError inside
        if "TOPIC_ALREADY_EXISTS" not in str(exc):
            raise
        return False
    return True
