"""Kafka clients are built from the whole cluster connection: SASL/TLS settings reach every client, the platform's
own keys do not, and logs name the cluster without its credentials. No Kafka: pure functions."""

from __future__ import annotations

import pytest

from pgmigrate.kafka.client_config import client_config, client_config_from_extra, cluster_name, secrets_of

pytestmark = pytest.mark.unit

SASL_EXTRA = {
    "bootstrap.servers": "k1:9093,k2:9093,k3:9093",
    "security.protocol": "SASL_SSL",
    "sasl.mechanism": "SCRAM-SHA-512",
    "sasl.username": "pgmigrate",
    "sasl.password": "s3cret-kafka",
    "ssl.ca.location": "/etc/kafka/ca.pem",
    "topic.replication.factor": 3,
    "topic.min.insync.replicas": 2,
    "log_dirs": ["/var/lib/kafka"],
}


def test_the_connection_extra_is_the_client_configuration_without_the_platforms_keys():
    config = client_config_from_extra(SASL_EXTRA, "kafka_default")
    assert config == {k: v for k, v in SASL_EXTRA.items() if not k.startswith("topic.") and k != "log_dirs"}
    consumer = client_config(config, {"group.id": "g", "enable.auto.commit": False})
    assert consumer["security.protocol"] == "SASL_SSL" and consumer["sasl.password"] == "s3cret-kafka"
    assert consumer["group.id"] == "g" and config.get("group.id") is None  # the connection's config is not changed


def test_the_bootstrap_servers_alone_are_a_cluster_too():
    assert client_config("127.0.0.1:9092") == {"bootstrap.servers": "127.0.0.1:9092"}
    assert client_config("127.0.0.1:9092", {"acks": "all"}) == {"bootstrap.servers": "127.0.0.1:9092", "acks": "all"}


def test_a_connection_without_bootstrap_servers_is_refused_naming_it_and_the_keys():
    with pytest.raises(ValueError) as refused:
        client_config_from_extra({"security.protocol": "SSL"}, "kafka_prod")
    assert "'kafka_prod' has no `bootstrap.servers`" in str(refused.value) and "sasl.username" in str(refused.value)


def test_logs_name_the_cluster_by_its_servers_and_the_secrets_are_known_for_masking():
    config = client_config_from_extra(SASL_EXTRA, "kafka_default")
    assert cluster_name(config) == "k1:9093,k2:9093,k3:9093" and "s3cret" not in cluster_name(config)
    assert secrets_of(config) == ["s3cret-kafka"]
    assert secrets_of("127.0.0.1:9092") == [] and cluster_name("127.0.0.1:9092") == "127.0.0.1:9092"
