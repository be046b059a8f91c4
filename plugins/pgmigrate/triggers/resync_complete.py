"""Trigger: look until the source connector has finished the incremental snapshot asked for by a resync signal
(its offsets passed the signal and carry no incremental-snapshot state any more), and the native channel's
subscription has synced the tables it copies again (`resync.resync_done`, the sensor's `poke()` too)."""

from __future__ import annotations

from typing import Any

from pgmigrate.core.endpoints import PgEndpoint
from pgmigrate.core.naming import MigrationNames
from pgmigrate.core.waits import WaitStatus
from pgmigrate.kafka.connect_client import ConnectClient
from pgmigrate.stream.resync import resync_done
from pgmigrate.triggers.base import MigrationWaitTrigger
from pgmigrate.triggers.connections import connect_client_for, endpoint_for


class ResyncCompleteTrigger(MigrationWaitTrigger):
    waiting_for = "resync complete"

    def __init__(
        self,
        migration_id: str,
        signal_lsn: str | None,
        kafka_connect_conn_id: str = "kafka_connect",
        poll_interval: float = 2.0,
        timeout: float = 6 * 3600.0,
        target_conn_id: str | None = None,
    ) -> None:
        super().__init__(poll_interval, timeout)
        self.migration_id = migration_id
        self.signal_lsn = signal_lsn
        self.target_conn_id = target_conn_id  # set when native-channel tables are copied again
        self.kafka_connect_conn_id = kafka_connect_conn_id
        self._ends: tuple[ConnectClient, PgEndpoint | None] | None = None

    def arguments(self) -> dict[str, Any]:
        return {
            "migration_id": self.migration_id,
            "signal_lsn": self.signal_lsn,
            "kafka_connect_conn_id": self.kafka_connect_conn_id,
            "poll_interval": self.poll_interval,
            "timeout": self.timeout,
            "target_conn_id": self.target_conn_id,
        }

    async def open(self) -> None:
        target = await endpoint_for(self.target_conn_id) if self.target_conn_id else None
        self._ends = (await connect_client_for(self.kafka_connect_conn_id), target)

    def look(self) -> WaitStatus:
        assert self._ends is not None
        connect, target = self._ends
        return resync_done(connect, MigrationNames(self.migration_id), self.signal_lsn, target)
