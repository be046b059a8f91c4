"""Connector configs are pure functions of the migration: check the keys that carry a decision."""

import re

import pytest

from pgmigrate.catalog import TableRef
from pgmigrate.connector_configs import (
    SecretRefs,
    build_sink_config,
    build_source_config,
    sink_topics_regex,
    table_include_regex,
)
from pgmigrate.endpoints import PgEndpoint
from pgmigrate.naming import MigrationNames

pytestmark = pytest.mark.unit

NAMES = MigrationNames("shop-2026")
SOURCE = PgEndpoint("db1", 5432, "shop", "migrator", "s3cret")
TARGET = PgEndpoint("db2", 5432, "shop", "migrator", "s3cret")
SECRETS = SecretRefs("/secrets/pgmigrate-shop-2026.properties")
TABLES = [TableRef("public", "orders"), TableRef("public", "Order Items"), TableRef("sales", "a.b")]


def test_source_config_streams_from_our_slot_and_publication():
    config = build_source_config(NAMES, SOURCE, TABLES, "copy", SECRETS)
    assert config["slot.name"] == "pgmigrate_shop_2026" == config["publication.name"]
    assert config["publication.autocreate.mode"] == "disabled"
    assert config["snapshot.mode"] == "no_data"
    assert build_source_config(NAMES, SOURCE, TABLES, "debezium", SECRETS)["snapshot.mode"] == "initial"
    assert config["slot.drop.on.stop"] == "false"
    assert config["plugin.name"] == "pgoutput"


def test_lossless_representations():
    config = build_source_config(NAMES, SOURCE, TABLES, "copy", SECRETS)
    assert config["decimal.handling.mode"] == "string"
    assert config["interval.handling.mode"] == "string"
    assert config["time.precision.mode"] == "adaptive_time_microseconds"
    assert config["skipped.operations"] == "none"
    assert "ReselectColumnsPostProcessor" in config["post.processors.reselector.type"]


def test_text_form_converter_carries_the_values_debezium_alters():
    config = build_source_config(NAMES, SOURCE, TABLES, "debezium", SECRETS)
    names = config["converters"].split(",")
    assert [config[f"{n}.type"] for n in names] == ["local.pgmigration.converters.PostgresTextFormConverter"]
    # The converter's STRING reaches PostgreSQL as an untyped parameter only through this URL option.
    assert "stringtype=unspecified" in build_sink_config(NAMES, TARGET, ["public"], SECRETS)["connection.url"]


def test_no_password_in_any_config():
    source = build_source_config(NAMES, SOURCE, TABLES, "copy", SECRETS)
    sink = build_sink_config(NAMES, TARGET, ["public", "sales"], SECRETS)
    assert "s3cret" not in repr(source) + repr(sink)
    assert source["database.password"] == "${file:/secrets/pgmigrate-shop-2026.properties:source.password}"
    assert sink["connection.password"] == "${file:/secrets/pgmigrate-shop-2026.properties:target.password}"


def test_table_include_list_escapes_names_and_adds_the_heartbeat_and_signal_tables():
    config = build_source_config(NAMES, SOURCE, TABLES, "copy", SECRETS)
    patterns = config["table.include.list"].split(",")
    assert patterns[-2:] == [r"pgmigrate\.heartbeat_shop_2026", r"pgmigrate\.signal_shop_2026"]
    assert config["signal.data.collection"] == "pgmigrate.signal_shop_2026"
    assert re.fullmatch(table_include_regex(TableRef("sales", "a.b")), "sales.a.b")
    assert not re.fullmatch(table_include_regex(TableRef("sales", "a.b")), "sales.aXb")


def test_sink_topics_regex_takes_data_and_heartbeat_table_topics_only():
    regex = re.compile(sink_topics_regex(NAMES, ["public", "sales"]))
    assert regex.fullmatch("pgmigrate_shop_2026.public.orders")
    assert regex.fullmatch("pgmigrate_shop_2026.sales.a.b")
    assert regex.fullmatch("pgmigrate_shop_2026.pgmigrate.heartbeat_shop_2026")
    assert not regex.fullmatch("__debezium-heartbeat.pgmigrate_shop_2026")
    assert not regex.fullmatch("pgmigrate_shop_2027.public.orders")
    assert not regex.fullmatch("pgmigrate_shop_2026.other.orders")


def test_sink_upserts_by_key_into_quoted_same_named_tables():
    sink = build_sink_config(NAMES, TARGET, ["public"], SECRETS)
    assert (sink["insert.mode"], sink["primary.key.mode"], sink["delete.enabled"]) == ("upsert", "record_key", "true")
    assert sink["collection.name.format"] == '"${source.schema}"."${source.table}"'
    assert sink["quote.identifiers"] == "true"
    assert sink["schema.evolution"] == "none"
    assert "stringtype=unspecified" in sink["connection.url"]
    assert "session_replication_role%3Dreplica" in sink["connection.url"]
    assert "reWriteBatchedInserts" not in sink["connection.url"]


def test_reverse_names_never_collide_with_the_forward_ones_and_fit_postgres_limits():
    from pgmigrate.naming import MigrationNames

    forward = MigrationNames("a" * 41)
    reverse = forward.reversed()
    assert reverse.reversed() == forward
    for attr in ("slot", "publication", "native_subscription", "source_connector", "sink_connector",
                 "topic_prefix", "heartbeat_table", "secrets_file"):  # fmt: skip
        assert getattr(forward, attr) != getattr(reverse, attr), attr
    assert max(len(reverse.slot), len(reverse.native_subscription), len(forward.native_subscription)) <= 63
    assert MigrationNames("shop-1").reversed().source_connector == "pgmigrate-shop-1-reverse-source"


def test_resync_signal_and_its_progress_in_the_offsets():
    import json

    from pgmigrate.resync import DONE, NOT_STARTED, RUNNING, execute_snapshot_signal, lsn_to_int, resync_phase

    signal = execute_snapshot_signal([TableRef("sales", "Order Items")])
    assert signal["type"] == "execute-snapshot"
    assert json.loads(signal["data"]) == {"data-collections": [r"sales\.Order\ Items"], "type": "incremental"}
    assert lsn_to_int("1/10") == (1 << 32) + 16
    at = lsn_to_int("0/3000")
    assert resync_phase([], "0/3000") == NOT_STARTED
    assert resync_phase([], None) == DONE  # only native-channel tables: no Debezium snapshot to wait for
    assert resync_phase([{"offset": {"lsn": at - 1}}], "0/3000") == NOT_STARTED
    running = {"lsn": at + 5, "incremental_snapshot_collections": "[...]", "incremental_snapshot_primary_key": "x"}
    assert resync_phase([{"offset": running}], "0/3000") == RUNNING
    assert resync_phase([{"offset": {"lsn": at + 9, "lsn_commit": at + 9}}], "0/3000") == DONE
