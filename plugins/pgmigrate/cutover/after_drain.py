"""The origin past the drain point, for one critical section (`AfterDrain`).

Inside the pause: the origin's capture stopped once Debezium's slot confirms the drain point and the sink has
committed every record Kafka then holds (in a thread, while verification runs), then the origin's slots proven to
hold no change committed after that point (`fence.writes_after`): such a change would not follow the switch, so
the section aborts. Right after the switch: the slots read once more, since nothing carries a change that slipped
in between the check and the switch; it is reported, not undone.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import psycopg

from pgmigrate.cutover.change_topics import ChangeTopics
from pgmigrate.cutover.drain import Drainer, wait_sink_committed
from pgmigrate.cutover.fence import wait_slot_released, writes_after
from pgmigrate.cutover.reverse import disable_native_subscription, stop_connectors
from pgmigrate.cutover.section_plan import CutoverAborted, PauseBudget, SectionPlan, SectionResult
from pgmigrate.kafka.client_config import KafkaCluster
from pgmigrate.kafka.connect_client import ConnectClient

log = logging.getLogger(__name__)


@dataclass
class AfterDrain:
    """The capture stop and the slot checks of one section; `native`: the section has native-channel tables,
    so the origin's native slot is read too. Fills `result` (`drain`, `stopped`, `late_writes`)."""

    plan: SectionPlan
    connect: ConnectClient
    result: SectionResult
    native: bool
    say: Callable[[str], None]
    kafka: KafkaCluster | None = None
    _topics: ChangeTopics | None = field(default=None, init=False)
    _capture: threading.Thread | None = field(default=None, init=False)
    _capture_error: BaseException | None = field(default=None, init=False)

    def origin_slots(self) -> list[tuple[str, str]]:
        """(slot, publication) of every channel that captures the origin."""
        names = self.plan.names
        slots = [(names.slot, names.publication)]
        if self.native:
            slots.append((names.native_subscription, names.native_publication))
        return slots

    def _writes_after(
        self, origin: psycopg.Connection, point_lsn: str, release_timeout: float | None = None
    ) -> dict[str, int]:
        """Rows per table committed on the origin after `point_lsn`, over every slot; with `release_timeout`,
        each slot is first given that long for its reader to let go (logged)."""
        found: dict[str, int] = {}
        for slot, publication in self.origin_slots():
            if release_timeout is not None:
                how = wait_slot_released(origin, slot, timeout=release_timeout)
                self.say(f"           slot {slot}: {how}")
            for table, count in writes_after(origin, slot, publication, point_lsn).items():
                found[table] = found.get(table, 0) + count
        return found

    def stop_capture(self, destination: psycopg.Connection, point_lsn: str, budget: PauseBudget) -> str:
        """The native subscription is disabled here and now. In a thread, while verification runs: wait for the
        drain's last proofs, Debezium's slot confirmed past the drain point (it confirms when Connect commits
        its offsets) and then the sink's committed offsets past the topics' ends read again (`_sink_caught_up`,
        with the clients of `open_topics`), then ask Connect to stop the origin's connectors (two REST calls).
        The slot check joins the thread."""
        disable_native_subscription(destination, self.plan.names)
        deadline = time.monotonic() + max(0.1, budget.remaining())

        def confirm_then_stop() -> None:
            try:
                with self.plan.origin.endpoint.connect(autocommit=True) as conn:
                    drainer = Drainer(conn, conn, self.plan.names, None)  # only its slot reading is used
                    while not drainer.slot_confirmed_past(point_lsn):
                        if time.monotonic() > deadline:
                            raise TimeoutError(
                                f"the slot {self.plan.names.slot} did not confirm the drain point "
                                f"{point_lsn} within the pause"
                            )
                        time.sleep(0.01)
                self.result.drain["slot_confirmed_at"] = round(budget.elapsed(), 3)
                if self._topics is not None:
                    self._sink_caught_up(deadline)
                    self.result.drain["sink_committed_after_slot_at"] = round(budget.elapsed(), 3)
                self.result.stopped = stop_connectors(self.connect, self.plan.names)
            except BaseException as exc:  # re-raised by the slot check
                self._capture_error = exc

        self._capture_error = None
        self._capture = threading.Thread(target=confirm_then_stop, name="stop-capture", daemon=True)
        self._capture.start()
        return "native subscription disabled; the connectors stop once the slot confirms the drain point"

    def open_topics(self) -> None:
        """Before the pause: the Kafka clients the capture thread re-reads the topics with (its own: a consumer is
        not safe to share with the verification's, which runs at the same time)."""
        if self.kafka is not None and self._topics is None:
            self._topics = ChangeTopics(self.kafka, self.plan.names, [])

    def close(self) -> None:
        if self._capture is not None and self._capture.is_alive():
            return  # the section gave up on the thread; it may still read through these clients
        if self._topics is not None:
            self._topics.close()
            self._topics = None

    def _sink_caught_up(self, deadline: float) -> None:
        """The drain's proof on any number of brokers. The slot confirms a position only once Connect has committed
        the source's offsets past it, and Connect commits them only for records every broker acknowledged: so now
        every record of a change before the drain point is in Kafka, even one that went to another leader than the
        heartbeat and arrived after the drain read its end offsets. Read the ends again and wait for the sink's
        committed offsets to pass them before the sink is stopped."""
        wait_sink_committed(self._topics, deadline)

    def no_writes_after_drain(self, origin: psycopg.Connection, point_lsn: str, budget: PauseBudget) -> str:
        """Before the switch: the capture stopped (its thread joined), then no change committed after the drain
        point in the origin's slots; CutoverAborted names the tables if there is one."""
        if self._capture is None:
            raise RuntimeError("the slot check needs the capture stopped first (stop_capture)")
        self._capture.join(timeout=max(0.1, budget.remaining()))
        if self._capture.is_alive():
            raise TimeoutError("Kafka Connect did not take the stop of the origin's connectors within the pause")
        if self._capture_error is not None:
            raise self._capture_error
        found = self._writes_after(origin, point_lsn, release_timeout=min(0.3, max(0.05, budget.remaining() / 4)))
        if found:
            raise CutoverAborted(
                f"writes reached the origin {self.plan.origin.endpoint.label} after the drain point "
                f"{point_lsn}, outside PgBouncer: "
                + ", ".join(f"{t} ({n} rows)" for t, n in sorted(found.items()))
                + ". Aborted before the switch, nothing is lost: those changes stay on the origin and reach the "
                "destination when the pipeline resumes. Find the writer (pg_stat_activity on the origin) and move it "
                "to PgBouncer or stop it, then trigger again.",
                "writes",
                {"tables": found},
            )
        return f"no change committed after {point_lsn} in {', '.join(s for s, _ in self.origin_slots())}"

    def late_writes(self, origin: psycopg.Connection, point_lsn: str) -> None:
        """After the pause, before anything writes to the origin on purpose (the reverse sink starts later):
        a change that reached the origin between the check and the switch would be in its slots now."""
        origin.execute("SELECT set_config('statement_timeout', '30s', false)")
        found = self._writes_after(origin, point_lsn)
        self.result.late_writes = found
        if found:
            log.error(
                "after the switch: changes committed on the origin after the drain point %s, not on the "
                "destination: %s. Nothing carries them now; compare and copy them by hand (rows of %s).",
                point_lsn,
                found,
                ", ".join(found),
            )
        else:
            self.say(f"after the switch: no change on the origin after the drain point in {self.plan.names.slot}")
