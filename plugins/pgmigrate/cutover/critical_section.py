"""The critical section: from pausing client writes to resuming them, in one process, under one budget.

Before the pause (clients write freely; nothing here is timed against the pause; `before_pause`):
  the pause lease is created (`pgmigrate.control.pause_lease`); every PgBouncer is checked (routes to
  the origin, not paused, routes file = live route) and pinned; direct sessions are checked; the pre-copy
  passes shrink the keys left to verify (`verification`); the pause guard must be watching the lease (`guard`).
Inside the pause (each step logs its duration and the pause so far; every statement carries a
lock_timeout and statement_timeout from what is left of one budget):
  1. pause    every PgBouncer PAUSEd (in-flight transactions finish, new ones wait); all checked paused
  2. fence    the origin's application roles read-only, their direct sessions ended (`fence`)
  3. drain    every change committed before the drain point is on the destination (`drain`)
  4. capture  the origin's connectors told to stop, its native subscription disabled (`after_drain`)
  5. verify   rows whose keys changed since the last pass, compared at rest (`verification`)
  6. sequences destination sequences past the origin's (`sequences`); identities ALWAYS where clients go
  7. reverse  (cutover) the reverse pipeline's slots on the target; the source's identities BY DEFAULT
  8. writes   the origin's slots hold no change committed after the drain point (`after_drain`)
  9. switch   every PgBouncer routed to the destination, under the lease (`armed -> switched`)
 10. resume   the destination's old fence lifted (rollback), every PgBouncer resumed
After the pause the origin's slots are read once more for such changes (`after_drain`).
A failure before the switch ends the lease (`released`) and settles clients back on the origin
(`guard.settle`), then the caller undoes the pipeline changes. If this process dies, the pause guard
settles at the deadline; if it hangs, its own `DeadlineThread` does.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import psycopg

from pgmigrate.control.pause_lease import RELEASED, SWITCHED, Lease, LeaseLost, LeaseStore
from pgmigrate.cutover.after_drain import AfterDrain
from pgmigrate.cutover.before_pause import BeforePause
from pgmigrate.cutover.change_topics import ChangedKeys, ChangeTopics, Positions, positions_to_json
from pgmigrate.cutover.drain import Drainer
from pgmigrate.cutover.fence import FencePlan, apply_fence, end_sessions, lift_fence
from pgmigrate.cutover.guard import DeadlineThread, Sides, settle
from pgmigrate.cutover.reverse import create_slot_on, set_identity_generation_on
from pgmigrate.cutover.routing.fleet import ClientRouting
from pgmigrate.cutover.section_plan import CutoverAborted, PauseBudget, SectionPlan, SectionResult
from pgmigrate.cutover.verification import VerificationResult, verify_changes
from pgmigrate.kafka.client_config import KafkaCluster
from pgmigrate.kafka.connect_client import ConnectClient
from pgmigrate.validate.checksums import set_canonical_session

log = logging.getLogger(__name__)


class CriticalSection:
    """`routing` and `enforcer_routing`: the same PgBouncers as two objects (the deadline thread holds its own
    admin connections: psycopg connections are not shared between threads)."""

    def __init__(
        self,
        plan: SectionPlan,
        store: LeaseStore,
        routing: ClientRouting,
        enforcer_routing: ClientRouting,
        connect: ConnectClient,
        kafka: KafkaCluster,
        say: Callable[[str], None] = log.info,
    ) -> None:
        self.plan = plan
        self.store = store
        self.routing = routing
        self.enforcer_routing = enforcer_routing
        self.connect = connect
        self.kafka = kafka
        self.say = say
        self.result = SectionResult()
        self.keyed = {t.ref: t for t in plan.tables if t.primary_key}
        self.native = [t for t in plan.tables if t not in self.keyed.values()]
        self.before_pause = BeforePause(plan, store, routing, self.result, say)
        self.after_drain = AfterDrain(plan, connect, self.result, bool(self.native), say, kafka)
        self._expired = threading.Event()
        self._budget: PauseBudget | None = None

    # -- plumbing -----------------------------------------------------------------------------------

    @contextmanager
    def _connections(self) -> Iterator[tuple[psycopg.Connection, psycopg.Connection]]:
        """Origin and destination, opened before the pause and used by every step (canonical sessions, so
        row hashes compare; autocommit, so a failed statement leaves nothing open)."""
        with (
            self.plan.origin.endpoint.connect(autocommit=True) as origin,
            self.plan.destination.endpoint.connect(autocommit=True) as destination,
        ):
            for conn in (origin, destination):
                set_canonical_session(conn)
            self._spare_destination = None
            if self.plan.create_reverse_slots and self.native:
                self._spare_destination = self.plan.destination.endpoint.connect(autocommit=True)
            try:
                yield origin, destination
            finally:
                if self._spare_destination is not None:
                    self._spare_destination.close()

    def _step(self, name: str, work: Callable[[], str]) -> None:
        if self._expired.is_set():
            raise LeaseLost("the pause reached max_pause_seconds and was ended by the deadline enforcer")
        started = time.monotonic()
        try:
            what = work()
        except BaseException:
            self.result.failed_step = name
            paused = self._budget.elapsed() if self._budget else 0.0
            self.say(
                f"[{name:<9}] FAILED after {(time.monotonic() - started) * 1000:.1f} ms (writes paused "
                f"{paused:.3f}s so far)"
            )
            raise
        seconds = time.monotonic() - started
        paused = self._budget.elapsed() if self._budget else 0.0
        self.result.steps.append({"step": name, "seconds": round(seconds, 3), "paused_so_far": round(paused, 3)})
        self.say(f"[{name:<9}] {seconds * 1000:7.1f} ms  (writes paused {paused:.3f}s so far): {what}")

    def _heartbeat(self, lease_id: str, stop: threading.Event) -> None:
        while not stop.wait(1.0):
            try:
                self.store.beat_holder(lease_id)
            except Exception as exc:  # the guard only uses it for a pending lease; keep going
                log.warning("pause lease heartbeat: %s", exc)

    # -- the section --------------------------------------------------------------------------------

    def run(self) -> SectionResult:
        plan = self.plan
        lease = self.store.create(
            plan.migration_id,
            plan.dag_run_id,
            plan.purpose,
            plan.max_pause_seconds,
            {
                "database": plan.database,
                "pgbouncers": self.routing.names,
                "origin": plan.origin.as_plan(),
                "destination": plan.destination.as_plan(),
                "unfence_destination": plan.unfence_destination,
            },
        )
        self.result.lease_id = lease.lease_id
        stop_beating = threading.Event()
        threading.Thread(target=self._heartbeat, args=(lease.lease_id, stop_beating), daemon=True).start()
        if plan.force:
            try:
                with self.routing.held():
                    return self._forced(lease)
            finally:
                stop_beating.set()
        topics = ChangeTopics(self.kafka, plan.names, plan.tables)
        try:
            self.after_drain.open_topics()
            with self.routing.held(), self._connections() as (origin, destination):
                carried, since, fence = self.before_pause.prepare(
                    lease, topics, origin, destination, self.keyed, self.native
                )
                return self._pause(lease, topics, origin, destination, carried, since, fence)
        finally:
            stop_beating.set()
            topics.close()
            self.after_drain.close()

    def _pause(
        self,
        lease: Lease,
        topics: ChangeTopics,
        origin: psycopg.Connection,
        destination: psycopg.Connection,
        carried: ChangedKeys,
        since: Positions,
        fence: FencePlan,
    ) -> SectionResult:
        plan = self.plan
        sides = Sides(plan.origin.endpoint, plan.destination.endpoint)
        lease = self.store.arm(lease.lease_id)
        self._budget = budget = PauseBudget(plan.max_pause_seconds)
        enforcer = DeadlineThread(
            self.store,
            lease.lease_id,
            self.enforcer_routing,
            sides,
            budget.started + plan.max_pause_seconds,
            lambda _lease: self._expired.set(),
        )
        enforcer.start()
        drainer = Drainer(origin, destination, plan.names, topics)
        try:
            self._step("pause", lambda: self._pause_all(budget))
            budget.apply(origin, destination)
            self._step("fence", lambda: self._fence(origin, fence))
            self._step("drain", lambda: self._drain(drainer, budget))
            if plan.dry_run:
                self._step("verify", lambda: self._verify(topics, origin, destination, carried, since, budget))
                self._release("dry run complete", sides)
                return self.result
            self._step("capture", lambda: self.after_drain.stop_capture(destination, self._drained.point_lsn, budget))
            self._step("verify", lambda: self._verify(topics, origin, destination, carried, since, budget))
            budget.apply(origin, destination, *([self._spare_destination] if self._spare_destination else []))
            self._step("sequences", lambda: self._sequences(origin, destination))
            if plan.create_reverse_slots:
                self._step("reverse", lambda: self._reverse(origin, destination))
            budget.apply(origin)
            self._step(
                "writes", lambda: self.after_drain.no_writes_after_drain(origin, self._drained.point_lsn, budget)
            )
            self._step("switch", lambda: self._switch(lease, budget))
        except BaseException as exc:
            enforcer.stop()
            self._abort(lease, sides, exc)
            raise
        enforcer.stop()
        self._step("resume", lambda: self._resume(destination))
        self.result.pause_seconds = budget.elapsed()
        self.say(
            f"writes were paused {self.result.pause_seconds:.3f}s in all; clients now reach "
            f"{plan.destination.endpoint.label} through {', '.join(self.routing.names)}"
        )
        self.after_drain.late_writes(origin, self._drained.point_lsn)
        return self.result

    def _forced(self, lease: Lease) -> SectionResult:
        """The origin is gone: pause, switch, resume; nothing to drain or verify (what was not replayed is lost)."""
        plan = self.plan
        sides = Sides(plan.origin.endpoint, plan.destination.endpoint)
        problems = [p for p in self.routing.problems_before_pause(plan.origin.route) if "paused" in p]
        if problems:
            self.store.end(lease.lease_id, RELEASED, by="cutover task", note="not paused", expect="pending")
            raise CutoverAborted("PgBouncer is not ready: " + "; ".join(problems), "before_pause", {})
        self.before_pause.wait_for_guard(lease)
        self.store.arm(lease.lease_id)
        self._budget = budget = PauseBudget(plan.max_pause_seconds)
        try:
            self._step("pause", lambda: self._pause_all(budget))
            self._step("switch", lambda: self._switch(lease, budget))
        except BaseException as exc:
            self._abort(lease, sides, exc)
            raise
        self._step("resume", lambda: self._resume_forced())
        self.result.pause_seconds = budget.elapsed()
        return self.result

    def _resume_forced(self) -> str:
        problems = self.routing.resume()
        self.result.problems += problems
        if problems:
            return "resumed, but: " + "; ".join(problems)
        return f"{len(self.routing.instances)} PgBouncers resumed"

    # -- steps ----------------------------------------------------------------------------------------

    def _pause_all(self, budget: PauseBudget) -> str:
        # In-flight transactions may take this long to finish; the rest of the budget is for the steps.
        self.routing.pause(timeout_seconds=max(0.5, min(3.0, budget.remaining() / 3)))
        missing = self.routing.not_paused()
        if missing:
            raise RuntimeError(f"PgBouncer reports {self.plan.database} not paused on {', '.join(missing)}")
        return f"{len(self.routing.instances)} PgBouncers paused ({', '.join(self.routing.names)})"

    def _fence(self, origin: psycopg.Connection, fence: FencePlan) -> str:
        fenced = apply_fence(origin, fence)
        writers = set(fence.roles) | set(fence.unfenceable) | {self.plan.origin.endpoint.user}
        direct = [s for s in self.before_pause.direct_sessions(origin) if s.user in writers]
        ended, problems = end_sessions(origin, direct)
        self.result.fence = {"roles": fenced, "ended_sessions": ended, "problems": problems}
        return (
            f"{len(fenced)} application roles read-only ({', '.join(fenced) or 'none'}), "
            f"{len(ended)} direct sessions ended" + (f"; {'; '.join(problems)}" if problems else "")
        )

    def _drain(self, drainer: Drainer, budget: PauseBudget) -> str:
        result = drainer.drain(timeout=max(0.2, budget.remaining()), wait_for_slot=False)
        self._drained = result
        self.result.drain = result.as_dict()
        return f"every change up to {result.point_lsn} applied ({result.records_applied_to} records in Kafka)"

    def _verify(
        self,
        topics: ChangeTopics,
        origin: psycopg.Connection,
        destination: psycopg.Connection,
        carried: ChangedKeys,
        since: Positions,
        budget: PauseBudget,
    ) -> str:
        changes = topics.read_changes(since, self._drained.positions, deadline=time.monotonic() + budget.remaining())
        changes.add(carried)
        result: VerificationResult = verify_changes(origin, destination, self.keyed, changes)
        self.result.verification = {**result.as_dict(), "positions": positions_to_json(self._drained.positions)}
        if result.differences:
            if not self.plan.dry_run:
                # Rows written on the origin after the drain point differ too: name that cause if it is the one.
                self.after_drain.no_writes_after_drain(origin, self._drained.point_lsn, budget)
            raise CutoverAborted(
                f"in-pause verification: {len(result.differences)} rows differ at rest between "
                f"{self.plan.origin.endpoint.label} and {self.plan.destination.endpoint.label}: "
                + "; ".join(d.describe() for d in result.differences[:10])
                + ". Aborted; clients stay where they were. Compare and repair (scripts/migration compare, resync), "
                "then trigger again.",
                "verify",
                self.result.verification,
            )
        native = f"; {len(self.native)} native-channel tables proven by position" if self.native else ""
        return (
            f"{result.keys} changed keys in {result.tables} tables identical at rest "
            f"({result.records} change records since the last pass){native}"
        )

    def _sequences(self, origin: psycopg.Connection, destination: psycopg.Connection) -> str:
        from pgmigrate.cutover.sequences import sync_sequences_on

        self.result.sequences = sync_sequences_on(origin, destination, self.plan.schemas)
        always = set_identity_generation_on(
            destination, self.plan.destination.endpoint.label, self.plan.identity_columns, always=True
        )
        return f"{len(self.result.sequences)} sequences past the origin's; {always} identity columns ALWAYS"

    def _reverse(self, source: psycopg.Connection, target: psycopg.Connection) -> str:
        """Each slot creation waits for the target's running transactions to reach a consistent point: the
        two are made at once, the native channel's over a connection opened before the pause."""
        reverse = self.plan.names.reversed()
        created: list[str] = []
        with ThreadPoolExecutor(max_workers=1) as pool:
            native = (
                pool.submit(create_slot_on, self._spare_destination, reverse.native_subscription)
                if self._spare_destination is not None
                else None
            )
            if create_slot_on(target, reverse.slot):
                created.append(reverse.slot)
            if native is not None and native.result():
                created.append(reverse.native_subscription)
        self.result.reverse_slots = created
        by_default = set_identity_generation_on(
            source, self.plan.origin.endpoint.label, self.plan.identity_columns, always=False
        )
        return (
            f"reverse slots {', '.join(self.result.reverse_slots) or '(exist)'} keep every target change; "
            f"{by_default} source identity columns BY DEFAULT for the reverse sink"
        )

    def _switch(self, lease: Lease, budget: PauseBudget) -> str:
        route = self.plan.destination.route
        try:
            with self.store.switching(lease.lease_id, lock_timeout_ms=budget.timeout_ms(), by="cutover task"):
                for i in self.routing.instances:
                    i.switch.lock_timeout = max(0.2, budget.remaining())
                self.routing.switch_to(route)
        except LeaseLost:
            raise
        except Exception:
            # The commit's outcome is what the row says (a lost connection at COMMIT leaves it unknown here).
            current = self.store.get(lease.lease_id)
            if current is None or current.state != SWITCHED:
                raise
        self.result.switched = True
        return f"{', '.join(self.routing.names)} route {self.plan.database} to {route}; lease switched"

    def _resume(self, destination: psycopg.Connection) -> str:
        """Clients go on at once: the destination's old fence (a rollback's source) lifted over the open
        connection, then every PgBouncer resumed (the pause guard settles again, harmlessly, if this fails)."""
        problems = []
        fence = FencePlan.from_dict(self.plan.unfence_destination)
        if fence is not None and fence.roles:
            try:
                lift_fence(destination, fence)
            except psycopg.Error as exc:
                problems.append(f"fence on the destination not lifted: {str(exc).strip()}")
        problems += self.routing.resume()
        self.result.problems += problems
        if problems:
            return "resumed, but: " + "; ".join(problems) + " (the pause guard retries)"
        return f"{len(self.routing.instances)} PgBouncers resumed"

    # -- the way back ----------------------------------------------------------------------------------

    def _release(self, why: str, sides: Sides) -> None:
        """End the pause ourselves (dry run, or a failed step) and put clients back on the origin. If an
        enforcer already ended it, it settled the clients; settling again is harmless."""
        won = self.store.end(self.result.lease_id, RELEASED, by="cutover task", note=why[:500])
        lease = self.store.get(self.result.lease_id)
        if lease is not None and lease.state != SWITCHED:
            self.result.problems += settle(lease, self.routing, sides)
        if self._budget is not None:
            self.result.pause_seconds = self._budget.elapsed()
        by = "this task" if won else (lease.ended_by if lease else "?")
        self.say(
            f"pause ended by {by}: {why}; clients on the origin, writes were paused {self.result.pause_seconds:.3f}s"
        )

    def _abort(self, lease: Lease, sides: Sides, exc: BaseException) -> None:
        current = self.store.get(lease.lease_id)
        if current is not None and current.state == SWITCHED:
            return  # the switch committed: clients belong on the destination (the caller resumes)
        try:
            self._release(f"aborted: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}", sides)
        except Exception as release_exc:  # the guard settles at the deadline; say so
            log.error("could not end the pause myself (%s); the pause guard ends it at the deadline", release_exc)
