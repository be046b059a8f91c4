"""Trigger: look until the Debezium source finished its initial snapshot and the sink applied it, and the
native channel's subscription synced every table, logging per-table progress (rows on the target / source,
rate, ETA) at every look (`snapshot_progress.snapshot_loaded`, the sensor's `poke()` too). With
`debezium_snapshot=False` (the `copy` method) only the native-channel tables are waited for."""

from __future__ import annotations

from typing import Any

from pgmigrate.core.catalog import TableRef
from pgmigrate.core.endpoints import PgEndpoint
from pgmigrate.core.naming import MigrationNames
from pgmigrate.core.waits import WaitStatus
from pgmigrate.kafka.connect_client import ConnectClient
from pgmigrate.load.snapshot_progress import SnapshotWatch, snapshot_loaded
from pgmigrate.triggers.base import MigrationWaitTrigger
from pgmigrate.triggers.connections import connect_client_for, endpoint_for, kafka_cluster_for


class SnapshotCompleteTrigger(MigrationWaitTrigger):
    waiting_for = "initial snapshot applied"

    def __init__(
        self,
        migration_id: str,
        source_conn_id: str,
        target_conn_id: str,
        tables: list[list[str]],
        debezium_snapshot: bool = True,
        kafka_connect_conn_id: str = "kafka_connect",
        kafka_conn_id: str = "kafka_default",
        poll_interval: float = 10.0,
        timeout: float = 6 * 3600.0,
    ) -> None:
        super().__init__(poll_interval, timeout)
        self.migration_id = migration_id
        self.source_conn_id = source_conn_id
        self.target_conn_id = target_conn_id
        self.tables = [list(t) for t in tables]
        self.debezium_snapshot = debezium_snapshot
        self.kafka_connect_conn_id = kafka_connect_conn_id
        self.kafka_conn_id = kafka_conn_id
        self._ends: tuple[PgEndpoint, PgEndpoint, ConnectClient, str | None] | None = None
        self._watch = SnapshotWatch()

    def arguments(self) -> dict[str, Any]:
        return {
            "migration_id": self.migration_id,
            "source_conn_id": self.source_conn_id,
            "target_conn_id": self.target_conn_id,
            "tables": self.tables,
            "debezium_snapshot": self.debezium_snapshot,
            "kafka_connect_conn_id": self.kafka_connect_conn_id,
            "kafka_conn_id": self.kafka_conn_id,
            "poll_interval": self.poll_interval,
            "timeout": self.timeout,
        }

    async def open(self) -> None:
        self._ends = (
            await endpoint_for(self.source_conn_id),
            await endpoint_for(self.target_conn_id),
            await connect_client_for(self.kafka_connect_conn_id),
            await kafka_cluster_for(self.kafka_conn_id),
        )

    def look(self) -> WaitStatus:
        assert self._ends is not None
        source, target, connect, kafka = self._ends
        tables = [TableRef(s, n) for s, n in self.tables]
        names = MigrationNames(self.migration_id)
        return snapshot_loaded(source, target, names, tables, self.debezium_snapshot, connect, kafka, self._watch)
