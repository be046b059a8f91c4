"""How far behind the target is: end-to-end lag from the heartbeat, the sink's consumer-group lag in
Kafka, and the WAL the source keeps for the slot. Pure arithmetic first, readers after.
"""

from __future__ import annotations

import logging
import re
from dataclasses import asdict, dataclass
from datetime import datetime

from psycopg import sql

from pgmigrate.core.endpoints import PgEndpoint
from pgmigrate.core.naming import MigrationNames
from pgmigrate.core.waits import WaitStatus
from pgmigrate.kafka.client_config import KafkaCluster, client_config, cluster_name
from pgmigrate.kafka.connect_client import ConnectClient
from pgmigrate.kafka.connect_errors import ConnectError
from pgmigrate.kafka.connector_status import failed_connectors
from pgmigrate.stream.heartbeat import heartbeat_table

log = logging.getLogger(__name__)


def lag_seconds(heartbeat_ts: datetime | None, now: datetime) -> float | None:
    """Age of the newest heartbeat that reached the target; None before the first one arrived."""
    if heartbeat_ts is None:
        return None
    return max(0.0, (now - heartbeat_ts).total_seconds())


def consumer_lag(end_offsets: dict[tuple[str, int], int], committed: dict[tuple[str, int], int]) -> int:
    """Records produced but not yet committed by the sink, summed over partitions.
    A partition the group never committed counts from the start of the topic (offset 0)."""
    return sum(max(0, end - committed.get(tp, 0)) for tp, end in end_offsets.items())


def format_bytes(n: int | None) -> str:
    if n is None:
        return "?"
    value = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(value) < 1024 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


@dataclass
class LagReading:
    end_to_end_seconds: float | None
    sink_consumer_lag: int | None
    retained_wal_bytes: int | None
    # The native channel's subscription (see native_replication); None when not streaming.
    native_expected: bool = False
    native_seconds: float | None = None

    def caught_up(self, max_lag_seconds: float) -> bool:
        """Both channels are within the threshold: the Debezium pipeline (heartbeat) and, when the migration
        has a native channel (keyless or timetz tables), its subscription."""
        if self.end_to_end_seconds is None or self.end_to_end_seconds >= max_lag_seconds:
            return False
        if not self.native_expected:
            return True
        return self.native_seconds is not None and self.native_seconds < max_lag_seconds

    def describe(self) -> str:
        e2e = "no heartbeat on target yet" if self.end_to_end_seconds is None else f"{self.end_to_end_seconds:.1f}s"
        sink = "?" if self.sink_consumer_lag is None else f"{self.sink_consumer_lag} records"
        text = f"end-to-end lag {e2e}, sink consumer lag {sink}, slot retains {format_bytes(self.retained_wal_bytes)}"
        if self.native_expected:
            native = "not streaming" if self.native_seconds is None else f"{self.native_seconds:.1f}s"
            text += f", native subscription lag {native}"
        return text

    def as_dict(self) -> dict:
        return asdict(self)


def read_end_to_end_lag(source: PgEndpoint, target: PgEndpoint, names: MigrationNames) -> float | None:
    """now() on the source minus the heartbeat time the target holds: both from the source's clock."""
    with target.connect(autocommit=True) as conn:
        row = conn.execute(sql.SQL("SELECT max(ts) FROM {table}").format(table=heartbeat_table(names).ident)).fetchone()
    heartbeat_ts = row[0] if row else None
    with source.connect(autocommit=True) as conn:
        now = conn.execute("SELECT now()").fetchone()[0]
    return lag_seconds(heartbeat_ts, now)


def read_retained_wal_bytes(source: PgEndpoint, slot: str) -> int | None:
    with source.connect(autocommit=True) as conn:
        row = conn.execute(
            "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint FROM pg_replication_slots "
            "WHERE slot_name = %s",
            (slot,),
        ).fetchone()
    return row[0] if row else None


def read_sink_offsets(
    kafka: KafkaCluster, names: MigrationNames, timeout: float = 10.0
) -> tuple[dict[tuple[str, int], int], dict[tuple[str, int], int]]:
    """(end offsets, the sink group's committed offsets) of every partition of the migration's topics."""
    from confluent_kafka import Consumer, TopicPartition
    from confluent_kafka.admin import AdminClient

    admin = AdminClient(client_config(kafka))
    topic_re = re.compile(rf"^{re.escape(names.topic_prefix)}\.")
    metadata = admin.list_topics(timeout=timeout)
    partitions = [
        TopicPartition(name, p)
        for name, topic in metadata.topics.items()
        if topic_re.match(name)
        for p in topic.partitions
    ]
    if not partitions:
        return {}, {}
    consumer = Consumer(client_config(kafka, {"group.id": names.sink_consumer_group, "enable.auto.commit": False}))
    try:
        committed = {
            (tp.topic, tp.partition): tp.offset
            for tp in consumer.committed(partitions, timeout=timeout)
            if tp.offset >= 0
        }
        end_offsets = {}
        for tp in partitions:
            _low, high = consumer.get_watermark_offsets(tp, timeout=timeout)
            end_offsets[(tp.topic, tp.partition)] = high
    finally:
        consumer.close()
    return end_offsets, committed


def read_sink_consumer_lag(kafka: KafkaCluster, names: MigrationNames, timeout: float = 10.0) -> int | None:
    """Sum over the migration's data topics of end offset minus the sink group's committed offset."""
    end_offsets, committed = read_sink_offsets(kafka, names, timeout)
    return consumer_lag(end_offsets, committed)


def sink_applied_within(
    kafka: KafkaCluster, names: MigrationNames, seconds: float, poll: float = 0.5, timeout: float = 10.0
) -> tuple[bool, str]:
    """Whether the sink committed, within `seconds`, every record the migration's topics hold now, on every
    partition: then no partition is more than `seconds` behind. The heartbeat cannot say so alone: it travels in
    its own topic, and the sink reads partitions independently (one table's backlog can lag while the heartbeat
    arrives promptly, more so with several brokers and partitions). Returns (done, what was found)."""
    import time

    from confluent_kafka import Consumer, TopicPartition

    ends, committed = read_sink_offsets(kafka, names, timeout)
    deadline = time.monotonic() + seconds
    consumer = Consumer(client_config(kafka, {"group.id": names.sink_consumer_group, "enable.auto.commit": False}))
    try:
        while True:
            behind = {tp: end - committed.get(tp, 0) for tp, end in ends.items() if committed.get(tp, 0) < end}
            if not behind:
                return True, f"the sink committed the ends of all {len(ends)} partitions within {seconds:.1f}s"
            if time.monotonic() > deadline:
                (topic, partition), records = max(behind.items(), key=lambda item: item[1])
                return False, (
                    f"{len(behind)} of {len(ends)} partitions not applied within {seconds:.1f}s; furthest behind "
                    f"{topic}[{partition}] by {records} records"
                )
            time.sleep(poll)
            wanted = [TopicPartition(t, p) for t, p in behind]
            committed.update(
                {
                    (tp.topic, tp.partition): tp.offset
                    for tp in consumer.committed(wanted, timeout=timeout)
                    if tp.offset >= 0
                }
            )
    finally:
        consumer.close()


def sink_reached(marks: dict[tuple[str, int], int], committed: dict[tuple[str, int], int]) -> bool:
    """The sink committed at least up to `marks` (end offsets taken earlier) on every partition: all
    records written before the marks were taken are applied, whatever arrived since."""
    return all(committed.get(tp, 0) >= offset for tp, offset in marks.items())


def read_lag(source: PgEndpoint, target: PgEndpoint, names: MigrationNames, kafka: KafkaCluster | None) -> LagReading:
    sink_lag = None
    if kafka:
        try:
            sink_lag = read_sink_consumer_lag(kafka, names)
        except Exception as exc:  # Kafka being briefly unreachable must not fail a lag poke
            log.warning("could not read the sink's consumer lag from Kafka (%s): %s", cluster_name(kafka), exc)
    from pgmigrate.stream.native_replication import has_native_channel, read_native_lag

    native_expected = has_native_channel(source, names)
    return LagReading(
        end_to_end_seconds=read_end_to_end_lag(source, target, names),
        sink_consumer_lag=sink_lag,
        retained_wal_bytes=read_retained_wal_bytes(source, names.slot),
        native_expected=native_expected,
        native_seconds=read_native_lag(source, names) if native_expected else None,
    )


def caught_up(
    source: PgEndpoint,
    target: PgEndpoint,
    names: MigrationNames,
    kafka: KafkaCluster | None,
    connect: ConnectClient | None,
    max_lag_seconds: float,
) -> WaitStatus:
    """`wait_caught_up`: done when the end-to-end lag is under `max_lag_seconds` and the sink then commits, within
    that long, every partition's end (`sink_applied_within`); fatal when a connector FAILED
    (it never catches up). Connect briefly unreachable does not end the wait: the lag reading says enough."""
    if connect is not None:
        try:
            failed = failed_connectors(connect, [names.source_connector, names.sink_connector])
        except ConnectError as exc:
            log.warning("lag: could not read connector status (%s)", exc)
            failed = None
        if failed:
            return WaitStatus.failed(f"while waiting for lag: {failed}")
    reading = read_lag(source, target, names, kafka)
    done = reading.caught_up(max_lag_seconds)
    message = f"lag: {reading.describe()} (threshold {max_lag_seconds:.1f}s)"
    if done and kafka:
        try:
            done, found = sink_applied_within(kafka, names, max_lag_seconds)
        except Exception as exc:  # unknown is not caught up; the wait goes on
            done, found = False, f"could not read the sink's offsets from Kafka ({cluster_name(kafka)}): {exc}"
        message += f"; {found}"
    return WaitStatus(done, message, result=reading.as_dict())
