"""Trigger: wait until the Debezium source finished its initial snapshot and the sink applied it, and the
native channel's subscription synced every table, logging per-table progress (rows on the target /
source, rate, ETA) at every poll. With `debezium_snapshot=False` (the `copy` method) only the native-channel
tables are waited for."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
from airflow.triggers.base import BaseTrigger, TriggerEvent
from asgiref.sync import sync_to_async

from pgmigrate.core.catalog import TableRef
from pgmigrate.core.naming import MigrationNames
from pgmigrate.kafka.connector_status import FAILED, assess_connectors
from pgmigrate.load.snapshot_progress import COMPLETE, eta_seconds, format_progress, read_table_progress, snapshot_phase
from pgmigrate.stream.lag import consumer_lag, read_sink_offsets, sink_reached
from pgmigrate.stream.native_replication import read_native_sync_state
from pgmigrate.triggers.connections import (
    bootstrap_servers_for,
    connect_base_url_for,
    connector_statuses,
    endpoint_for,
)


class SnapshotCompleteTrigger(BaseTrigger):
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
        super().__init__()
        self.migration_id = migration_id
        self.source_conn_id = source_conn_id
        self.target_conn_id = target_conn_id
        self.tables = [list(t) for t in tables]
        self.debezium_snapshot = debezium_snapshot
        self.kafka_connect_conn_id = kafka_connect_conn_id
        self.kafka_conn_id = kafka_conn_id
        self.poll_interval = poll_interval
        self.timeout = timeout

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{self.__class__.__module__}.{self.__class__.__qualname__}",
            {
                "migration_id": self.migration_id,
                "source_conn_id": self.source_conn_id,
                "target_conn_id": self.target_conn_id,
                "tables": self.tables,
                "debezium_snapshot": self.debezium_snapshot,
                "kafka_connect_conn_id": self.kafka_connect_conn_id,
                "kafka_conn_id": self.kafka_conn_id,
                "poll_interval": self.poll_interval,
                "timeout": self.timeout,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        names = MigrationNames(self.migration_id)
        tables = [TableRef(s, n) for s, n in self.tables]
        log = logging.getLogger(__name__)
        try:
            source = await endpoint_for(self.source_conn_id)
            target = await endpoint_for(self.target_conn_id)
            bootstrap = await bootstrap_servers_for(self.kafka_conn_id)
            base_url = await connect_base_url_for(self.kafka_connect_conn_id)
        except Exception as exc:
            yield TriggerEvent({"status": "error", "message": f"cannot read the migration's connections: {exc}"})
            return
        deadline = time.monotonic() + self.timeout
        previous: tuple[float, int] | None = None
        marks: dict | None = None  # topic end offsets when the source's snapshot was first seen complete
        last = "no reading yet"
        async with httpx.AsyncClient(base_url=base_url, timeout=10.0) as client:
            while True:
                try:
                    statuses = await connector_statuses(client, [names.source_connector, names.sink_connector])
                    state, message = assess_connectors(statuses)
                    if state == FAILED:
                        yield TriggerEvent({"status": "error", "message": f"during the initial snapshot: {message}"})
                        return
                    if self.debezium_snapshot:
                        response = await client.get(f"/connectors/{names.source_connector}/offsets")
                        offsets = response.json().get("offsets", []) if response.status_code == 200 else []
                        phase = snapshot_phase(offsets)
                    else:
                        phase = COMPLETE  # loaded by the `snapshot` task
                    native = await sync_to_async(read_native_sync_state)(target, names)
                    progress = await sync_to_async(read_table_progress)(source, target, tables)
                    end_offsets, committed = (
                        await sync_to_async(read_sink_offsets)(bootstrap, names) if bootstrap else ({}, {})
                    )
                    sink_lag = consumer_lag(end_offsets, committed)
                    if phase == COMPLETE and marks is None and self.debezium_snapshot:
                        # Live writes keep the consumer lag above 0; what matters is that the sink got past
                        # every record that existed when the snapshot was done.
                        marks = end_offsets
                    done = sum(p.target_rows for p in progress)
                    total = sum(p.source_rows for p in progress)
                    now = time.monotonic()
                    rate = (done - previous[1]) / (now - previous[0]) if previous and now > previous[0] else 0.0
                    previous = (now, done)
                    native_note = f", {native.describe()}" if native is not None else ""
                    last = f"source snapshot {phase}, sink consumer lag {sink_lag}{native_note}\n" + format_progress(
                        progress, rate, eta_seconds(done, total, rate)
                    )
                    log.info("%s", last)
                    sink_done = not self.debezium_snapshot or (marks is not None and sink_reached(marks, committed))
                    if phase == COMPLETE and sink_done and (native is None or native.complete):
                        yield TriggerEvent(
                            {
                                "status": "success",
                                "message": f"initial snapshot complete and applied: {done} rows on the target",
                                "result": {"rows": done},
                            }
                        )
                        return
                except (httpx.HTTPError, OSError) as exc:
                    log.warning("snapshot progress: could not read (%s); will retry", exc)
                except Exception as exc:  # a database restarting: keep waiting, say so
                    log.warning("snapshot progress: %s; will retry", exc)
                if time.monotonic() > deadline:
                    yield TriggerEvent(
                        {"status": "error", "message": f"snapshot not complete after {self.timeout:.0f}s: {last}"}
                    )
                    return
                await asyncio.sleep(self.poll_interval)
