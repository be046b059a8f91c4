"""`deploy_connectors`: the Debezium source and JDBC sink, validated by Connect, deployed idempotently."""

from __future__ import annotations

from typing import Any

from pgmigrate.connect_secrets import write_secrets_file
from pgmigrate.connector_configs import (
    SINK_CLASS,
    SOURCE_CLASS,
    build_sink_config,
    build_source_config,
    stored_generated_columns,
)
from pgmigrate.hooks.kafka_connect import KafkaConnectHook
from pgmigrate.migration_tables import resolve_tables
from pgmigrate.native_replication import ensure_native_replication, split_by_channel
from pgmigrate.operators.base import MigrationOperator
from pgmigrate.pipeline_tables import ensure_own_tables, own_tables
from pgmigrate.publication import ensure_publication


class DeployConnectorsOperator(MigrationOperator):
    def __init__(self, *, kafka_connect_conn_id: str = "kafka_connect", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.kafka_connect_conn_id = kafka_connect_conn_id

    def execute(self, context: Any) -> dict:
        params = self.migration_params(context)
        names = params.names
        source, target = self.endpoint(params.source_conn_id), self.endpoint(params.target_conn_id)
        keyed, native = split_by_channel(resolve_tables(source, params))
        tables = [t.ref for t in keyed]

        # The `debezium` method reaches here with no slot yet: the publication must precede it.
        ensure_own_tables(source, target, names)
        ensure_publication(source, names.publication, [*tables, *own_tables(names)])

        hook = KafkaConnectHook(self.kafka_connect_conn_id)
        secrets = write_secrets_file(hook.secrets_dir(), names, source.password, target.password)
        source_config = build_source_config(
            names, source, tables, params.snapshot_method, secrets, stored_generated_columns(keyed)
        )
        sink_config = build_sink_config(names, target, list(params.schemas), secrets, params.dead_letter)

        hook.validate_or_raise(SOURCE_CLASS, source_config, name=names.source_connector)
        hook.validate_or_raise(SINK_CLASS, sink_config, name=names.sink_connector)
        # Sink first: it must exist before the source produces, or nothing is lost either way (topics keep
        # the records), but an operator watching Connect sees the whole pipeline at once.
        hook.create_or_update(names.sink_connector, sink_config)
        hook.create_or_update(names.source_connector, source_config)
        # Keyless and timetz tables: PostgreSQL's own logical replication carries them exactly (native_replication).
        native_state = ensure_native_replication(source, target, names, [t.ref for t in native])
        self.log.info(
            "deployed %s (slot %s, publication %s, %d tables, snapshot.mode=%s) and %s",
            names.source_connector,
            names.slot,
            names.publication,
            len(tables),
            source_config["snapshot.mode"],
            names.sink_connector,
        )
        self.record(
            params,
            "connectors_deployed",
            f"connectors {names.source_connector} and {names.sink_connector} deployed"
            + (
                f"; subscription {names.native_subscription} ({native_state}) replicates {len(native)} tables "
                f"natively: {', '.join(t.ref.qualified for t in native)}"
                if native
                else ""
            ),
            source_connector=names.source_connector,
            sink_connector=names.sink_connector,
            slot_name=names.slot,
            publication_name=names.publication,
        )
        return {
            "source": names.source_connector,
            "sink": names.sink_connector,
            "tables": len(tables),
            "native_tables": len(native),
        }
