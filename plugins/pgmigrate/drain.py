"""Drain: after client writes are paused, wait until every change committed on the source before the
pause is on the target. Positions, not sleeps:

1. Debezium produced everything before the drain point: the heartbeat row, written on the source
   after the point (by the drain itself, then every second by Debezium), has reached the target
   (Debezium reads the WAL in order, and Connect's producer sends with one request in flight per
   broker, so the records before the heartbeat are in Kafka).
2. The sink applied everything in Kafka at that moment: its committed offsets passed the topics' end
   offsets read then (the sink commits only what it wrote to the database).
3. The native channel's subscription, if any, flushed WAL past the drain point.

Works for either direction: `names.reversed()` drains the target -> source pipeline at rollback.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime

from psycopg import sql

from pgmigrate.endpoints import PgEndpoint
from pgmigrate.heartbeat import beat, heartbeat_table
from pgmigrate.lag import read_sink_offsets, sink_reached
from pgmigrate.naming import MigrationNames

log = logging.getLogger(__name__)


class DrainTimeout(TimeoutError):
    pass


@dataclass
class DrainResult:
    seconds: float
    point_lsn: str
    records_applied_to: int  # sum of the end offsets the sink had to pass

    def as_dict(self) -> dict:
        return {"seconds": round(self.seconds, 2), "point_lsn": self.point_lsn, "records": self.records_applied_to}


def _until(what: str, check, deadline: float, poll: float) -> None:
    while not check():
        if time.monotonic() > deadline:
            raise DrainTimeout(f"drain: {what} not reached before the deadline")
        time.sleep(poll)


def wait_drained(
    origin: PgEndpoint,
    destination: PgEndpoint,
    names: MigrationNames,
    bootstrap_servers: str,
    timeout: float,
    poll: float = 0.2,
) -> DrainResult:
    """Block until the destination holds every change committed on `origin` before this call."""
    started = time.monotonic()
    deadline = started + timeout
    with origin.connect(autocommit=True) as conn:
        point_ts, point_lsn = conn.execute("SELECT clock_timestamp(), pg_current_wal_lsn()::text").fetchone()
    log.info("drain: point %s on %s (%s)", point_lsn, origin.label, point_ts.isoformat())
    # Our own heartbeat after the point, so the wait is the pipeline's latency, not also up to
    # Debezium's next heartbeat interval.
    beat(origin, names)

    heartbeat_query = sql.SQL("SELECT max(ts) FROM {}").format(heartbeat_table(names).ident)
    with destination.connect(autocommit=True) as conn:

        def heartbeat_passed() -> bool:
            ts: datetime | None = conn.execute(heartbeat_query).fetchone()[0]
            return ts is not None and ts >= point_ts

        _until("the heartbeat written after the drain point on the target", heartbeat_passed, deadline, poll)
    log.info("drain: heartbeat after the point applied (%.1fs)", time.monotonic() - started)

    marks, _ = read_sink_offsets(bootstrap_servers, names)
    _until(
        "the sink's committed offsets at the topics' end",
        lambda: sink_reached(marks, read_sink_offsets(bootstrap_servers, names)[1]),
        deadline,
        poll,
    )
    log.info("drain: sink committed past %d records (%.1fs)", sum(marks.values()), time.monotonic() - started)

    with origin.connect(autocommit=True) as conn:
        native = conn.execute(
            "SELECT 1 FROM pg_replication_slots WHERE slot_name = %s", (names.native_subscription,)
        ).fetchone()
        if native:

            def subscription_flushed() -> bool:
                row = conn.execute(
                    "SELECT flush_lsn >= %s::pg_lsn FROM pg_stat_replication WHERE application_name = %s",
                    (point_lsn, names.native_subscription),
                ).fetchone()
                return bool(row and row[0])

            _until("the native channel's subscription flush position", subscription_flushed, deadline, poll)
            log.info("drain: native channel's subscription flushed past %s", point_lsn)
    seconds = time.monotonic() - started
    log.info("drain: complete in %.1fs", seconds)
    return DrainResult(seconds=seconds, point_lsn=point_lsn, records_applied_to=sum(marks.values()))
