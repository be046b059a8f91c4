"""Airflow hook for the Kafka cluster a migration streams through (the apache-kafka provider's connection):
`bootstrap.servers` in the extra, and how the migration's topics are created (`topic.replication.factor`,
`topic.min.insync.replicas`; see `pgmigrate.kafka.topic_settings`). Used to read the sink's consumer lag, to delete
a migration's topics and to create its dead-letter topic; the logic itself lives in `pgmigrate.stream.lag`,
`pgmigrate.stream.pipeline_reset` and `pgmigrate.kafka.topic_settings`."""

from __future__ import annotations

from airflow.sdk import BaseHook

from pgmigrate.kafka.topic_settings import TopicSettings, topic_settings_from_extra


class KafkaClusterHook(BaseHook):
    conn_name_attr = "kafka_config_id"
    default_conn_name = "kafka_default"
    conn_type = "kafka"
    hook_name = "Kafka cluster (migration)"

    def __init__(self, kafka_config_id: str = default_conn_name) -> None:
        super().__init__()
        self.kafka_config_id = kafka_config_id

    def get_conn(self) -> str:
        """The cluster's bootstrap servers, e.g. 127.0.0.1:9092."""
        extra = self.get_connection(self.kafka_config_id).extra_dejson
        servers = extra.get("bootstrap.servers")
        if not servers:
            raise ValueError(
                f"connection {self.kafka_config_id!r} has no `bootstrap.servers` in its extra, e.g. "
                '{"bootstrap.servers": "127.0.0.1:9092"}'
            )
        return str(servers)

    def topic_settings(self) -> TopicSettings:
        """How the migration's topics are created, from the connection's extra (production defaults: 3 replicas,
        2 in sync; a single-broker cluster says 1 and 1)."""
        return topic_settings_from_extra(self.get_connection(self.kafka_config_id).extra_dejson)
