"""Kafka Connect configurations of a migration's Debezium PostgreSQL source and JDBC sink.

Pure functions of the migration's names, endpoints and tables. Every non-obvious key says why it
has its value (the traps of Debezium 3.6 PostgreSQL -> JDBC sink are listed in the README).
Passwords never appear: they are `${file:…}` references that Connect's file config provider
resolves on the worker.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pgmigrate.catalog import CONTROL_SCHEMA, TableRef
from pgmigrate.endpoints import PgEndpoint
from pgmigrate.heartbeat import heartbeat_action_query, heartbeat_table
from pgmigrate.naming import MigrationNames

SOURCE_CLASS = "io.debezium.connector.postgresql.PostgresConnector"
SINK_CLASS = "io.debezium.connector.jdbc.JdbcSinkConnector"

# include/converters, installed into the Debezium PostgreSQL plugin dir by scripts/install.sh.
TEXT_FORM_CONVERTER = "local.pgmigration.converters.PostgresTextFormConverter"

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


def signal_table(names: MigrationNames) -> TableRef:
    """Debezium's signal table on the source (incremental snapshots for `pg_migration_resync`)."""
    return TableRef(CONTROL_SCHEMA, names.signal_table)


def table_include_regex(table: TableRef) -> str:
    """Debezium matches `schema.table` against anchored regexes: escape every character."""
    return f"{re.escape(table.schema)}\\.{re.escape(table.name)}"


def build_source_config(
    names: MigrationNames,
    source: PgEndpoint,
    tables: list[TableRef],
    snapshot_method: str,
    secrets: SecretRefs,
) -> dict[str, str]:
    captured = [*tables, heartbeat_table(names), signal_table(names)]
    return {
        "connector.class": SOURCE_CLASS,
        "tasks.max": "1",
        "database.hostname": source.host,
        "database.port": str(source.port),
        "database.user": source.user,
        "database.password": secrets.source_password,
        "database.dbname": source.dbname,
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
        # An UPDATE that does not touch a TOASTed column carries `__debezium_unavailable_value` instead of the
        # value, and the JDBC sink would write that placeholder as data. The reselector reads such columns back
        # from the source by primary key (one indexed SELECT per affected event; no extra WAL, unlike
        # REPLICA IDENTITY FULL, which cost ~160x the WAL for 32 kB rows in our measurement).
        "post.processors": "reselector",
        "post.processors.reselector.type": "io.debezium.processors.reselect.ReselectColumnsPostProcessor",
        "post.processors.reselector.reselect.unavailable.values": "true",
        "post.processors.reselector.reselect.null.values": "false",
        # Signals (an incremental snapshot to resync tables) arrive as rows of this table, read from the WAL.
        "signal.data.collection": f"{CONTROL_SCHEMA}.{names.signal_table}",
        "signal.enabled.channels": "source",
        # Fail fast: a record the pipeline cannot handle stops the connector (never skipped silently).
        "errors.tolerance": "none",
        "event.processing.failure.handling.mode": "fail",
    }


def sink_topics_regex(names: MigrationNames, schemas: list[str]) -> str:
    """Data topics of the migrated schemas plus the heartbeat table's topic; never Debezium's own
    heartbeat topic (`__debezium-heartbeat.*`) or anything of another migration."""
    schema_alt = "|".join(re.escape(s) for s in [*schemas, CONTROL_SCHEMA])
    return f"{re.escape(names.topic_prefix)}\\.({schema_alt})\\..+"


def dead_letter_config(names: MigrationNames, replication_factor: int = 1) -> dict[str, str]:
    """The sink's keys for `dead_letter=true`: a record the sink cannot take goes, with Connect's error headers
    (`__connect.errors.topic`, `.exception.message`, …), to the migration's DLQ topic and the sink keeps
    applying the rest. Never silent: any record there is a P0 alert and blocks cutover (pgmigrate.dead_letters).
    Measured on Debezium 3.6.0.Final: Connect dead-letters what fails in its converters and transforms, but a
    row the target itself rejects (a constraint) still FAILs the task, because this JDBC sink does not hand
    write failures to Connect's errant record reporter (upstream debezium/dbz#984 adds that); the monitor then
    moves that row to the same topic itself (pgmigrate.dead_letter_quarantine). Replication factor 1 suits
    the single-broker local stack; use 3 on a production cluster."""
    return {
        "errors.tolerance": "all",
        "errors.deadletterqueue.topic.name": names.dead_letter_topic,
        "errors.deadletterqueue.context.headers.enable": "true",
        "errors.deadletterqueue.topic.replication.factor": str(replication_factor),
        # The worker log names each tolerated record too (not its values: they may hold personal data).
        "errors.log.enable": "true",
    }


def build_sink_config(
    names: MigrationNames,
    target: PgEndpoint,
    schemas: list[str],
    secrets: SecretRefs,
    dead_letter: bool = False,
) -> dict[str, str]:
    """`dead_letter=False` (the default) is fail-fast: a record the target rejects FAILs the sink (a P0)."""
    config = {
        "connector.class": SINK_CLASS,
        "tasks.max": "1",
        "topics.regex": sink_topics_regex(names, schemas),
        # stringtype=unspecified: PostgreSQL casts the sink's text parameters to the column's real type.
        # session_replication_role=replica: like built-in logical replication, the target's triggers and
        # FK checks do not fire for replicated rows (their effects arrive from the source themselves), so
        # changes of different tables applied in topic order never trip a foreign key.
        # ApplicationName: the cutover's fence tells the platform's own sessions from an application's by it.
        "connection.url": target.jdbc_url()
        + "&options=-c%20session_replication_role%3Dreplica&ApplicationName=pgmigrate-sink",
        "connection.username": target.user,
        "connection.password": secrets.target_password,
        # Upsert by primary key: a replayed event (after a crash) converges instead of failing.
        "insert.mode": "upsert",
        "primary.key.mode": "record_key",
        "delete.enabled": "true",
        "truncate.enabled": "true",
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
        config.update(dead_letter_config(names))
    return config
