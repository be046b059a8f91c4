"""Trigger: look at Kafka Connect until the migration's connectors and all their tasks are RUNNING
(`connector_status.connectors_running`, the sensor's `poke()` too). A FAILED connector or task ends the wait at
once with Connect's trace."""

from __future__ import annotations

from typing import Any

from pgmigrate.core.waits import WaitStatus
from pgmigrate.kafka.connect_client import ConnectClient
from pgmigrate.kafka.connector_status import connectors_running
from pgmigrate.triggers.base import MigrationWaitTrigger
from pgmigrate.triggers.connections import connect_client_for


class ConnectorsRunningTrigger(MigrationWaitTrigger):
    waiting_for = "connectors RUNNING"

    def __init__(
        self,
        connectors: list[str],
        kafka_connect_conn_id: str = "kafka_connect",
        base_url: str | None = None,
        poll_interval: float = 5.0,
        timeout: float = 600.0,
    ) -> None:
        super().__init__(poll_interval, timeout)
        self.connectors = list(connectors)
        self.kafka_connect_conn_id = kafka_connect_conn_id
        self.base_url = base_url
        self._connect: ConnectClient | None = None

    def arguments(self) -> dict[str, Any]:
        return {
            "connectors": self.connectors,
            "kafka_connect_conn_id": self.kafka_connect_conn_id,
            "base_url": self.base_url,
            "poll_interval": self.poll_interval,
            "timeout": self.timeout,
        }

    async def open(self) -> None:
        self._connect = (
            ConnectClient(self.base_url) if self.base_url else await connect_client_for(self.kafka_connect_conn_id)
        )

    def look(self) -> WaitStatus:
        assert self._connect is not None
        return connectors_running(self._connect, self.connectors)
