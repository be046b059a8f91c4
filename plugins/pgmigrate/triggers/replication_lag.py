"""Trigger: poll the pipeline's lag until the target is within `max_lag_seconds` of the source.

Each poll reads the end-to-end lag (heartbeat), the sink's consumer-group lag and the WAL the slot
retains, and logs them (the triggerer's log lines appear in the task log). The readers are blocking
(psycopg, librdkafka), so they run in a thread via `sync_to_async`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
from airflow.triggers.base import BaseTrigger, TriggerEvent
from asgiref.sync import sync_to_async

from pgmigrate.core.naming import MigrationNames
from pgmigrate.kafka.connector_status import FAILED, assess_connectors
from pgmigrate.stream.lag import LagReading, read_lag
from pgmigrate.triggers.connections import (
    bootstrap_servers_for,
    connect_base_url_for,
    connector_statuses,
    endpoint_for,
)

log = logging.getLogger(__name__)


class ReplicationLagTrigger(BaseTrigger):
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
        super().__init__()
        self.migration_id = migration_id
        self.source_conn_id = source_conn_id
        self.target_conn_id = target_conn_id
        self.max_lag_seconds = max_lag_seconds
        self.kafka_conn_id = kafka_conn_id
        self.poll_interval = poll_interval
        self.timeout = timeout
        self.kafka_connect_conn_id = kafka_connect_conn_id

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{self.__class__.__module__}.{self.__class__.__qualname__}",
            {
                "migration_id": self.migration_id,
                "source_conn_id": self.source_conn_id,
                "target_conn_id": self.target_conn_id,
                "max_lag_seconds": self.max_lag_seconds,
                "kafka_conn_id": self.kafka_conn_id,
                "poll_interval": self.poll_interval,
                "timeout": self.timeout,
                "kafka_connect_conn_id": self.kafka_connect_conn_id,
            },
        )

    async def _failed_connector(self, names: MigrationNames) -> str | None:
        """Connect's description of a FAILED connector or task of this migration, if any."""
        if not self.kafka_connect_conn_id:
            return None
        try:
            base_url = await connect_base_url_for(self.kafka_connect_conn_id)
            async with httpx.AsyncClient(base_url=base_url, timeout=10.0) as client:
                statuses = await connector_statuses(client, [names.source_connector, names.sink_connector])
        except Exception as exc:  # Connect restarting: the lag reading says enough
            log.warning("lag: could not read connector status (%s)", exc)
            return None
        state, message = assess_connectors(statuses)
        return message if state == FAILED else None

    async def run(self) -> AsyncIterator[TriggerEvent]:
        names = MigrationNames(self.migration_id)
        try:
            source = await endpoint_for(self.source_conn_id)
            target = await endpoint_for(self.target_conn_id)
            bootstrap = await bootstrap_servers_for(self.kafka_conn_id)
        except Exception as exc:
            yield TriggerEvent({"status": "error", "message": f"cannot read the migration's connections: {exc}"})
            return
        deadline = time.monotonic() + self.timeout
        reading: LagReading | None = None
        while True:
            failed = await self._failed_connector(names)
            if failed:
                # A FAILED connector never catches up: end the wait now, with Connect's reason.
                yield TriggerEvent({"status": "error", "fatal": True, "message": f"while waiting for lag: {failed}"})
                return
            try:
                reading = await sync_to_async(read_lag)(source, target, names, bootstrap)
                log.info("lag: %s (threshold %.1fs)", reading.describe(), self.max_lag_seconds)
                if reading.caught_up(self.max_lag_seconds):
                    yield TriggerEvent(
                        {
                            "status": "success",
                            "message": f"caught up: {reading.describe()}",
                            "result": reading.as_dict(),
                        }
                    )
                    return
            except Exception as exc:  # a server restarting mid-wait: keep waiting, say so
                log.warning("lag: could not read (%s); will retry", exc)
            if time.monotonic() > deadline:
                last = reading.describe() if reading else "no reading"
                yield TriggerEvent(
                    {
                        "status": "error",
                        "message": f"lag still above {self.max_lag_seconds}s after {self.timeout:.0f}s ({last}). "
                        "Check the connectors (scripts/migration status) and the sink's errors in the Connect log.",
                    }
                )
                return
            await asyncio.sleep(self.poll_interval)
