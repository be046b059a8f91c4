"""Which tables a migration spreads over several partitions, and the connectors that do it (unit: no Connect)."""

import json

import pytest

from pgmigrate.core.catalog import Column, TableInfo, TableRef
from pgmigrate.core.endpoints import PgEndpoint
from pgmigrate.core.naming import MigrationNames
from pgmigrate.core.params import InvalidParams, MigrationParams
from pgmigrate.kafka.connect_secrets import ConnectorSecrets
from pgmigrate.kafka.connector_configs import SecretRefs, build_sink_config, build_source_config
from pgmigrate.kafka.connector_status import RUNNING, assess_connector
from pgmigrate.kafka.key_partitioning import (
    KeyHashPartitioning,
    PartitionCountMismatch,
    check_existing_topics,
    spreadable,
)
from pgmigrate.kafka.topic_settings import TopicSettings
from pgmigrate.stream.pipeline_ops import Direction, desired_configs

pytestmark = pytest.mark.unit

NAMES = MigrationNames("shop-2026")
ENDPOINT = PgEndpoint("db1", 5432, "shop", "migrator", "s3cret")
SECRETS = SecretRefs("/secrets/pgmigrate-shop-2026.properties")
TOPICS = TopicSettings(replication_factor=1, min_insync_replicas=1)


def _column(name: str, type_oid: int) -> Column:
    return Column(name, "t", type_oid, "b", None, None, "", "", True, False)


def _table(name: str, key: list[str], *columns: Column) -> TableInfo:
    return TableInfo(TableRef("Ventes Été", name), "r", key, "d", False, list(columns))


ORDERS = _table("orders", ["id"], _column("id", 20), _column("note", 25))
LINES = _table("Lignes", ["n", "Réf"], _column("Réf", 25), _column("n", 23))
EVENTS = _table("events", ["id"], _column("id", 2950))
PRICES = _table("prices", ["day"], _column("day", 1082))  # date: Debezium's value is not the date's text
KEYLESS = _table("log", [], _column("line", 25))


def test_integer_text_and_uuid_keys_are_spread_others_stay_in_partition_zero():
    assert [spreadable(t) for t in (ORDERS, LINES, EVENTS, PRICES, KEYLESS)] == [True, True, True, False, False]
    spread = KeyHashPartitioning.of([ORDERS, LINES, EVENTS, PRICES, KEYLESS], 4)
    assert spread.keys == {ORDERS.ref: ("id",), LINES.ref: ("n", "Réf"), EVENTS.ref: ("id",)}
    assert 'in partition 0 (key not integer, text or uuid): "Ventes Été".prices' in spread.describe(
        [ORDERS.ref, PRICES.ref]
    )
    # The JSON both connectors read; the key columns in the primary key's order.
    assert json.loads(spread.config_value()) == {
        "partitions": 4,
        "tables": [
            {"schema": "Ventes Été", "table": "Lignes", "key": ["n", "Réf"]},
            {"schema": "Ventes Été", "table": "events", "key": ["id"]},
            {"schema": "Ventes Été", "table": "orders", "key": ["id"]},
        ],
    }


def test_spread_connectors_use_the_partitioned_classes_one_sink_task_per_partition():
    spread = KeyHashPartitioning.of([ORDERS], 4)
    source = build_source_config(NAMES, ENDPOINT, [ORDERS.ref], "copy", SECRETS, topics=TOPICS, partitioning=spread)
    sink = build_sink_config(NAMES, ENDPOINT, ["Ventes Été"], SECRETS, topics=TOPICS, partitioning=spread)
    assert source["connector.class"] == "local.pgmigration.partitioning.KeyHashPartitionedPostgresConnector"
    assert sink["connector.class"] == "local.pgmigration.partitioning.KeyHashPartitionedJdbcSinkConnector"
    assert source["topic.creation.default.partitions"] == "4" and source["tasks.max"] == "1"
    assert sink["tasks.max"] == "4"
    assert source["pgmigrate.partitioning"] == sink["pgmigrate.partitioning"] == spread.config_value()


def test_one_partition_keeps_debeziums_own_connectors_unchanged():
    one = KeyHashPartitioning.of([ORDERS], 1)
    plain_source = build_source_config(NAMES, ENDPOINT, [ORDERS.ref], "copy", SECRETS, topics=TOPICS)
    plain_sink = build_sink_config(NAMES, ENDPOINT, ["Ventes Été"], SECRETS, topics=TOPICS)
    source = build_source_config(NAMES, ENDPOINT, [ORDERS.ref], "copy", SECRETS, topics=TOPICS, partitioning=one)
    sink = build_sink_config(NAMES, ENDPOINT, ["Ventes Été"], SECRETS, topics=TOPICS, partitioning=one)
    assert source == plain_source and sink == plain_sink
    assert source["connector.class"] == "io.debezium.connector.postgresql.PostgresConnector"
    assert source["topic.creation.default.partitions"] == "1" and sink["tasks.max"] == "1"


@pytest.mark.parametrize("value", [0, 65, -1, "four", 2.5, True])
def test_a_bad_partition_count_is_refused_by_name(value):
    with pytest.raises(InvalidParams, match="change_topic_partitions"):
        MigrationParams.from_dict({"migration_id": "m1", "change_topic_partitions": value})


def test_the_partition_count_defaults_to_one():
    assert MigrationParams.from_dict({"migration_id": "m1"}).change_topic_partitions == 1
    params = MigrationParams.from_dict({"migration_id": "m1", "change_topic_partitions": "8"})
    assert params.change_topic_partitions == 8


def test_change_topics_made_with_another_partition_count_are_refused_naming_the_fix():
    check_existing_topics({"pgmigrate_shop.public.orders": 4}, 4, "shop")
    check_existing_topics({}, 4, "shop")
    with pytest.raises(PartitionCountMismatch) as refused:
        check_existing_topics({"pgmigrate_shop.public.orders": 1, "pgmigrate_shop.public.lines": 4}, 4, "shop")
    message = str(refused.value)
    assert "pgmigrate_shop.public.orders (1)" in message and "lines" not in message
    assert "clear the `snapshot` task" in message


def test_restart_rebuilds_the_spread_forward_configs_and_keeps_the_reverse_on_one_partition():
    """pg_migration_restart compares the running configs with these: a spread forward pipeline must come out as
    deployed, and the reverse one (after the cutover) is never spread."""
    spread = KeyHashPartitioning.of([ORDERS], 4)
    secrets = ConnectorSecrets(worker_secrets_dir="/etc/connect-secrets")
    forward = Direction(NAMES, ENDPOINT, ENDPOINT)
    desired = desired_configs(
        forward, [ORDERS.ref], ["Ventes Été"], "copy", secrets, topics=TOPICS, partitioning=spread
    )
    refs = secrets.refs(NAMES, ENDPOINT, ENDPOINT)
    assert desired[NAMES.source_connector] == build_source_config(
        NAMES, ENDPOINT, [ORDERS.ref], "copy", refs, topics=TOPICS, partitioning=spread
    )
    assert desired[NAMES.sink_connector]["tasks.max"] == "4"
    reverse = Direction(NAMES.reversed(), ENDPOINT, ENDPOINT)
    back = desired_configs(reverse, [ORDERS.ref], ["Ventes Été"], "copy", secrets, topics=TOPICS, partitioning=spread)
    assert back[NAMES.reversed().sink_connector]["tasks.max"] == "1"
    assert "pgmigrate.partitioning" not in back[NAMES.reversed().source_connector]


def test_the_status_line_says_which_workers_run_the_sink_tasks():
    status = {
        "connector": {"state": "RUNNING"},
        "tasks": [{"id": i, "state": "RUNNING", "worker_id": f"127.0.0.1:{8083 + i % 2}"} for i in range(4)],
    }
    state, line = assess_connector("pgmigrate-shop-sink", status)
    assert state == RUNNING
    assert line == "pgmigrate-shop-sink: RUNNING (4 task(s) RUNNING on 127.0.0.1:8083 x2, 127.0.0.1:8084 x2)"
