"""`wait_snapshot`: the initial data is on the target.

For `copy` the `snapshot` task already loaded it under the slot's snapshot, so this returns at once,
unless native-channel tables are still being copied by their subscription. For `debezium` it defers until the
source finished its snapshot and the sink applied it all (and the native-channel tables are synced).
"""

from __future__ import annotations

from typing import Any

from pgmigrate.core.migration_tables import resolve_tables
from pgmigrate.core.waits import WaitStatus
from pgmigrate.load.snapshot_progress import SnapshotWatch, snapshot_loaded
from pgmigrate.sensors.base import MigrationSensor
from pgmigrate.stream.native_replication import split_by_channel
from pgmigrate.triggers.snapshot_complete import SnapshotCompleteTrigger


class SnapshotCompleteSensor(MigrationSensor):
    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("timeout", 6 * 3600)
        kwargs.setdefault("poll_interval", 10.0)
        super().__init__(**kwargs)

    def execute(self, context: Any) -> Any:
        params = self.migration_params(context)
        if params.snapshot_method == "copy":
            source = self.endpoint(params.source_conn_id)
            _, native = split_by_channel(resolve_tables(source, params))
            if not native:
                self.log.info("snapshot_method=copy: the initial data was loaded by the `snapshot` task")
                return {"method": "copy"}
            self.log.info("snapshot_method=copy: waiting for the subscription to copy %d tables", len(native))
        return super().execute(context)

    def build_trigger(self, context: Any) -> SnapshotCompleteTrigger:
        params = self.migration_params(context)
        source = self.endpoint(params.source_conn_id)
        tables = [[t.ref.schema, t.ref.name] for t in resolve_tables(source, params)]
        return SnapshotCompleteTrigger(
            migration_id=params.migration_id,
            source_conn_id=params.source_conn_id,
            target_conn_id=params.target_conn_id,
            tables=tables,
            debezium_snapshot=params.snapshot_method == "debezium",
            kafka_conn_id=self.kafka_conn_id,
            **self.wait_arguments(),
        )

    def look(self, context: Any) -> WaitStatus:
        params = self.migration_params(context)
        source = self.endpoint(params.source_conn_id)
        target = self.endpoint(params.target_conn_id)
        tables = [t.ref for t in resolve_tables(source, params)]
        connect = self.connect_client()
        kafka = self.kafka_cluster()
        self._watch = getattr(self, "_watch", None) or SnapshotWatch()  # kept between pokes of one try
        debezium = params.snapshot_method == "debezium"
        return snapshot_loaded(source, target, params.names, tables, debezium, connect, kafka, self._watch)
