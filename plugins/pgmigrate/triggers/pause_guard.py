"""Trigger: the pause guard. Enforces a cutover's (or rollback's) pause deadline from Airflow's triggerer.

The cutover task holds client writes in PgBouncer; if its process is killed, hangs, or its host vanishes,
nothing in it can end the pause. This trigger runs in the triggerer (highly available in production: a
trigger whose triggerer dies is picked up by another), watches the pause lease of its DAG run in the
control database, and at the deadline tries the lease's compare-and-set itself; if it wins, it puts every
PgBouncer back on the origin and resumes it (`pgmigrate.cutover.guard.settle`). Unlike other triggers it
acts, on purpose: the pause must end at its deadline even when no worker slot is free to run a task.

Before the pause the guard opens its PgBouncer admin connections (clients queued in a pause can exhaust
PgBouncer's file descriptors, after which it accepts no login, admin ones too) and beats `guard_seen_at`:
the cutover does not pause until it sees that beat. The blocking calls (psycopg) run in threads (`sync_to_async` with
`thread_sensitive=False`), never on the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import ExitStack
from typing import Any

from airflow.triggers.base import TriggerEvent
from asgiref.sync import sync_to_async

from pgmigrate.core.params import CONTROL_CONN_ID
from pgmigrate.triggers.base import MigrationTrigger

log = logging.getLogger(__name__)

POLL_SECONDS = 0.05
BEAT_SECONDS = 0.5
# A trigger that fires within seconds of its deferral can race the executor's report of the deferring
# process's exit, and Airflow then marks the task failed ("finished with state success, but the task
# instance's state attribute is queued": apache/airflow#67287, #72716). The guard's event is never urgent
# (clients were settled before it), so it is held until the trigger has run this long.
MIN_LIFETIME_SECONDS = 20.0


def _blocking(func):
    return sync_to_async(func, thread_sensitive=False)


class PauseGuardTrigger(MigrationTrigger):
    def __init__(
        self,
        migration_id: str,
        dag_run_id: str,
        control_conn_id: str = CONTROL_CONN_ID,
        wait_for_lease_seconds: float = 300.0,
        timeout: float = 6 * 3600.0,
    ) -> None:
        super().__init__()
        self.migration_id = migration_id
        self.dag_run_id = dag_run_id
        self.control_conn_id = control_conn_id
        self.wait_for_lease_seconds = wait_for_lease_seconds
        self.timeout = timeout
        self._stack: ExitStack | None = None

    def arguments(self) -> dict[str, Any]:
        return {
            "migration_id": self.migration_id,
            "dag_run_id": self.dag_run_id,
            "control_conn_id": self.control_conn_id,
            "wait_for_lease_seconds": self.wait_for_lease_seconds,
            "timeout": self.timeout,
        }

    async def _resolve(self, plan: dict) -> tuple[Any, Any]:
        """The lease plan's PgBouncers (admin connections held open) and servers, from Airflow connections."""
        from pgmigrate.cutover.guard import Sides
        from pgmigrate.cutover.routing.fleet import ClientRouting, PgBouncerInstance
        from pgmigrate.hooks.pgbouncer import switch_from_connection
        from pgmigrate.triggers.connections import connection_for, endpoint_for

        instances = [
            PgBouncerInstance(conn_id, switch_from_connection(await connection_for(conn_id)))
            for conn_id in plan["pgbouncers"]
        ]
        routing = ClientRouting(instances, plan["database"])
        sides = Sides(await endpoint_for(plan["origin"]["conn_id"]), await endpoint_for(plan["destination"]["conn_id"]))
        self._stack = ExitStack()
        await _blocking(self._stack.enter_context)(routing.held())
        return routing, sides

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from pgmigrate.control.pause_lease import ABANDONED, ARMED, PENDING, LeaseStore
        from pgmigrate.cutover.guard import enforce
        from pgmigrate.triggers.connections import endpoint_for

        try:
            store = LeaseStore(await endpoint_for(self.control_conn_id))
        except Exception as exc:
            message = f"pause guard: cannot read the connection {self.control_conn_id}: {exc}"
            yield TriggerEvent({"status": "error", "message": message})
            return
        started = time.monotonic()
        routing = sides = None
        last_beat = 0.0
        lease_id = None
        try:
            while True:
                try:
                    lease = await _blocking(store.latest_for_run)(self.migration_id, self.dag_run_id)
                except Exception as exc:  # the control database restarting: keep trying, the deadline is in it
                    log.warning("pause guard: cannot read the lease (%s); retrying", exc)
                    await asyncio.sleep(0.5)
                    continue
                if lease is None:
                    if time.monotonic() - started > self.wait_for_lease_seconds:
                        yield TriggerEvent({"status": "success", "message": "no pause was started by this DAG run"})
                        return
                    await asyncio.sleep(0.5)
                    continue
                if lease_id != lease.lease_id:
                    lease_id = lease.lease_id
                    log.info(
                        "pause guard: watching lease %s (%s, max pause %gs)",
                        lease_id,
                        lease.purpose,
                        lease.max_pause_seconds,
                    )
                if lease.active and routing is None:
                    routing, sides = await self._resolve(lease.plan)
                    log.info("pause guard: admin connections open to %s", ", ".join(routing.names))
                if lease.active and time.monotonic() - last_beat >= BEAT_SECONDS:
                    await _blocking(store.beat_guard)(lease.lease_id)
                    last_beat = time.monotonic()
                if lease.state == PENDING:
                    if lease.holder_stale():
                        await _blocking(store.end)(
                            lease.lease_id,
                            ABANDONED,
                            "pause guard",
                            "the cutover task stopped beating before it paused",
                            PENDING,
                        )
                        await asyncio.sleep(max(0.0, MIN_LIFETIME_SECONDS - (time.monotonic() - started)))
                        yield TriggerEvent(
                            {
                                "status": "success",
                                "message": f"lease {lease_id}: the cutover task "
                                "stopped before pausing; nothing was paused",
                            }
                        )
                        return
                    await asyncio.sleep(POLL_SECONDS)
                    continue
                if lease.state == ARMED and (lease.seconds_to_deadline() or 0) > 0:
                    if time.monotonic() - started > self.timeout:
                        raise TimeoutError("pause guard timed out")
                    await asyncio.sleep(min(POLL_SECONDS, max(0.0, lease.seconds_to_deadline() or 0)))
                    continue
                if routing is None:  # an ended lease seen for the first time: settle it anyway
                    routing, sides = await self._resolve(lease.plan)
                ended = await _blocking(enforce)(store, lease.lease_id, routing, sides, "the pause guard")
                if ended is None:
                    await asyncio.sleep(POLL_SECONDS)
                    continue
                await asyncio.sleep(max(0.0, MIN_LIFETIME_SECONDS - (time.monotonic() - started)))
                yield TriggerEvent(
                    {
                        "status": "success",
                        "state": ended.state,
                        "ended_by": ended.ended_by,
                        "message": (
                            f"pause lease {ended.lease_id} ended {ended.state} by {ended.ended_by}; clients settled "
                            f"({'destination' if ended.state == 'switched' else 'origin'})"
                        ),
                    }
                )
                return
        except Exception as exc:
            yield TriggerEvent({"status": "error", "message": f"pause guard failed: {exc}"})
        finally:
            await self._close()

    async def _close(self) -> None:
        if self._stack is not None:
            await _blocking(self._stack.close)()
            self._stack = None

    async def cleanup(self) -> None:
        await self._close()
