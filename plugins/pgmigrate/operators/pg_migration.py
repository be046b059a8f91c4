"""The tasks of `pg_migration`, in DAG order:

- `preflight`: every check a migration needs, each failure with its exact fix, before anything is made.
- `copy_schema` (pre-data: types, tables, PKs) and `apply_post_data` (indexes, FKs, triggers).
- `snapshot`: the `copy` method's initial load under the slot's exported snapshot.
- `deploy_connectors`: the Debezium source and JDBC sink, validated by Connect, deployed idempotently.
- `validate`: every table identical on source and target while writes continue (`row_diff`: key-range
checksums, then the differing rows, re-checked so rows in flight are not reported).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from airflow.sdk.exceptions import AirflowFailException

from pgmigrate.core.migration_tables import resolve_tables
from pgmigrate.hooks.kafka_cluster import KafkaClusterHook
from pgmigrate.hooks.kafka_connect import KafkaConnectHook
from pgmigrate.kafka.client_config import cluster_name
from pgmigrate.kafka.connector_configs import (
    MAX_CHANGE_EVENT_BYTES,
    build_sink_config,
    build_source_config,
    stored_generated_columns,
)
from pgmigrate.kafka.key_partitioning import KeyHashPartitioning, PartitionCountMismatch, check_existing_topics
from pgmigrate.kafka.topic_admin import TopicAdmin
from pgmigrate.kafka.topic_settings import InvalidTopicSettings
from pgmigrate.operators.base import MigrationOperator
from pgmigrate.stream.heartbeat import ensure_heartbeat_table
from pgmigrate.stream.native_replication import drop_native_replication, ensure_native_replication, split_by_channel
from pgmigrate.stream.pipeline_tables import ensure_own_tables, own_tables
from pgmigrate.stream.publication import ensure_publication


class PreflightOperator(MigrationOperator):
    def execute(self, context: Any) -> dict:
        from pgmigrate.preflight.checks import run_preflight

        try:
            params = self.migration_params(context)
            source, target = self.endpoint(params.source_conn_id), self.endpoint(params.target_conn_id)
        except (ValueError, LookupError) as exc:
            # A bad param or a missing connection: retrying cannot help.
            raise AirflowFailException(str(exc)) from exc
        store = self.state_store()
        existing = store.get(params.migration_id)
        connectors_in_use = set(KafkaConnectHook(self.kafka_connect_conn_id).get_conn().list_connectors())
        report = run_preflight(
            source,
            target,
            params,
            connect_names_in_use=connectors_in_use,
            fix_no_pk=params.replica_identity_full_for_no_pk,
            owned_by_this_migration=existing is not None,
        )
        self.log.info("preflight results:\n%s", report.summary())
        try:
            report.raise_if_failed()
        except Exception as exc:
            # A failed check needs a person, not a retry: fail now, with every problem and its fix.
            raise AirflowFailException(str(exc)) from exc
        # A migration id reused after teardown starts afresh (its params are this run's, not the old ones).
        if existing is None or existing["phase"] in ("failed", "preflight_passed", "torn_down"):
            store.upsert(params.migration_id, phase="preflight_passed", params=dict(context["params"]))
        store.record_event(params.migration_id, "preflight_passed", "all preflight checks passed")
        return report.to_dict()


class CopySchemaOperator(MigrationOperator):
    """Creates the selected tables on the target, with primary keys but no secondary indexes, so the
    load is fast; ALWAYS identities are created BY DEFAULT (recorded; cutover restores them)."""

    def execute(self, context: Any) -> dict:
        from pgmigrate.cutover.sequences import sequences_snapshot
        from pgmigrate.schema.schema_copy import copy_pre_data

        params = self.migration_params(context)
        source, target = self.endpoint(params.source_conn_id), self.endpoint(params.target_conn_id)
        tables = resolve_tables(source, params)
        self.log.info("copy_schema: %d tables from %s to %s", len(tables), source.label, target.label)
        result = copy_pre_data(source, target, list(params.schemas), [t.ref for t in tables], params.keep_ownership)
        ensure_heartbeat_table(target, params.names)
        sequences = sequences_snapshot(source, list(params.schemas))
        self.record(
            params,
            "schema_copied",
            f"pre-data schema of {len(tables)} tables on the target",
            identity_columns=result.get("identity_columns", []),
            sequences=sequences,
            tables=[t.ref.qualified for t in tables],
        )
        return {k: v for k, v in result.items() if k != "statements"}


class ApplyPostDataOperator(MigrationOperator):
    """Secondary indexes, foreign keys, triggers and other constraints, after the initial load; then the large
    objects are copied with their oids (`large_objects`) and the materialized views refreshed from the loaded data
    (`materialized_views`). Safe to rerun: a rerun copies again only the large objects that changed."""

    def execute(self, context: Any) -> dict:
        from pgmigrate.schema.large_objects import copy_large_objects
        from pgmigrate.schema.materialized_views import refresh_materialized_views
        from pgmigrate.schema.post_data import apply_post_data

        params = self.migration_params(context)
        source, target = self.endpoint(params.source_conn_id), self.endpoint(params.target_conn_id)
        tables = resolve_tables(source, params)
        result = apply_post_data(source, target, list(params.schemas), [t.ref for t in tables])
        large_objects = copy_large_objects(source, target)
        refreshed = refresh_materialized_views(source, target, params.schemas)
        self.record(
            params,
            "post_data_applied",
            "indexes, constraints and triggers applied on the target"
            + (f"; {large_objects['large_objects']} large objects copied" if large_objects["large_objects"] else "")
            + (f"; {len(refreshed)} materialized views refreshed" if refreshed else ""),
        )
        return {
            **{k: v for k, v in result.items() if k != "statements"},
            "large_objects": large_objects,
            "materialized_views": refreshed,
        }


class SnapshotCopyOperator(MigrationOperator):
    """Rerun-safe: every attempt starts over (connectors, offsets and topics of an earlier attempt
    removed, target tables truncated, slot recreated), so a half-copied table never looks done.
    Keyless tables are not copied here: their subscription (deploy_connectors) copies them itself; an
    earlier attempt's subscription is removed so it starts over too."""

    def execute(self, context: Any) -> dict:
        from pgmigrate.load.snapshot_copy import run_snapshot_copy
        from pgmigrate.stream.pipeline_reset import delete_topics, remove_connectors

        params = self.migration_params(context)
        if params.snapshot_method != "copy":
            self.log.info(
                "snapshot_method=%s: the connector loads the initial data; nothing to do here", params.snapshot_method
            )
            return {"skipped": True}
        names = params.names
        source, target = self.endpoint(params.source_conn_id), self.endpoint(params.target_conn_id)
        tables, native = split_by_channel(resolve_tables(source, params))

        removed = remove_connectors(KafkaConnectHook(self.kafka_connect_conn_id).get_conn(), names)
        kafka = KafkaClusterHook(self.kafka_conn_id).get_conn()
        topics = delete_topics(kafka, names) if kafka else []
        if drop_native_replication(source, target, names):
            self.log.info("snapshot: starting over; removed the native channel's subscription of an earlier attempt")
        if removed or topics:
            self.log.info(
                "snapshot: starting over; removed connectors %s and %d topics of an earlier attempt",
                removed,
                len(topics),
            )

        ensure_own_tables(source, target, names)
        ensure_publication(source, names.publication, [t.ref for t in tables] + own_tables(names))

        store = self.state_store()
        store.reset_snapshot_tables(params.migration_id)
        last_write = {"at": 0.0}

        def on_progress(table: str, rows: int, nbytes: int, chunks_done: int, chunks_total: int) -> None:
            done = chunks_done == chunks_total
            if done or time.monotonic() - last_write["at"] > 5:
                store.set_snapshot_table(params.migration_id, table, "done" if done else "copying", rows, nbytes)
                last_write["at"] = time.monotonic()

        result = run_snapshot_copy(source, target, tables, names.slot, params.copy_parallelism, on_progress=on_progress)
        if native:
            self.log.info(
                "snapshot: %d tables (%s) travel natively: their subscription (deploy_connectors) copies them",
                len(native),
                ", ".join(t.ref.qualified for t in native),
            )
        self.record(
            params,
            "snapshot_copied",
            f"initial load: {result['rows']} rows in {result['seconds']:.1f}s, slot {names.slot} at "
            f"{result['consistent_lsn']}",
            slot_name=names.slot,
            publication_name=names.publication,
            snapshot_lsn=result["consistent_lsn"],
        )
        return result


class DeployConnectorsOperator(MigrationOperator):
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
        kafka = self.kafka_cluster()
        admin = TopicAdmin(kafka)
        try:
            topics = self.topic_settings()
            topics.check_cluster(admin.broker_count(), cluster_name(kafka))
        except InvalidTopicSettings as exc:
            raise AirflowFailException(f"deploy_connectors: {exc}") from exc
        connector_secrets = hook.connector_secrets()
        secrets = connector_secrets.refs(names, source, target)
        self.log.info("connector passwords: %s", connector_secrets.describe())
        partitioning = KeyHashPartitioning.of(keyed, params.change_topic_partitions)
        try:
            check_existing_topics(
                admin.partition_counts(names.topic_prefix), partitioning.partitions, names.migration_id
            )
        except PartitionCountMismatch as exc:
            raise AirflowFailException(f"deploy_connectors: {exc}") from exc
        if partitioning.spread:
            self.log.info("change topics: %s", partitioning.describe(tables))
        source_config = build_source_config(
            names,
            source,
            tables,
            params.snapshot_method,
            secrets,
            stored_generated_columns(keyed),
            topics=topics,
            partitioning=partitioning,
        )
        sink_config = build_sink_config(
            names, target, list(params.schemas), secrets, params.dead_letter, topics=topics, partitioning=partitioning
        )
        if params.dead_letter and admin.ensure_dead_letter_topic(
            names.dead_letter_topic, topics, MAX_CHANGE_EVENT_BYTES + 1024 * 1024
        ):
            self.log.info("created the dead-letter topic %s (%s)", names.dead_letter_topic, topics)

        connect = hook.get_conn()
        connect.validate_or_raise(source_config["connector.class"], source_config, name=names.source_connector)
        connect.validate_or_raise(sink_config["connector.class"], sink_config, name=names.sink_connector)
        # Sink first: it must exist before the source produces, or nothing is lost either way (topics keep
        # the records), but an operator watching Connect sees the whole pipeline at once.
        connect.create_or_update(names.sink_connector, sink_config)
        connect.create_or_update(names.source_connector, source_config)
        # Keyless and timetz tables: PostgreSQL's own logical replication carries them exactly (native_replication).
        native_state = ensure_native_replication(
            source, target, names, [t.ref for t in native], subscriber_passfile=params.subscriber_passfile
        )
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


class ValidateMigrationOperator(MigrationOperator):
    def __init__(self, *, attempts: int = 8, pause_seconds: float = 5.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.attempts = attempts
        self.pause_seconds = pause_seconds

    def execute(self, context: Any) -> list[dict]:
        from pgmigrate.schema.large_objects import compare_large_objects
        from pgmigrate.schema.materialized_views import compare_materialized_views
        from pgmigrate.validate.row_diff import diff_tables, format_diff

        params = self.migration_params(context)
        source, target = self.endpoint(params.source_conn_id), self.endpoint(params.target_conn_id)
        tables = resolve_tables(source, params)
        self.log.info(
            "validate: comparing %d tables (key ranges, then the differing rows), up to %d attempts",
            len(tables),
            self.attempts,
        )
        diffs = diff_tables(source, target, tables, attempts=self.attempts, pause_seconds=self.pause_seconds)
        self.log.info("validation results:\n%s", format_diff(diffs))
        views = compare_materialized_views(source, target, params.schemas)
        for view in views:
            self.log.log(logging.INFO if view.ok else logging.ERROR, "materialized view %s", view.describe())
        large_objects = compare_large_objects(source, target)
        summary = [d.as_dict() for d in diffs]
        store = self.state_store()
        view_summary = [v.as_dict() for v in views]
        store.upsert(
            params.migration_id,
            last_validation={"tables": summary, "materialized_views": view_summary, "large_objects": large_objects},
        )
        bad = [d for d in diffs if not d.ok]
        bad_views = [v for v in views if not v.ok]
        if bad or bad_views or large_objects:
            message = (
                f"{len(bad)} of {len(diffs)} tables differ after re-checking rows in flight: {format_diff(bad)}\n"
                + "".join(f"materialized view {v.describe()}\n" for v in bad_views)
                + "".join(f"{d}\n" for d in large_objects[:20])
                + (
                    "Large objects are copied by apply_post_data and not streamed: clear apply_post_data to copy the "
                    "changed ones again.\n"
                    if large_objects
                    else ""
                )
                + "Check the sink connector's status and lag (scripts/migration status --live), then clear `validate`; "
                "if the difference persists, resync the tables named here (scripts/migration resync)."
            )
            store.upsert(params.migration_id, last_error=message)
            store.record_event(params.migration_id, "validation_failed", message)
            raise RuntimeError(message)  # retried: a pipeline that was only slow passes on the retry
        self.record(params, "streaming", f"validation passed for {len(diffs)} tables; streaming until cutover")
        return summary
