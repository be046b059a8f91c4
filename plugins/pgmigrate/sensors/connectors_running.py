"""`wait_connectors_running`: the migration's Debezium source and JDBC sink are RUNNING."""

from __future__ import annotations

from typing import Any

from pgmigrate.core.waits import WaitStatus
from pgmigrate.hooks.kafka_connect import KafkaConnectHook
from pgmigrate.kafka.connector_status import connectors_running
from pgmigrate.sensors.base import MigrationSensor
from pgmigrate.triggers.connectors_running import ConnectorsRunningTrigger


class ConnectorsRunningSensor(MigrationSensor):
    """Waits until both connectors and all their tasks are RUNNING; fails at once on FAILED."""

    def __init__(self, *, kafka_connect_conn_id: str = "kafka_connect", **kwargs: Any) -> None:
        kwargs.setdefault("timeout", 600)
        super().__init__(**kwargs)
        self.kafka_connect_conn_id = kafka_connect_conn_id

    def _connectors(self, context: Any) -> list[str]:
        names = self.migration_params(context).names
        return [names.source_connector, names.sink_connector]

    def build_trigger(self, context: Any) -> ConnectorsRunningTrigger:
        return ConnectorsRunningTrigger(
            connectors=self._connectors(context),
            kafka_connect_conn_id=self.kafka_connect_conn_id,
            poll_interval=self.poll_interval,
            timeout=float(self.timeout),
        )

    def look(self, context: Any) -> WaitStatus:
        connect = KafkaConnectHook(kafka_connect_conn_id=self.kafka_connect_conn_id).get_conn()
        return connectors_running(connect, self._connectors(context))
