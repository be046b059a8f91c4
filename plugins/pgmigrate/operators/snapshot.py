"""`snapshot`: the `copy` method's initial load under the slot's exported snapshot."""

from __future__ import annotations

import time
from typing import Any

from pgmigrate.hooks.kafka_cluster import KafkaClusterHook
from pgmigrate.hooks.kafka_connect import KafkaConnectHook
from pgmigrate.migration_tables import resolve_tables
from pgmigrate.native_replication import drop_native_replication, split_by_channel
from pgmigrate.operators.base import MigrationOperator
from pgmigrate.pipeline_tables import ensure_own_tables, own_tables
from pgmigrate.publication import ensure_publication


class SnapshotCopyOperator(MigrationOperator):
    """Rerun-safe: every attempt starts over (connectors, offsets and topics of an earlier attempt
    removed, target tables truncated, slot recreated), so a half-copied table never looks done.
    Keyless tables are not copied here: their subscription (deploy_connectors) copies them itself; an
    earlier attempt's subscription is removed so it starts over too."""

    def __init__(
        self, *, kafka_connect_conn_id: str = "kafka_connect", kafka_conn_id: str = "kafka_default", **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.kafka_connect_conn_id = kafka_connect_conn_id
        self.kafka_conn_id = kafka_conn_id

    def execute(self, context: Any) -> dict:
        from pgmigrate.pipeline_reset import delete_topics, remove_connectors
        from pgmigrate.snapshot_copy import run_snapshot_copy

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
        bootstrap = KafkaClusterHook(self.kafka_conn_id).get_conn()
        topics = delete_topics(bootstrap, names) if bootstrap else []
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
