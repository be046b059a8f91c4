"""Airflow hook for the Kafka cluster a migration streams through (the apache-kafka provider's connection). Its
extra is the Kafka client's configuration (`bootstrap.servers`, SASL and TLS settings; `pgmigrate.kafka.client_config`)
plus how the migration's topics are created (`topic.replication.factor`, `topic.min.insync.replicas`;
`pgmigrate.kafka.topic_settings`). Used to read the sink's consumer lag and offsets, to delete a migration's topics
and to create its dead-letter topic; the logic lives in the phase packages."""

from __future__ import annotations

from typing import Any

from airflow.sdk import BaseHook
from airflow.sdk.log import mask_secret

from pgmigrate.kafka.client_config import client_config_from_extra, secrets_of
from pgmigrate.kafka.topic_settings import TopicSettings, topic_settings_from_extra


class KafkaClusterHook(BaseHook):
    conn_name_attr = "kafka_config_id"
    default_conn_name = "kafka_default"
    conn_type = "kafka"
    hook_name = "Kafka cluster (migration)"

    def __init__(self, kafka_config_id: str = default_conn_name) -> None:
        super().__init__()
        self.kafka_config_id = kafka_config_id

    def get_conn(self) -> dict[str, Any]:
        """The Kafka client configuration of the cluster: the connection's extra without the platform's own keys
        (e.g. {"bootstrap.servers": "127.0.0.1:9092"}, with SASL/TLS settings where the cluster needs them). Its
        secrets are masked in task logs."""
        config = client_config_from_extra(self.get_connection(self.kafka_config_id).extra_dejson, self.kafka_config_id)
        for secret in secrets_of(config):
            mask_secret(secret)
        return config

    def topic_settings(self) -> TopicSettings:
        """How the migration's topics are created, from the connection's extra (production defaults: 3 replicas,
        2 in sync; a single-broker cluster says 1 and 1)."""
        return topic_settings_from_extra(self.get_connection(self.kafka_config_id).extra_dejson)
