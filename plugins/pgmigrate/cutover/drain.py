"""Drain: with client writes held, prove that every change committed on the origin before the drain point
is on the destination. Positions, never sleeps:

1. Debezium produced everything before the point: a heartbeat row written on the origin after the point
   has reached the destination (Debezium reads the WAL in commit order, and Connect's producer keeps
   order with one request in flight per broker, so with one broker the records before the heartbeat are in
   Kafka). With several brokers a record to another leader may still be in flight: step 4 closes that gap
   (`after_drain`: once the slot confirms, the sink's committed offsets must pass the ends read again).
2. The sink applied everything in Kafka at that moment: its committed offsets passed the end offsets
   read then (Connect commits only what the sink has written; it commits every `offset.flush.interval.ms`,
   100 ms on the local stack, which is most of this step).
3. The native channel's subscription, if any, flushed the origin's WAL past the point.
4. Debezium's slot on the origin confirmed a position past the point (its offsets are committed: a
   restart of the capture would not read anything before the point again). The critical section waits for
   this one in a thread before it stops the capture, so the wait for Connect's next offset commit overlaps
   the verification instead of adding to the pause.

The end offsets of step 2 are the drain positions: the in-pause verification reads the keys that changed
up to them. Works for either direction: `names.reversed()` drains target -> source at rollback.
`Drainer` uses connections and Kafka clients opened before the pause; `wait_drained` opens its own.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import psycopg
from psycopg import sql

from pgmigrate.core.endpoints import PgEndpoint
from pgmigrate.core.naming import MigrationNames
from pgmigrate.cutover.change_topics import ChangeTopics, Positions, positions_to_json, reached
from pgmigrate.kafka.client_config import KafkaCluster
from pgmigrate.stream.heartbeat import heartbeat_action_query, heartbeat_table

log = logging.getLogger(__name__)


class DrainTimeout(TimeoutError):
    pass


@dataclass
class DrainResult:
    seconds: float
    point_lsn: str
    point_ts: datetime
    positions: Positions  # the sink's topics' end offsets once the heartbeat arrived: everything before is applied
    steps: dict[str, float] = field(default_factory=dict)

    @property
    def records_applied_to(self) -> int:
        return sum(self.positions.values())

    def as_dict(self) -> dict:
        return {
            "seconds": round(self.seconds, 3),
            "point_lsn": self.point_lsn,
            "records": self.records_applied_to,
            "positions": positions_to_json(self.positions),
            "steps": {k: round(v, 3) for k, v in self.steps.items()},
        }


def _until(what: str, check: Callable[[], bool], deadline: float, poll: float) -> None:
    while not check():
        if time.monotonic() > deadline:
            raise DrainTimeout(f"drain: {what} not reached before the deadline")
        time.sleep(poll)


def wait_sink_committed(topics: ChangeTopics, deadline: float, poll: float = 0.01) -> Positions:
    """Read the ends of the pipeline's topics (their partitions listed again: a table's first change creates its
    topic) and wait until the sink's committed offsets reach them; returns those ends. DrainTimeout past
    `deadline` (a `time.monotonic()` value)."""

    def left() -> float:
        return max(0.1, deadline - time.monotonic())

    topics.partitions(refresh=True)
    marks = topics.end_offsets(timeout=left())
    _until(
        "the sink's committed offsets at the topics' end",
        lambda: reached(marks, topics.sink_committed(timeout=left())),
        deadline,
        poll,
    )
    return marks


class Drainer:
    """The drain over open connections: `origin`, `destination` (autocommit) and the pipeline's topics."""

    def __init__(
        self,
        origin: psycopg.Connection,
        destination: psycopg.Connection,
        names: MigrationNames,
        topics: ChangeTopics | None,
        poll: float = 0.01,
    ) -> None:
        self.origin, self.destination, self.names, self.topics, self.poll = origin, destination, names, topics, poll
        self._heartbeat = sql.SQL("SELECT max(ts) FROM {}").format(heartbeat_table(names).ident)
        row = origin.execute(
            "SELECT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = %s)", (names.native_subscription,)
        ).fetchone()
        self.native = bool(row[0])

    def drain(self, timeout: float, wait_for_slot: bool = True) -> DrainResult:
        """`wait_for_slot=False`: leave step 4 to the caller (`slot_confirmed_past`), which can wait for it
        while doing other work: Debezium confirms its slot only when Connect commits its offsets."""
        started = time.monotonic()
        deadline = started + timeout
        steps: dict[str, float] = {}
        point_ts, point_lsn = self.origin.execute("SELECT clock_timestamp(), pg_current_wal_lsn()::text").fetchone()
        # Our own heartbeat after the point: the wait is the pipeline's latency, not also Debezium's interval.
        self.origin.execute(heartbeat_action_query(self.names))

        def heartbeat_passed() -> bool:
            ts = self.destination.execute(self._heartbeat).fetchone()[0]
            return ts is not None and ts >= point_ts

        _until("the heartbeat written after the drain point, on the destination", heartbeat_passed, deadline, self.poll)
        steps["heartbeat"] = time.monotonic() - started
        marks = wait_sink_committed(self.topics, deadline, self.poll)
        steps["sink_committed"] = time.monotonic() - started
        if self.native:
            _until(
                "the native channel's subscription flush position",
                lambda: self._native_past(point_lsn),
                deadline,
                self.poll,
            )
            steps["native_flushed"] = time.monotonic() - started
        if wait_for_slot:
            _until(
                "the slot's confirmed position past the drain point",
                lambda: self.slot_confirmed_past(point_lsn),
                deadline,
                self.poll,
            )
            steps["slot_confirmed"] = time.monotonic() - started
        seconds = time.monotonic() - started
        log.info(
            "drain: every change up to %s is on the destination (%.3fs: %s)",
            point_lsn,
            seconds,
            ", ".join(f"{k} at {v:.3f}s" for k, v in steps.items()),
        )
        return DrainResult(seconds, point_lsn, point_ts, marks, steps)

    def _native_past(self, lsn: str) -> bool:
        row = self.origin.execute(
            "SELECT flush_lsn >= %s::pg_lsn FROM pg_stat_replication WHERE application_name = %s",
            (lsn, self.names.native_subscription),
        ).fetchone()
        return bool(row and row[0])

    def slot_confirmed_past(self, lsn: str) -> bool:
        row = self.origin.execute(
            "SELECT confirmed_flush_lsn >= %s::pg_lsn FROM pg_replication_slots WHERE slot_name = %s",
            (lsn, self.names.slot),
        ).fetchone()
        return bool(row and row[0])


def wait_drained(
    origin: PgEndpoint,
    destination: PgEndpoint,
    names: MigrationNames,
    kafka: KafkaCluster,
    timeout: float,
    poll: float = 0.2,
) -> DrainResult:
    """Block until `destination` holds every change committed on `origin` before this call (outside a pause:
    the demo, tests). Opens its own connections and Kafka clients."""
    topics = ChangeTopics(kafka, names, [])
    try:
        with origin.connect(autocommit=True) as src, destination.connect(autocommit=True) as dst:
            return Drainer(src, dst, names, topics, poll).drain(timeout)
    finally:
        topics.close()
