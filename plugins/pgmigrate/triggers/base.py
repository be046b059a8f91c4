"""Shared shape of the migration's triggers.

`MigrationTrigger`: what every trigger hands the triggerer in `serialize()`, its own import path (the triggerer
imports the trigger from it) and `arguments()`, the keyword arguments that rebuild it.

`MigrationWaitTrigger`: looks at one plain status function until it is done, failed for good, or the timeout
passes. The look (`look()`, a `WaitStatus` from the phase package) is the same function the sensor's `poke()`
calls, so the deferred and the non-deferred path judge alike. It runs in a worker thread (`sync_to_async`, not
thread-sensitive), never on the triggerer's event loop; the Airflow connections are read before the first look
with `aget_connection`. An error while looking (a server or Connect restarting) keeps the wait going and is logged.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent
from asgiref.sync import sync_to_async

from pgmigrate.core.waits import WaitStatus

log = logging.getLogger(__name__)


class MigrationTrigger(BaseTrigger):
    def arguments(self) -> dict[str, Any]:
        """The constructor's keyword arguments that rebuild this trigger in the triggerer (JSON values)."""
        raise NotImplementedError

    def serialize(self) -> tuple[str, dict[str, Any]]:
        # The concrete class's own path: Airflow re-imports the trigger from it in the triggerer.
        return f"{self.__class__.__module__}.{self.__class__.__qualname__}", self.arguments()


class MigrationWaitTrigger(MigrationTrigger):
    waiting_for = "the wait"  # names the wait in timeout messages
    timeout_hint = ""  # what to check when the wait times out

    def __init__(self, poll_interval: float, timeout: float) -> None:
        super().__init__()
        self.poll_interval = poll_interval
        self.timeout = timeout

    async def open(self) -> None:
        """Read the Airflow connections the look needs (once, before the first look)."""

    def look(self) -> WaitStatus:
        raise NotImplementedError

    async def run(self) -> AsyncIterator[TriggerEvent]:
        try:
            await self.open()
        except Exception as exc:
            yield TriggerEvent({"status": "error", "message": f"cannot read the migration's connections: {exc}"})
            return
        deadline = time.monotonic() + self.timeout
        last = "no reading yet"
        look = sync_to_async(self.look, thread_sensitive=False)
        while True:
            try:
                status = await look()
            except Exception as exc:  # a database or Connect restarting mid-wait: keep waiting, say so
                last = f"could not read ({exc})"
                log.warning("%s: %s; will retry", self.waiting_for, last)
            else:
                last = status.message
                log.info("%s", last)
                if status.fatal:
                    yield TriggerEvent({"status": "error", "fatal": True, "message": last})
                    return
                if status.done:
                    yield TriggerEvent({"status": "success", "message": last, "result": status.result})
                    return
            if time.monotonic() > deadline:
                message = f"{self.waiting_for} not reached after {self.timeout:.0f}s; last: {last}. {self.timeout_hint}"
                yield TriggerEvent({"status": "error", "message": message.strip()})
                return
            await asyncio.sleep(self.poll_interval)
