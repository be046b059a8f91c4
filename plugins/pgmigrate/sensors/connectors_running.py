"""`wait_connectors_running`: the migration's Debezium source and JDBC sink are RUNNING."""

from __future__ import annotations

from typing import Any

from pgmigrate.core.waits import WaitStatus
from pgmigrate.kafka.connector_status import connectors_running
from pgmigrate.sensors.base import MigrationSensor
from pgmigrate.triggers.connectors_running import ConnectorsRunningTrigger


class ConnectorsRunningSensor(MigrationSensor):
    """Waits until both connectors and all their tasks are RUNNING; fails at once on FAILED."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("timeout", 600)
        super().__init__(**kwargs)

    def _connectors(self, context: Any) -> list[str]:
        names = self.migration_params(context).names
        return [names.source_connector, names.sink_connector]

    def build_trigger(self, context: Any) -> ConnectorsRunningTrigger:
        return ConnectorsRunningTrigger(connectors=self._connectors(context), **self.wait_arguments())

    def look(self, context: Any) -> WaitStatus:
        return connectors_running(self.connect_client(), self._connectors(context))
