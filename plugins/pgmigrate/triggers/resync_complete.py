"""Trigger: wait until the source connector has finished the incremental snapshot asked for by a resync
signal (its offsets passed the signal and carry no incremental-snapshot state any more), and the native
channel's subscription has synced the tables it copies again."""

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
from pgmigrate.stream.native_replication import read_native_sync_state
from pgmigrate.stream.resync import DONE, resync_phase
from pgmigrate.triggers.connections import connect_base_url_for, connector_statuses, endpoint_for

log = logging.getLogger(__name__)


class ResyncCompleteTrigger(BaseTrigger):
    def __init__(
        self,
        migration_id: str,
        signal_lsn: str | None,
        kafka_connect_conn_id: str = "kafka_connect",
        poll_interval: float = 2.0,
        timeout: float = 6 * 3600.0,
        target_conn_id: str | None = None,
    ) -> None:
        super().__init__()
        self.migration_id = migration_id
        self.signal_lsn = signal_lsn
        self.target_conn_id = target_conn_id  # set when native-channel tables are copied again
        self.kafka_connect_conn_id = kafka_connect_conn_id
        self.poll_interval = poll_interval
        self.timeout = timeout

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{self.__class__.__module__}.{self.__class__.__qualname__}",
            {
                "migration_id": self.migration_id,
                "signal_lsn": self.signal_lsn,
                "kafka_connect_conn_id": self.kafka_connect_conn_id,
                "poll_interval": self.poll_interval,
                "timeout": self.timeout,
                "target_conn_id": self.target_conn_id,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        names = MigrationNames(self.migration_id)
        deadline = time.monotonic() + self.timeout
        phase = "no reading yet"
        base_url = await connect_base_url_for(self.kafka_connect_conn_id)
        target = await endpoint_for(self.target_conn_id) if self.target_conn_id else None
        async with httpx.AsyncClient(base_url=base_url, timeout=10.0) as client:
            while True:
                try:
                    statuses = await connector_statuses(client, [names.source_connector, names.sink_connector])
                    state, message = assess_connectors(statuses)
                    if state == FAILED:
                        yield TriggerEvent({"status": "error", "fatal": True, "message": f"during resync: {message}"})
                        return
                    response = await client.get(f"/connectors/{names.source_connector}/offsets")
                    offsets = response.json().get("offsets", []) if response.status_code == 200 else []
                    phase = resync_phase(offsets, self.signal_lsn)
                    native_done = True
                    if target is not None:
                        native = await sync_to_async(read_native_sync_state)(target, names)
                        native_done = native is None or native.complete
                        phase += f"; {native.describe() if native else 'no native channel'}"
                    log.info("resync: incremental snapshot %s (signal at %s)", phase, self.signal_lsn)
                    if phase.startswith(DONE) and native_done:
                        yield TriggerEvent({"status": "success", "message": "incremental snapshot complete"})
                        return
                except (httpx.HTTPError, OSError) as exc:
                    log.warning("resync: could not read Kafka Connect (%s); will retry", exc)
                if time.monotonic() > deadline:
                    yield TriggerEvent({"status": "error", "message": f"resync not complete after "
                                        f"{self.timeout:.0f}s (last: {phase})"})  # fmt: skip
                    return
                await asyncio.sleep(self.poll_interval)
