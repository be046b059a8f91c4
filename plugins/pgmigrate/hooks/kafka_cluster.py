"""Airflow hook for the Kafka cluster a migration streams through (the apache-kafka provider's
connection: `bootstrap.servers` in the extra). Used to read the sink's consumer lag and to delete a
migration's topics; the logic itself lives in `pgmigrate.stream.lag` and `pgmigrate.stream.pipeline_reset`."""

from __future__ import annotations

from airflow.sdk import BaseHook


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
