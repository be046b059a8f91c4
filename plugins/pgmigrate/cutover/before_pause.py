"""Before the pause of a critical section (`BeforePause`): clients write freely, nothing is timed against it.

Every PgBouncer checked (routes to the origin, not paused, routes file = live route) and pinned; sessions
connected straight to the origin refused unless allowed; the fence planned and written ahead into the lease;
the change topics' retention checked; the pause guard watching the lease (`guard`); the pre-copy passes last,
so they end right before the pause and leave few keys to verify inside it (`verification`). Any failure
ends the lease `released`: nothing was paused.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import psycopg

from pgmigrate.control.pause_lease import RELEASED, Lease, LeaseStore
from pgmigrate.core.catalog import TableInfo, TableRef
from pgmigrate.cutover.change_topics import ChangedKeys, ChangeTopics, Positions
from pgmigrate.cutover.fence import FencePlan, Session, direct_sessions, plan_fence
from pgmigrate.cutover.routing.fleet import ClientRouting
from pgmigrate.cutover.section_plan import CutoverAborted, SectionPlan, SectionResult
from pgmigrate.cutover.verification import precopy_passes


@dataclass
class BeforePause:
    """The preparation of one section; fills `result.passes`. `direct_sessions` serves the fence step too."""

    plan: SectionPlan
    store: LeaseStore
    routing: ClientRouting
    result: SectionResult
    say: Callable[[str], None]

    def prepare(
        self,
        lease: Lease,
        topics: ChangeTopics,
        origin: psycopg.Connection,
        destination: psycopg.Connection,
        keyed: dict[TableRef, TableInfo],
        native: list[TableInfo],
    ) -> tuple[ChangedKeys, Positions, FencePlan]:
        """(keys the passes carried into the pause, positions they reached, the origin's fence plan)."""
        plan = self.plan
        try:
            problems = self.routing.problems_before_pause(plan.origin.route)
            if problems:
                raise CutoverAborted("PgBouncer is not ready: " + "; ".join(problems), "before_pause", {})
            self.routing.pin(plan.origin.route)
            direct = self.direct_sessions(origin)
            if direct and not plan.allow_direct_sessions:
                raise CutoverAborted(
                    f"{len(direct)} sessions are connected straight to the origin {plan.origin.endpoint.label}, not "
                    f"through PgBouncer: {'; '.join(s.describe() for s in direct[:10])}. Their writes would not "
                    "follow the switch. Move them to PgBouncer or stop them, or allow them (allow_direct_sessions: "
                    "the cutover then ends their sessions, makes their roles read-only and aborts if one writes).",
                    "before_pause",
                    {"direct_sessions": [s.as_dict() for s in direct]},
                )
            fence = plan_fence(origin, list(keyed) + [t.ref for t in native])
            if fence.unfenceable:
                self.say(
                    f"fence: superuser roles {', '.join(fence.unfenceable)} can write and cannot be made "
                    "read-only by this role; the slot check before the switch still catches their writes"
                )
            topics.check_retained(plan.since)
            # The guard first (its task starts in parallel with this one): the passes then end right before the pause.
            self.wait_for_guard(lease)
            since, carried, passes = precopy_passes(
                topics, origin, destination, keyed, plan.since, max_passes=plan.precopy_passes, say=self.say
            )
            self.result.passes = [p.as_dict() for p in passes]
            # Written ahead: whoever settles this pause lifts the fence even if this process dies right after.
            self.store.update_plan(lease.lease_id, fence_origin=fence.as_dict())
            return carried, since, fence
        except BaseException as exc:
            self.store.end(
                lease.lease_id, RELEASED, by="cutover task", note=f"not paused: {exc}"[:500], expect="pending"
            )
            raise

    def wait_for_guard(self, lease: Lease) -> None:
        """No pause without an enforcer that outlives this process: the pause guard must watch the lease."""
        deadline = time.monotonic() + self.plan.guard_wait_seconds
        while True:
            current = self.store.get(lease.lease_id)
            if current is not None and current.guard_watching():
                return
            if time.monotonic() > deadline:
                raise CutoverAborted(
                    f"the pause guard did not start watching lease {lease.lease_id} within "
                    f"{self.plan.guard_wait_seconds:.0f}s, so a pause could outlive this process: not pausing. "
                    "The pause_guard task of this DAG run must be deferred (running in the triggerer): check it, and "
                    "that the triggerer runs (scripts/airflow jobs check --job-type TriggererJob). If you cleared "
                    "only this task, clear pause_guard too.",
                    "before_pause",
                    {},
                )
            time.sleep(0.2)

    def direct_sessions(self, origin: psycopg.Connection) -> list[Session]:
        """Sessions on the origin that do not come through any of the PgBouncers."""
        return direct_sessions(origin, self.routing.server_pids(), self.plan.origin.endpoint.user)
