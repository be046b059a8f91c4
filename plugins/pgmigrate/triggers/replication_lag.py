"""Trigger: look at the pipeline's lag until the target is within `max_lag_seconds` of the source
(`lag.caught_up`, the sensor's `poke()` too). A FAILED connector never catches up: it ends the wait at once."""

from __future__ import annotations

from typing import Any

from pgmigrate.core.endpoints import PgEndpoint
from pgmigrate.core.naming import MigrationNames
from pgmigrate.core.waits import WaitStatus
from pgmigrate.kafka.connect_client import ConnectClient
from pgmigrate.stream.lag import caught_up
from pgmigrate.triggers.base import MigrationWaitTrigger
from pgmigrate.triggers.connections import connect_client_for, endpoint_for, kafka_cluster_for


class ReplicationLagTrigger(MigrationWaitTrigger):
    waiting_for = "lag under the threshold"
    timeout_hint = "Check the connectors (scripts/migration status) and the sink's errors in the Connect log."

    def __init__(
        self,
        migration_id: str,
        source_conn_id: str,
        target_conn_id: str,
        max_lag_seconds: float,
        kafka_conn_id: str | None = "kafka_default",
        poll_interval: float = 5.0,
        timeout: float = 3600.0,
        kafka_connect_conn_id: str | None = "kafka_connect",
    ) -> None:
        super().__init__(poll_interval, timeout)
        self.migration_id = migration_id
        self.source_conn_id = source_conn_id
        self.target_conn_id = target_conn_id
        self.max_lag_seconds = max_lag_seconds
        self.kafka_conn_id = kafka_conn_id
        self.kafka_connect_conn_id = kafka_connect_conn_id
        self._ends: tuple[PgEndpoint, PgEndpoint, str | None, ConnectClient | None] | None = None

    def arguments(self) -> dict[str, Any]:
        return {
            "migration_id": self.migration_id,
            "source_conn_id": self.source_conn_id,
            "target_conn_id": self.target_conn_id,
            "max_lag_seconds": self.max_lag_seconds,
            "kafka_conn_id": self.kafka_conn_id,
            "poll_interval": self.poll_interval,
            "timeout": self.timeout,
            "kafka_connect_conn_id": self.kafka_connect_conn_id,
        }

    async def open(self) -> None:
        connect = await connect_client_for(self.kafka_connect_conn_id) if self.kafka_connect_conn_id else None
        self._ends = (
            await endpoint_for(self.source_conn_id),
            await endpoint_for(self.target_conn_id),
            await kafka_cluster_for(self.kafka_conn_id),
            connect,
        )

    def look(self) -> WaitStatus:
        assert self._ends is not None
        source, target, kafka, connect = self._ends
        return caught_up(source, target, MigrationNames(self.migration_id), kafka, connect, self.max_lag_seconds)
