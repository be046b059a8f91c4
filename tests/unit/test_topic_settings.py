"""How a migration's topics are created: production defaults, the connection's overrides, the keys Connect gets,
and the refusal when the cluster cannot hold the replicas. No Kafka: pure functions."""

from __future__ import annotations

import json

import pytest

from pgmigrate.core.endpoints import PgEndpoint
from pgmigrate.core.naming import MigrationNames
from pgmigrate.kafka.connector_configs import SecretRefs, build_sink_config, build_source_config
from pgmigrate.kafka.topic_settings import InvalidTopicSettings, TopicSettings, topic_settings_from_extra
from tests.conftest import REPO

pytestmark = pytest.mark.unit

NAMES = MigrationNames("topics_unit")
SECRETS = SecretRefs("/secrets/x.properties")
ENDPOINT = PgEndpoint("db1", 5432, "shop", "migrator", "s3cret")


def test_the_defaults_are_a_production_clusters_and_the_connection_overrides_them():
    assert topic_settings_from_extra({"bootstrap.servers": "k:9092"}) == TopicSettings(3, 2)
    assert topic_settings_from_extra({"topic.replication.factor": 1}) == TopicSettings(1, 1)
    assert topic_settings_from_extra({"topic.replication.factor": "2"}) == TopicSettings(2, 1)
    assert topic_settings_from_extra({"topic.replication.factor": 5}) == TopicSettings(5, 2)
    assert topic_settings_from_extra({"topic.replication.factor": 5, "topic.min.insync.replicas": 3}) == (
        TopicSettings(5, 3)
    )


@pytest.mark.parametrize(
    "extra, named",
    [
        ({"topic.replication.factor": 0}, "topic.replication.factor must be at least 1"),
        ({"topic.replication.factor": 3, "topic.min.insync.replicas": 4}, "topic.min.insync.replicas must be"),
        ({"topic.replication.factor": "three"}, "must be whole numbers"),
    ],
)
def test_a_bad_setting_is_refused_naming_the_key(extra, named):
    with pytest.raises(InvalidTopicSettings, match=named):
        topic_settings_from_extra(extra)


def test_every_change_topic_gets_one_partition_the_replicas_and_unlimited_retention():
    config = build_source_config(NAMES, ENDPOINT, [], "copy", SECRETS, topics=TopicSettings(3, 2))
    assert config["topic.creation.default.partitions"] == "1"  # never the broker's num.partitions
    assert config["topic.creation.default.replication.factor"] == "3"
    assert config["topic.creation.default.min.insync.replicas"] == "2"
    assert config["topic.creation.default.retention.ms"] == "-1"
    assert config["topic.creation.default.retention.bytes"] == "-1"
    assert config["topic.creation.default.cleanup.policy"] == "delete"
    sink = build_sink_config(NAMES, ENDPOINT, ["public"], SECRETS, dead_letter=True, topics=TopicSettings(3, 2))
    assert sink["errors.deadletterqueue.topic.replication.factor"] == "3"


def test_a_cluster_with_fewer_brokers_than_replicas_is_refused_with_the_fix():
    TopicSettings(3, 2).check_cluster(3, "k:9092")
    with pytest.raises(InvalidTopicSettings) as refused:
        TopicSettings(3, 2).check_cluster(1, "127.0.0.1:9092")
    assert "has 1 broker(s) up, fewer than topic.replication.factor=3" in str(refused.value)
    assert '"topic.replication.factor": 1' in str(refused.value) and "kafka_default" in str(refused.value)


@pytest.mark.parametrize("replication, insync", [("1", "1"), ("3", "2")])
def test_the_local_stack_says_how_its_profile_replicates(replication, insync):
    """scripts/stack.d/airflow.sh renders the profile's values: one broker (1, 1) or the cluster (3, 2)."""
    rendered = (
        (REPO / "include/stack/airflow-connections.json")
        .read_text()
        .replace("@KAFKA_BOOTSTRAP@", "127.0.0.1:9092")
        .replace("@KAFKA_REPLICATION@", replication)
        .replace("@KAFKA_MIN_INSYNC@", insync)
    )
    extra = json.loads(json.loads(rendered)["kafka_default"]["extra"])
    assert topic_settings_from_extra(extra) == TopicSettings(int(replication), int(insync))
