"""Connector configs are pure functions of the migration: check the keys that carry a decision."""

import re

import pytest

from pgmigrate.core.catalog import TableRef
from pgmigrate.core.endpoints import PgEndpoint
from pgmigrate.core.naming import MigrationNames
from pgmigrate.kafka.connector_configs import (
    SecretRefs,
    build_sink_config,
    build_source_config,
    sink_topics_regex,
    table_include_regex,
)
from pgmigrate.kafka.topic_settings import TopicSettings

pytestmark = pytest.mark.unit

NAMES = MigrationNames("shop-2026")
SOURCE = PgEndpoint("db1", 5432, "shop", "migrator", "s3cret")
TARGET = PgEndpoint("db2", 5432, "shop", "migrator", "s3cret")
SECRETS = SecretRefs("/secrets/pgmigrate-shop-2026.properties")
TOPICS = TopicSettings(replication_factor=1, min_insync_replicas=1)  # the single-broker local stack
TABLES = [TableRef("public", "orders"), TableRef("public", "Order Items"), TableRef("sales", "a.b")]


def test_source_config_streams_from_our_slot_and_publication():
    config = build_source_config(NAMES, SOURCE, TABLES, "copy", SECRETS, topics=TOPICS)
    assert config["slot.name"] == "pgmigrate_shop_2026" == config["publication.name"]
    assert config["publication.autocreate.mode"] == "disabled"
    assert config["snapshot.mode"] == "no_data"
    assert build_source_config(NAMES, SOURCE, TABLES, "debezium", SECRETS, topics=TOPICS)["snapshot.mode"] == "initial"
    assert config["slot.drop.on.stop"] == "false"
    assert config["plugin.name"] == "pgoutput"


def test_lossless_representations():
    config = build_source_config(NAMES, SOURCE, TABLES, "copy", SECRETS, topics=TOPICS)
    assert config["decimal.handling.mode"] == "string"
    assert config["interval.handling.mode"] == "string"
    assert config["time.precision.mode"] == "adaptive_time_microseconds"
    assert config["skipped.operations"] == "none"
    assert config["post.processors.toastReselector.type"] == "local.pgmigration.converters.ToastReselector"


def test_one_placeholder_for_the_connector_the_converter_and_the_drop_transform():
    """ToastReselector reads the connector's placeholder; the converter and the transform must use the same."""
    config = build_source_config(NAMES, SOURCE, TABLES, "copy", SECRETS, topics=TOPICS)
    placeholder = config["unchanged.toast.value.placeholder"]
    assert placeholder != "__debezium_unavailable_value"  # dropped when left over: never a plausible value
    assert config["pgtext.unavailable.value.placeholder"] == placeholder
    assert config["transforms"].split(",")[0] == "dropVanishedRows"
    assert config["transforms.dropVanishedRows.placeholder"] == placeholder


def test_producer_topics_and_guard_agree_on_the_largest_change_event():
    """A row up to the documented limit must pass the guard, the producer and the topic; the sink's fetch too."""
    source = build_source_config(NAMES, SOURCE, TABLES, "copy", SECRETS, topics=TOPICS)
    limit = int(source["transforms.sizeGuard.max.bytes"])
    assert limit >= 3 * 16 * 1024 * 1024  # 16 MiB of bytea under REPLICA IDENTITY FULL: two images, base64
    assert "sizeGuard" in source["transforms"].split(",")
    assert int(source["producer.override.max.request.size"]) == limit
    assert int(source["producer.override.buffer.memory"]) > limit
    assert int(source["topic.creation.default.max.message.bytes"]) > limit
    assert int(source["max.queue.size.in.bytes"]) > limit
    sink = build_sink_config(NAMES, TARGET, ["public"], SECRETS, topics=TOPICS)
    assert int(sink["consumer.override.max.partition.fetch.bytes"]) >= limit
    # Kafka's own JsonConverter cannot read a string past 20,000,000 characters.
    assert sink["value.converter"] == "local.pgmigration.sink.LargeValueJsonConverter"


def test_text_form_converter_carries_the_values_debezium_alters():
    config = build_source_config(NAMES, SOURCE, TABLES, "debezium", SECRETS, topics=TOPICS)
    names = config["converters"].split(",")
    assert [config[f"{n}.type"] for n in names] == ["local.pgmigration.converters.PostgresTextFormConverter"]
    # The converter's STRING reaches PostgreSQL as an untyped parameter only through this URL option.
    assert (
        "stringtype=unspecified"
        in build_sink_config(NAMES, TARGET, ["public"], SECRETS, topics=TOPICS)["connection.url"]
    )


def test_no_password_in_any_config():
    source = build_source_config(NAMES, SOURCE, TABLES, "copy", SECRETS, topics=TOPICS)
    sink = build_sink_config(NAMES, TARGET, ["public", "sales"], SECRETS, topics=TOPICS)
    assert "s3cret" not in repr(source) + repr(sink)
    assert source["database.password"] == "${file:/secrets/pgmigrate-shop-2026.properties:source.password}"
    assert sink["connection.password"] == "${file:/secrets/pgmigrate-shop-2026.properties:target.password}"


def test_table_include_list_escapes_names_and_adds_the_heartbeat_and_signal_tables():
    config = build_source_config(NAMES, SOURCE, TABLES, "copy", SECRETS, topics=TOPICS)
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
    sink = build_sink_config(NAMES, TARGET, ["public"], SECRETS, topics=TOPICS)
    assert (sink["insert.mode"], sink["primary.key.mode"], sink["delete.enabled"]) == ("upsert", "record_key", "true")
    assert sink["collection.name.format"] == '"${source.schema}"."${source.table}"'
    assert sink["quote.identifiers"] == "true"
    assert sink["schema.evolution"] == "none"
    assert "stringtype=unspecified" in sink["connection.url"]
    assert "session_replication_role%3Dreplica" in sink["connection.url"]
    assert "reWriteBatchedInserts" not in sink["connection.url"]


def test_reverse_names_never_collide_with_the_forward_ones_and_fit_postgres_limits():
    from pgmigrate.core.naming import MigrationNames

    forward = MigrationNames("a" * 41)
    reverse = forward.reversed()
    assert reverse.reversed() == forward
    for attr in (
        "slot",
        "publication",
        "native_subscription",
        "source_connector",
        "sink_connector",
        "topic_prefix",
        "heartbeat_table",
        "secrets_file",
    ):
        assert getattr(forward, attr) != getattr(reverse, attr), attr
    assert max(len(reverse.slot), len(reverse.native_subscription), len(forward.native_subscription)) <= 63
    assert MigrationNames("shop-1").reversed().source_connector == "pgmigrate-shop-1-reverse-source"


def test_resync_signal_and_its_progress_in_the_offsets():
    import json

    from pgmigrate.stream.resync import DONE, NOT_STARTED, RUNNING, execute_snapshot_signal, lsn_to_int, resync_phase

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


def test_sink_truncates_through_the_statement_inspector():
    """The inspector turns the sink's TRUNCATE of a table a foreign key references into a DELETE."""
    config = build_sink_config(NAMES, SOURCE, ["public"], SECRETS, topics=TOPICS)
    assert config["truncate.enabled"] == "true"
    inspector = config["hibernate.session_factory.statement_inspector"]
    assert inspector == "local.pgmigration.sink.TruncateStatementInspector"


def test_stored_generated_columns_are_left_out_of_every_event():
    """Debezium's snapshots SELECT them and the sink cannot write them; pgoutput never streams them anyway."""
    from pgmigrate.core.catalog import Column, TableInfo
    from pgmigrate.kafka.connector_configs import stored_generated_columns

    def column(name: str, generated: str = "") -> Column:
        return Column(
            name=name,
            type_name="int4",
            type_oid=23,
            type_kind="b",
            element_oid=None,
            element_kind=None,
            identity="",
            generated=generated,
            not_null=False,
            toastable=False,
        )

    table = TableInfo(
        TableRef("Sales Dept", "orders.v2"), "r", ["id"], "d", False, [column("id"), column("total (net)", "s")]
    )
    generated = stored_generated_columns([table])
    assert generated == [(TableRef("Sales Dept", "orders.v2"), "total (net)")]
    config = build_source_config(NAMES, SOURCE, [table.ref], "debezium", SECRETS, generated, topics=TOPICS)
    pattern = config["column.exclude.list"]
    assert re.fullmatch(pattern, "Sales Dept.orders.v2.total (net)")
    assert not re.fullmatch(pattern, "Sales Dept.orders.v2.id")
    assert "column.exclude.list" not in build_source_config(
        NAMES, SOURCE, [table.ref], "debezium", SECRETS, topics=TOPICS
    )


def test_the_sink_subscribes_to_the_topics_debezium_names_for_odd_schemas():
    """Debezium writes schema `Ventes "Été"` as `Ventes___t__` in topic names; the sink's regex must match that."""
    sink = build_sink_config(NAMES, TARGET, ['Ventes "Été"', "public"], SECRETS, topics=TOPICS)
    topic = NAMES.change_topic('Ventes "Été"', "Lignes spéciales")
    assert topic == f"{NAMES.topic_prefix}.Ventes___t__.Lignes_sp_ciales"
    assert re.fullmatch(sink["topics.regex"], topic)
    assert re.fullmatch(sink["topics.regex"], NAMES.change_topic("public", "t"))
    assert not re.fullmatch(sink["topics.regex"], NAMES.change_topic("other", "t"))


def test_the_servers_session_timeouts_are_off_for_the_connectors_sessions():
    """A statement_timeout or idle timeout set on the database or role for the application must not end the
    connector's snapshot SELECTs and re-selects, or drop the sink's pooled connections."""
    source = build_source_config(NAMES, SOURCE, TABLES, "debezium", SECRETS, topics=TOPICS)
    statements = source["database.initial.statements"].split(";")
    assert statements == [
        "SET statement_timeout = 0",
        "SET idle_in_transaction_session_timeout = 0",
        "SET idle_session_timeout = 0",
    ]
    url = build_sink_config(NAMES, TARGET, ["public"], SECRETS, topics=TOPICS)["connection.url"]
    for name in ("statement_timeout", "idle_in_transaction_session_timeout", "idle_session_timeout"):
        assert f"-c%20{name}%3D0" in url


def test_worker_resolved_passwords_reference_each_role_file_and_write_nothing(tmp_path):
    """worker_secrets_dir: every Connect worker has one file per database role; the configs name it, no password."""
    from pgmigrate.kafka.connect_secrets import ConnectorSecrets, worker_secret_key

    secrets = ConnectorSecrets.from_extra({"worker_secrets_dir": "/mnt/pgmigrate", "secrets_dir": str(tmp_path)})
    refs = secrets.refs(NAMES, SOURCE, PgEndpoint("db-2.prod", 6543, "shop", "app user", "x"))
    assert refs.source_password == "${dir:/mnt/pgmigrate:db1_5432_migrator}"
    assert refs.target_password == "${dir:/mnt/pgmigrate:db-2.prod_6543_app_user}"  # a Kubernetes secret key
    assert list(tmp_path.iterdir()) == [], "nothing is written in the worker-resolved way"
    sink = build_sink_config(NAMES, TARGET, ["public"], refs, topics=TOPICS)
    source = build_source_config(NAMES, SOURCE, TABLES, "copy", refs, topics=TOPICS)
    assert sink["connection.password"] == refs.target_password and source["database.password"] == refs.source_password
    assert "s3cret" not in str(sink) + str(source)
    assert worker_secret_key(SOURCE) == "db1_5432_migrator"


def test_shared_secrets_dir_passwords_are_a_file_the_platform_writes(tmp_path):
    from pgmigrate.kafka.connect_secrets import ConnectorSecrets

    refs = ConnectorSecrets.from_extra({"secrets_dir": str(tmp_path)}).refs(NAMES, SOURCE, TARGET)
    written = tmp_path / NAMES.secrets_file
    assert refs.source_password == f"${{file:{written}:source.password}}"
    assert written.read_text() == "source.password=s3cret\ntarget.password=s3cret\n"
    assert (written.stat().st_mode & 0o777) == 0o600
    with pytest.raises(ValueError, match="neither `worker_secrets_dir` nor `secrets_dir`"):
        ConnectorSecrets.from_extra({}, "kafka_connect")


@pytest.mark.parametrize(
    "key, directory, worker_resolved",
    [("secrets_dir", "/stack/secrets", False), ("worker_secrets_dir", "/stack/worker-secrets", True)],
)
def test_the_local_stack_says_how_its_profile_resolves_connector_passwords(key, directory, worker_resolved):
    """scripts/stack.d/airflow.sh renders kafka_connect's extra per profile (single node: a shared file; cluster:
    each worker's own files), and the worker properties allow exactly those directories."""
    import json
    from pathlib import Path

    from pgmigrate.kafka.connect_secrets import ConnectorSecrets

    repo = Path(__file__).resolve().parents[2]
    rendered = (
        (repo / "include/stack/airflow-connections.json")
        .read_text()
        .replace("@CONNECT_SECRETS_KEY@", key)
        .replace("@CONNECT_SECRETS_DIR@", directory)
    )
    secrets = ConnectorSecrets.from_extra(json.loads(json.loads(rendered)["kafka_connect"]["extra"]))
    assert (secrets.worker_secrets_dir is not None) is worker_resolved
    worker = (repo / "include/stack/connect-distributed.properties").read_text()
    assert "config.providers.file.param.allowed.paths=@STATE@/secrets\n" in worker
    assert "config.providers.dir.param.allowed.paths=@STATE@/worker-secrets\n" in worker
