"""Who ends a pause, and how clients are put back: shared by every enforcer of the pause lease.

`settle(lease, ...)` brings the clients to where the lease's state says they belong, idempotently:
- `switched`: the destination; the fence the destination still carried (rollback: the one the cutover
  left on the source) is lifted, and every PgBouncer is resumed;
- `released`, `expired`, `abandoned`: the origin; the fence applied in this pause is lifted, every
  PgBouncer is pointed back at the origin where it is not, and resumed.
`enforce(store, lease_id, ...)` is one look at a lease by an enforcer: once the database's clock is past
the deadline it tries `armed -> expired` and, if it won, settles. Whoever ends a lease settles it; the
enforcers also settle any lease that has ended, so a winner that died halfway is completed by another.

The enforcers are the cutover task's own thread (`DeadlineThread`) and the pause guard in Airflow's
triggerer (`pgmigrate.triggers.pause_guard`), which outlives a `kill -9` of the task's process.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from pgmigrate.control.pause_lease import ARMED, EXPIRED, PENDING, SWITCHED, Lease, LeaseStore
from pgmigrate.core.endpoints import PgEndpoint
from pgmigrate.cutover.fence import FencePlan, lift_fence
from pgmigrate.cutover.routing.fleet import ClientRouting
from pgmigrate.cutover.routing.routes import Route

log = logging.getLogger(__name__)


@dataclass
class Sides:
    """The two servers of a lease's plan, as endpoints (resolved from its connection ids by the caller)."""

    origin: PgEndpoint
    destination: PgEndpoint


def route_of(plan_side: dict) -> Route:
    r = plan_side["route"]
    return Route(host=r["host"], port=int(r["port"]), dbname=r["dbname"])


def _lift(endpoint: PgEndpoint, fence: dict | None) -> list[str]:
    plan = FencePlan.from_dict(fence)
    if plan is None or not plan.roles:
        return []
    with endpoint.with_settings(statement_timeout="5s", lock_timeout="2s").connect(autocommit=True) as conn:
        return lift_fence(conn, plan)


def settle(lease: Lease, routing: ClientRouting, sides: Sides) -> list[str]:
    """Clients where the lease's state says they belong (see the module docstring); problems, as text.
    Each part is tried even if another fails: the pause must end whatever else is broken."""
    plan = lease.plan
    problems: list[str] = []
    if lease.state in (ARMED, PENDING):
        raise ValueError(f"lease {lease.lease_id} is {lease.state}: nothing decided yet")
    if lease.state == SWITCHED:
        fence, endpoint = plan.get("unfence_destination"), sides.destination
    else:
        fence, endpoint = plan.get("fence_origin"), sides.origin
    try:
        _lift(endpoint, fence)
    except Exception as exc:
        problems.append(f"fence not lifted on {endpoint.label}: {str(exc).splitlines()[0]}")
    if lease.state == SWITCHED:
        problems += routing.resume()
    else:
        problems += routing.restore(route_of(plan["origin"]))
    where = "destination" if lease.state == SWITCHED else "origin"
    if problems:
        log.error("pause %s (%s): clients on the %s, but: %s", lease.lease_id, lease.state, where, "; ".join(problems))
    else:
        log.info("pause %s (%s): every PgBouncer resumed, clients on the %s", lease.lease_id, lease.state, where)
    return problems


def enforce(store: LeaseStore, lease_id: str, routing: ClientRouting, sides: Sides, by: str) -> Lease | None:
    """One look by an enforcer. Returns the lease once it has ended (and was settled), None while it is
    still pending or armed before its deadline."""
    lease = store.get(lease_id)
    if lease is None:
        return None
    if lease.state == ARMED:
        remaining = lease.seconds_to_deadline()
        if remaining is None or remaining > 0:
            return None
        if store.end(lease_id, EXPIRED, by=by, note="deadline reached before the switch"):
            log.warning(
                "pause %s: max_pause_seconds reached and not switched: %s puts clients back on the origin", lease_id, by
            )
        lease = store.get(lease_id)
        if lease is None or lease.state == ARMED:
            return None  # the switch holds the row: look again
    if lease.state == PENDING:
        return None
    settle(lease, routing, sides)
    return lease


class DeadlineThread(threading.Thread):
    """The cutover process's own enforcer: at the deadline it tries to expire the lease and settle it.
    Covers a hung step while the process lives (the pause guard covers the process dying). Uses its own
    routing (its own held admin connections): PgBouncer connections are not shared between threads."""

    def __init__(
        self,
        store: LeaseStore,
        lease_id: str,
        routing: ClientRouting,
        sides: Sides,
        deadline_monotonic: float,
        on_expired: Callable[[Lease], None],
    ) -> None:
        super().__init__(name=f"pause-deadline-{lease_id}", daemon=True)
        self.store, self.lease_id, self.routing, self.sides = store, lease_id, routing, sides
        self.deadline = deadline_monotonic
        self.on_expired = on_expired
        self._stop = threading.Event()

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> None:
        try:
            with self.routing.held():
                while not self._stop.wait(max(0.0, min(0.05, self.deadline - time.monotonic()))):
                    if time.monotonic() < self.deadline:
                        continue
                    lease = enforce(self.store, self.lease_id, self.routing, self.sides, by="the cutover's deadline")
                    if lease is not None:
                        if lease.state == EXPIRED:
                            self.on_expired(lease)
                        return
        except Exception:  # the pause guard is the next line of defence; say loudly that this one failed
            log.exception("the in-process pause enforcer failed; the pause guard (triggerer) still enforces")
