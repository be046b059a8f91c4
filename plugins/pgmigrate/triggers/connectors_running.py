"""Trigger: poll Kafka Connect until the migration's connectors and all their tasks are RUNNING.

Runs in the triggerer, so it never blocks: httpx's async client, and the Airflow connection read
with `aget_connection`. A FAILED connector or task ends the wait at once with Connect's trace.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
from airflow.triggers.base import BaseTrigger, TriggerEvent

from pgmigrate.kafka.connector_status import FAILED, RUNNING, assess_connectors
from pgmigrate.triggers.connections import connect_base_url_for, connector_statuses

log = logging.getLogger(__name__)


class ConnectorsRunningTrigger(BaseTrigger):
    def __init__(
        self,
        connectors: list[str],
        kafka_connect_conn_id: str = "kafka_connect",
        base_url: str | None = None,
        poll_interval: float = 5.0,
        timeout: float = 600.0,
    ) -> None:
        super().__init__()
        self.connectors = list(connectors)
        self.kafka_connect_conn_id = kafka_connect_conn_id
        self.base_url = base_url
        self.poll_interval = poll_interval
        self.timeout = timeout

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{self.__class__.__module__}.{self.__class__.__qualname__}",
            {
                "connectors": self.connectors,
                "kafka_connect_conn_id": self.kafka_connect_conn_id,
                "base_url": self.base_url,
                "poll_interval": self.poll_interval,
                "timeout": self.timeout,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        try:
            base_url = (
                self.base_url.rstrip("/") if self.base_url else await connect_base_url_for(self.kafka_connect_conn_id)
            )
        except Exception as exc:
            yield TriggerEvent(
                {"status": "error", "message": f"cannot read connection {self.kafka_connect_conn_id}: {exc}"}
            )
            return
        deadline = time.monotonic() + self.timeout
        last = "no answer from Kafka Connect yet"
        async with httpx.AsyncClient(base_url=base_url, timeout=10.0) as client:
            while True:
                try:
                    statuses = await connector_statuses(client, self.connectors)
                    state, last = assess_connectors(statuses)
                    log.info("connectors: %s", last)
                    if state == RUNNING:
                        yield TriggerEvent({"status": "success", "message": last})
                        return
                    if state == FAILED:
                        yield TriggerEvent(
                            {
                                "status": "error",
                                "fatal": True,
                                "message": f"{last}. Fix the cause, then restart the failed tasks "
                                f"(scripts/migration restart, or POST /connectors/<name>/restart?includeTasks=true"
                                f"&onlyFailed=true) and rerun this task.",
                            }
                        )
                        return
                except httpx.HTTPError as exc:
                    last = f"Kafka Connect at {base_url} not answering: {exc}"
                    log.warning(last)
                if time.monotonic() > deadline:
                    yield TriggerEvent(
                        {
                            "status": "error",
                            "message": f"connectors not RUNNING after {self.timeout:.0f}s; last status: {last}",
                        }
                    )
                    return
                await asyncio.sleep(self.poll_interval)
