"""The Kafka client configuration of the cluster a migration streams through, in one place.

Every Kafka client of the platform (the lag and drain readers, topic deletion, the dead-letter reader and
quarantine, topic creation) is built from the whole Airflow connection, as the apache-kafka provider does: its extra
is librdkafka's configuration (`bootstrap.servers`, `security.protocol`, `sasl.mechanism`, `sasl.username`,
`sasl.password`, `ssl.ca.location`, …), so a cluster behind SASL or TLS works like the local one. The platform's own
keys of that extra (how topics are created, the log dirs the monitor watches) are not client settings and are left
out. A function that takes a `KafkaCluster` accepts the bootstrap servers alone too (scripts, tests).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pgmigrate.kafka.topic_settings import TOPIC_SETTING_KEYS

# A cluster as the platform's functions take it: the whole client configuration, or the bootstrap servers alone.
KafkaCluster = str | Mapping[str, Any]

# Keys of the connection's extra that the platform reads itself; never handed to a Kafka client.
PLATFORM_KEYS = (*TOPIC_SETTING_KEYS, "log_dirs")
# librdkafka settings that hold secrets: masked in task logs, never printed.
SECRET_KEYS = ("sasl.password", "ssl.key.password", "ssl.keystore.password", "sasl.oauthbearer.client.secret")


def client_config(cluster: KafkaCluster, settings: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The client configuration for `cluster`, with one client's own `settings` (its `group.id`, …) on top."""
    base = {"bootstrap.servers": cluster} if isinstance(cluster, str) else dict(cluster)
    return {**base, **(settings or {})}


def client_config_from_extra(extra: Mapping[str, Any], conn_id: str) -> dict[str, Any]:
    """A Kafka cluster connection's extra as a client configuration."""
    config = {key: value for key, value in extra.items() if key not in PLATFORM_KEYS}
    if not config.get("bootstrap.servers"):
        raise ValueError(
            f"connection {conn_id!r} has no `bootstrap.servers` in its extra, e.g. "
            '{"bootstrap.servers": "127.0.0.1:9092"} (with SASL/TLS also "security.protocol", "sasl.mechanism", '
            '"sasl.username", "sasl.password", "ssl.ca.location")'
        )
    return config


def cluster_name(cluster: KafkaCluster) -> str:
    """How logs and messages name the cluster: its bootstrap servers, never a credential."""
    return cluster if isinstance(cluster, str) else str(cluster.get("bootstrap.servers", "?"))


def secrets_of(cluster: KafkaCluster) -> list[str]:
    """The configuration's secret values (to mask in task logs)."""
    if isinstance(cluster, str):
        return []
    return [str(cluster[key]) for key in SECRET_KEYS if cluster.get(key)]
