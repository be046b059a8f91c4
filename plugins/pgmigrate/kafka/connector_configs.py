"""Kafka Connect configurations of a migration's Debezium PostgreSQL source and JDBC sink.

Pure functions of the migration's names, endpoints and tables. Every non-obvious key says why it
has its value (the traps of Debezium 3.6 PostgreSQL -> JDBC sink are listed in the README).
Passwords never appear: they are `${file:…}` references that Connect's file config provider
resolves on the worker.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import quote

from pgmigrate.core.catalog import CONTROL_SCHEMA, TableInfo, TableRef
from pgmigrate.core.endpoints import PIPELINE_SESSION_SETTINGS, PgEndpoint, session_options
from pgmigrate.core.naming import MigrationNames, sanitized_topic_name
from pgmigrate.kafka.key_partitioning import CONFIG_KEY as PARTITIONING_CONFIG_KEY
from pgmigrate.kafka.key_partitioning import PARTITIONED_SINK_CLASS, PARTITIONED_SOURCE_CLASS, KeyHashPartitioning
from pgmigrate.kafka.topic_settings import TopicSettings
from pgmigrate.stream.heartbeat import heartbeat_action_query, heartbeat_table

SOURCE_CLASS = "io.debezium.connector.postgresql.PostgresConnector"
SINK_CLASS = "io.debezium.connector.jdbc.JdbcSinkConnector"

# include/converters, installed into the Debezium PostgreSQL plugin dir by scripts/install.sh.
TEXT_FORM_CONVERTER = "local.pgmigration.converters.PostgresTextFormConverter"
TOAST_RESELECTOR = "local.pgmigration.converters.ToastReselector"
DROP_VANISHED_ROW_UPDATES = "local.pgmigration.converters.DropVanishedRowUpdates"
CHANGE_EVENT_SIZE_GUARD = "local.pgmigration.converters.ChangeEventSizeGuard"
LARGE_VALUE_JSON_CONVERTER = "local.pgmigration.sink.LargeValueJsonConverter"
TRUNCATE_STATEMENT_INSPECTOR = "local.pgmigration.sink.TruncateStatementInspector"

# The largest change event (one row as JSON with schemas, before and after images, base64 for bytea) the producer,
# the change topics and the sink carry: >= 16 MiB of column data for every type, even bytea under REPLICA IDENTITY
# FULL (2 images x 4/3). Below the brokers' default socket.request.max.bytes (100 MiB). ChangeEventSizeGuard fails a
# larger one naming its table and key (the producer's own RecordTooLargeException names neither).
MAX_CHANGE_EVENT_BYTES = 64 * 1024 * 1024
# What an UPDATE carries for a TOASTed column it did not change, until ToastReselector refills it. Not Debezium's
# default `__debezium_unavailable_value`: a change that still holds it after the re-select is dropped (its row is
# gone), so it must be a string no application stores.
UNAVAILABLE_VALUE_PLACEHOLDER = "__pgmigrate_unchanged_toast_5c0f9e27__"

SNAPSHOT_MODES = {
    # `copy`: the initial data was loaded by COPY under the slot's exported snapshot; stream from the
    # slot's consistent point only.
    "copy": "no_data",
    # `debezium`: the connector reads every existing row itself, then streams.
    "debezium": "initial",
}


@dataclass(frozen=True)
class SecretRefs:
    """`${file:…}` references to the passwords, in a properties file on the Connect worker."""

    path: str

    @property
    def source_password(self) -> str:
        return f"${{file:{self.path}:source.password}}"

    @property
    def target_password(self) -> str:
        return f"${{file:{self.path}:target.password}}"


@dataclass(frozen=True)
class WorkerSecretRefs:
    """`${dir:…}` references (Kafka's DirectoryConfigProvider) to files every Connect worker has itself, one per
    database role (`kafka.connect_secrets.worker_secret_key`): the platform writes no password anywhere."""

    directory: str
    source_key: str
    target_key: str

    @property
    def source_password(self) -> str:
        return f"${{dir:{self.directory}:{self.source_key}}}"

    @property
    def target_password(self) -> str:
        return f"${{dir:{self.directory}:{self.target_key}}}"


PasswordRefs = SecretRefs | WorkerSecretRefs


def signal_table(names: MigrationNames) -> TableRef:
    """Debezium's signal table on the source (incremental snapshots for `pg_migration_resync`)."""
    return TableRef(CONTROL_SCHEMA, names.signal_table)


def table_include_regex(table: TableRef) -> str:
    """Debezium matches `schema.table` against anchored regexes: escape every character."""
    return f"{re.escape(table.schema)}\\.{re.escape(table.name)}"


def stored_generated_columns(tables: Iterable[TableInfo]) -> list[tuple[TableRef, str]]:
    """The tables' stored generated columns: the target computes its own values (and refuses given ones)."""
    return [(t.ref, c.name) for t in tables for c in t.columns if c.generated == "s"]


def column_exclude_regex(table: TableRef, column: str) -> str:
    """Debezium matches `schema.table.column` against anchored regexes: escape every character."""
    return f"{table_include_regex(table)}\\.{re.escape(column)}"


def build_source_config(
    names: MigrationNames,
    source: PgEndpoint,
    tables: list[TableRef],
    snapshot_method: str,
    secrets: PasswordRefs,
    generated_columns: Sequence[tuple[TableRef, str]] = (),
    *,
    topics: TopicSettings,
    partitioning: KeyHashPartitioning | None = None,
) -> dict[str, str]:
    """`topics`: how Connect creates the change topics (the Kafka cluster connection's settings).
    `partitioning`: with more than one partition per change topic, the key-hash partitioned source
    (`kafka.key_partitioning`).
    `generated_columns`: the tables' stored generated columns (`stored_generated_columns`), left out of every
    event. pgoutput never streams them, but Debezium's snapshots (the `debezium` method's initial one, and the
    incremental ones of resync, recover, schema sync and `dlq --resync`) read them with SELECT, and the sink
    cannot write a generated column."""
    captured = [*tables, heartbeat_table(names), signal_table(names)]
    config = {
        "connector.class": SOURCE_CLASS,
        "tasks.max": "1",
        "database.hostname": source.host,
        "database.port": str(source.port),
        "database.user": source.user,
        "database.password": secrets.source_password,
        "database.dbname": source.dbname,
        # The source's database or role timeouts must not end the connector's JDBC sessions (its snapshot's long
        # SELECTs, the re-selects, the heartbeat): off for these sessions only.
        "database.initial.statements": ";".join(f"SET {name} = {value}" for name, value in PIPELINE_SESSION_SETTINGS),
        "topic.prefix": names.topic_prefix,
        "plugin.name": "pgoutput",
        "slot.name": names.slot,
        # The migration creates the publication itself, before the slot (pgoutput needs it to exist
        # at the slot's consistent point) and for exactly the selected tables.
        "publication.name": names.publication,
        "publication.autocreate.mode": "disabled",
        # Keep the slot when the connector stops or restarts: the position must survive.
        "slot.drop.on.stop": "false",
        "snapshot.mode": SNAPSHOT_MODES[snapshot_method],
        # Partitioned tables appear by their root only (the publication publishes via the root).
        "table.include.list": ",".join(table_include_regex(t) for t in captured),
        # The default skips TRUNCATE; the sink applies it (truncate.enabled).
        "skipped.operations": "none",
        # Debezium's own conversions alter float NaN/±Infinity/-0, numeric ±Infinity, infinity and BC
        # dates/timestamps, bit widths, hstore, and enum/numeric/multi-dimensional arrays. For those columns the
        # converter emits PostgreSQL's text form as a STRING, which the sink binds untyped (stringtype=unspecified),
        # so the target parses it into the column's real type: the same value as on the source. It takes precedence
        # over the *.handling.mode keys below for the columns it converts.
        "converters": "pgtext",
        "pgtext.type": TEXT_FORM_CONVERTER,
        # numeric columns the converter does not take (domains over numeric): as text, not a lossy double.
        "decimal.handling.mode": "string",
        # `numeric` would turn '1 mon' into seconds; the string form is lossless.
        "interval.handling.mode": "string",
        # `connect` would truncate time values to milliseconds.
        "time.precision.mode": "adaptive_time_microseconds",
        "binary.handling.mode": "bytes",
        "hstore.handling.mode": "json",
        # The sink binds values by the source's column type (jsonb, inet, ranges, enums), not as plain text.
        "column.propagate.source.type": ".*",
        # `false` would silently drop columns of unknown types (the target would get NULL); `true` makes such a
        # column fail loudly, and preflight refuses those types before anything is deployed.
        "include.unknown.datatypes": "true",
        # The JDBC sink applies deletes from the delete event itself; tombstones would only add noise.
        "tombstones.on.delete": "false",
        # Every second, write the heartbeat row on the source; its copy on the target gives end-to-end lag,
        # and the write keeps the slot advancing when the migrated tables are idle.
        "heartbeat.interval.ms": "1000",
        # How long the connector waits for more changes before handing a batch to Connect (default 500 ms): the
        # cutover's drain waits for a heartbeat to pass through, so this wait is inside the client-write pause.
        "poll.interval.ms": "50",
        "heartbeat.action.query": heartbeat_action_query(names),
        "topic.heartbeat.prefix": "__debezium-heartbeat",
        # An UPDATE that does not touch a TOASTed column carries a placeholder instead of the value (the converter
        # turns Debezium's marker into it too), and the JDBC sink would write that placeholder as data. ToastReselector
        # reads such columns back from the source by key before the event reaches Kafka (one indexed SELECT per
        # affected event; no extra WAL, unlike REPLICA IDENTITY FULL, ~160x the WAL for 32 kB rows as we measured).
        # A database error fails the event (retriable: the connector restarts and re-selects); a row that no longer
        # exists keeps its placeholder and dropVanishedRows drops the change (a later delete removes the row).
        # Debezium's own ReselectColumnsPostProcessor is not used: it leaves unquoted key names in its SELECT and
        # sends the placeholder on when the re-select fails.
        "unchanged.toast.value.placeholder": UNAVAILABLE_VALUE_PLACEHOLDER,
        "pgtext.unavailable.value.placeholder": UNAVAILABLE_VALUE_PLACEHOLDER,
        "post.processors": "toastReselector",
        "post.processors.toastReselector.type": TOAST_RESELECTOR,
        "transforms": "dropVanishedRows,sizeGuard",
        "transforms.dropVanishedRows.type": DROP_VANISHED_ROW_UPDATES,
        "transforms.dropVanishedRows.placeholder": UNAVAILABLE_VALUE_PLACEHOLDER,
        "transforms.sizeGuard.type": CHANGE_EVENT_SIZE_GUARD,
        "transforms.sizeGuard.max.bytes": str(MAX_CHANGE_EVENT_BYTES),
        # Rows up to MAX_CHANGE_EVENT_BYTES: the producer's request limit (1 MiB by default), its buffer (which must
        # hold one such record), the change topics' message limit (created by Connect with these settings and the
        # replicas, partitions and retention of `topics`), and compressed batches (JSON with schemas shrinks ~10x).
        "producer.override.max.request.size": str(MAX_CHANGE_EVENT_BYTES),
        "producer.override.buffer.memory": str(2 * MAX_CHANGE_EVENT_BYTES),
        "producer.override.compression.type": "lz4",
        **topics.source_connector_keys(),
        "topic.creation.default.max.message.bytes": str(MAX_CHANGE_EVENT_BYTES + 1024 * 1024),
        # Bound the connector's in-memory queue by bytes too (by default only by count, 8192 events): a burst of
        # large rows must not exhaust the worker's heap.
        "max.queue.size.in.bytes": str(4 * MAX_CHANGE_EVENT_BYTES),
        # Signals (an incremental snapshot to resync tables) arrive as rows of this table, read from the WAL.
        "signal.data.collection": f"{CONTROL_SCHEMA}.{names.signal_table}",
        "signal.enabled.channels": "source",
        # Fail fast: a record the pipeline cannot handle stops the connector (never skipped silently).
        "errors.tolerance": "none",
        "event.processing.failure.handling.mode": "fail",
    }
    if generated_columns:
        config["column.exclude.list"] = ",".join(column_exclude_regex(t, c) for t, c in generated_columns)
    if partitioning is not None and partitioning.spread:
        config["connector.class"] = PARTITIONED_SOURCE_CLASS
        config[PARTITIONING_CONFIG_KEY] = partitioning.config_value()
        config["topic.creation.default.partitions"] = str(partitioning.partitions)
    return config


def sink_topics_regex(names: MigrationNames, schemas: list[str]) -> str:
    """Data topics of the migrated schemas plus the heartbeat table's topic; never Debezium's own
    heartbeat topic (`__debezium-heartbeat.*`) or anything of another migration. The schemas as they appear in
    topic names: Debezium replaces what a topic cannot hold (a space, a quote, `É`) with `_`."""
    schema_alt = "|".join(re.escape(sanitized_topic_name(s)) for s in dict.fromkeys([*schemas, CONTROL_SCHEMA]))
    return f"{re.escape(names.topic_prefix)}\\.({schema_alt})\\..+"


def dead_letter_config(names: MigrationNames, topics: TopicSettings) -> dict[str, str]:
    """The sink's keys for `dead_letter=true`: a record the sink cannot take goes, with Connect's error headers
    (`__connect.errors.topic`, `.exception.message`, …), to the migration's DLQ topic and the sink keeps
    applying the rest. Never silent: any record there is a P0 alert and blocks cutover
    (pgmigrate.recovery.dead_letters).
    Measured on Debezium 3.6.0.Final: Connect dead-letters what fails in its converters and transforms, but a
    row the target itself rejects (a constraint) still FAILs the task, because this JDBC sink does not hand
    write failures to Connect's errant record reporter (upstream debezium/dbz#984 adds that); the monitor then
    moves that row to the same topic itself (pgmigrate.recovery.dead_letter_quarantine). The deploy creates the
    topic first with the change topics' settings (`kafka.topic_admin.TopicAdmin`); the replication
    factor here is for Connect creating it again if it is deleted while the sink runs."""
    return {
        "errors.tolerance": "all",
        "errors.deadletterqueue.topic.name": names.dead_letter_topic,
        "errors.deadletterqueue.context.headers.enable": "true",
        "errors.deadletterqueue.topic.replication.factor": str(topics.replication_factor),
        # The worker log names each tolerated record too (not its values: they may hold personal data).
        "errors.log.enable": "true",
    }


def build_sink_config(
    names: MigrationNames,
    target: PgEndpoint,
    schemas: list[str],
    secrets: PasswordRefs,
    dead_letter: bool = False,
    *,
    topics: TopicSettings,
    partitioning: KeyHashPartitioning | None = None,
) -> dict[str, str]:
    """`dead_letter=False` (the default) is fail-fast: a record the target rejects FAILs the sink (a P0).
    `topics`: the Kafka cluster connection's settings, for the dead-letter topic. `partitioning`: with more than
    one partition per change topic, one sink task per partition, which carry out a spread table's TRUNCATE
    partition by partition (`kafka.key_partitioning`)."""
    config = {
        "connector.class": SINK_CLASS,
        "tasks.max": "1",
        "topics.regex": sink_topics_regex(names, schemas),
        # stringtype=unspecified: PostgreSQL casts the sink's text parameters to the column's real type.
        # session_replication_role=replica: like built-in logical replication, the target's triggers and
        # FK checks do not fire for replicated rows (their effects arrive from the source themselves), so
        # changes of different tables applied in topic order never trip a foreign key.
        # ApplicationName: the cutover's fence tells the platform's own sessions from an application's by it.
        # The target's database or role timeouts are off for the sink's sessions (its pool keeps them idle).
        "connection.url": target.jdbc_url()
        + "&options="
        + quote(session_options((("session_replication_role", "replica"), *PIPELINE_SESSION_SETTINGS)), safe="")
        + "&ApplicationName=pgmigrate-sink",
        "connection.username": target.user,
        "connection.password": secrets.target_password,
        # Upsert by primary key: a replayed event (after a crash) converges instead of failing.
        "insert.mode": "upsert",
        "primary.key.mode": "record_key",
        "delete.enabled": "true",
        # A source TRUNCATE empties the target table at the same point of its topic. The sink truncates one table
        # per event, which PostgreSQL refuses for a table a foreign key references: the inspector makes that one
        # a DELETE (FK triggers do not fire under replica; the referencing table's own truncate event follows).
        "truncate.enabled": "true",
        "hibernate.session_factory.statement_inspector": TRUNCATE_STATEMENT_INSPECTOR,
        # The target tables are created by `copy_schema`; the sink must never alter them.
        "schema.evolution": "none",
        # Write into the same schema.table as the source. The format itself is quoted (a name with a space
        # breaks the sink's table-name parser otherwise) and so are the columns: mixed case and reserved words survive.
        "collection.name.format": '"${source.schema}"."${source.table}"',
        "quote.identifiers": "true",
        "use.time.zone": "UTC",
        # No reWriteBatchedInserts on the URL: with it, a batch that updates one key twice fails
        # ("ON CONFLICT DO UPDATE command cannot affect row a second time").
        "batch.size": "1000",
        "consumer.override.auto.offset.reset": "earliest",
        "consumer.override.max.poll.records": "2000",
        # Kafka's JsonConverter reads no JSON string past 20,000,000 characters (its Jackson's default): a 20 MiB
        # text or a 15 MiB bytea failed the sink. This one raises the limit above MAX_CHANGE_EVENT_BYTES.
        "value.converter": LARGE_VALUE_JSON_CONVERTER,
        "value.converter.schemas.enable": "true",
        # One partition's fetch may hold a change event of up to MAX_CHANGE_EVENT_BYTES (a larger first batch is
        # returned anyway; this keeps the next ones from being fetched one at a time).
        "consumer.override.max.partition.fetch.bytes": str(MAX_CHANGE_EVENT_BYTES),
        # A regex subscription sees topics created after the sink started only at the next metadata refresh
        # (default 5 min); refresh every 5 s so a new table's first changes are applied promptly.
        "consumer.override.metadata.max.age.ms": "5000",
        # Debezium marks a primary-key change with key headers the JsonConverter cannot serialize for the sink.
        "transforms": "dropKeyHeaders",
        "transforms.dropKeyHeaders.type": "org.apache.kafka.connect.transforms.DropHeaders",
        "transforms.dropKeyHeaders.headers": "__debezium.oldkey,__debezium.newkey",
        # Fail fast: a record the target cannot take stops the sink (FAILED -> P0), never skipped silently.
        "errors.tolerance": "none",
    }
    if dead_letter:
        config.update(dead_letter_config(names, topics))
    if partitioning is not None and partitioning.spread:
        config["connector.class"] = PARTITIONED_SINK_CLASS
        config[PARTITIONING_CONFIG_KEY] = partitioning.config_value()
        # Partition i of every topic goes to task i (Connect's range assignor, equal partition counts).
        config["tasks.max"] = str(partitioning.partitions)
    return config
