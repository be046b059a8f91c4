"""`wait_caught_up`: end-to-end lag below the migration's `max_lag_seconds`."""

from __future__ import annotations

from typing import Any

from pgmigrate.core.params import CONTROL_CONN_ID, MigrationParams
from pgmigrate.core.waits import WaitStatus
from pgmigrate.sensors.base import MigrationSensor
from pgmigrate.stream.lag import caught_up
from pgmigrate.triggers.replication_lag import ReplicationLagTrigger


class ReplicationLagSensor(MigrationSensor):
    """Succeeds when the heartbeat's end-to-end lag is under `max_lag_seconds`; records the reading."""

    def build_trigger(self, context: Any) -> ReplicationLagTrigger:
        params = self.migration_params(context)
        return ReplicationLagTrigger(
            migration_id=params.migration_id,
            source_conn_id=params.source_conn_id,
            target_conn_id=params.target_conn_id,
            max_lag_seconds=params.max_lag_seconds,
            kafka_conn_id=self.kafka_conn_id,
            **self.wait_arguments(),
        )

    def look(self, context: Any) -> WaitStatus:
        params = self.migration_params(context)
        source = self.endpoint(params.source_conn_id)
        target = self.endpoint(params.target_conn_id)
        kafka = self.kafka_cluster()
        connect = self.connect_client()
        return caught_up(source, target, params.names, kafka, connect, params.max_lag_seconds)

    def on_done(self, context: Any, result: dict[str, Any]) -> None:
        self._record(self.migration_params(context), result)

    def _record(self, params: MigrationParams, reading: dict[str, Any]) -> None:
        from pgmigrate.control.state import MigrationStateStore

        store = MigrationStateStore(self.endpoint(CONTROL_CONN_ID))
        store.ensure_schema()
        store.record_lag(
            params.migration_id,
            reading.get("end_to_end_seconds"),
            reading.get("sink_consumer_lag"),
            reading.get("retained_wal_bytes"),
        )
        store.upsert(params.migration_id, phase="caught_up")
        store.record_event(params.migration_id, "caught_up", f"lag {reading.get('end_to_end_seconds')}s")
