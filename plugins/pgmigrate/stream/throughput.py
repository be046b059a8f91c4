"""Throughput and error counts of a streaming migration, sampled by every monitor run.

Produced: the sum of the end offsets of the migration's data topics (records Debezium wrote). Applied:
the sum of the sink group's committed offsets on them (records the sink wrote or dead-lettered). The rate
is the change between two samples over the control DB's clock; a total that went down (topics deleted
and created again by a reset) gives no rate rather than a negative one. The report charts them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from pgmigrate.core.endpoints import PgEndpoint
from pgmigrate.core.naming import MigrationNames
from pgmigrate.kafka.client_config import KafkaCluster


def rate_per_second(
    previous_total: int | None, previous_at: datetime | None, total: int | None, at: datetime
) -> float | None:
    """Records per second between two samples; None without an earlier sample or when the total fell."""
    if previous_total is None or previous_at is None or total is None:
        return None
    seconds = (at - previous_at).total_seconds()
    if seconds <= 0 or total < previous_total:
        return None
    return (total - previous_total) / seconds


def offset_totals(
    end_offsets: Mapping[tuple[str, int], int], committed: Mapping[tuple[str, int], int]
) -> tuple[int, int]:
    """(produced, applied) over the data topics' partitions; a partition never committed counts 0 applied."""
    return sum(end_offsets.values()), sum(committed.get(tp, 0) for tp in end_offsets)


def failed_tasks(statuses: Mapping[str, Mapping[str, Any] | None] | None) -> int | None:
    """FAILED connectors and tasks among `GET /connectors/<name>/status` documents (None: not read)."""
    if statuses is None:
        return None
    count = 0
    for status in statuses.values():
        if not status:
            continue
        count += (status.get("connector") or {}).get("state") == "FAILED"
        count += sum(t.get("state") == "FAILED" for t in status.get("tasks") or [])
    return count


@dataclass(frozen=True)
class ThroughputSample:
    at: datetime
    produced_total: int | None
    applied_total: int | None
    produced_per_second: float | None
    applied_per_second: float | None
    dead_letters: int | None
    failed_tasks: int | None


def record_throughput(
    control: PgEndpoint,
    migration_id: str,
    produced_total: int | None,
    applied_total: int | None,
    dead_letters: int | None,
    failed: int | None,
) -> ThroughputSample:
    """Store one sample, its rates taken against the previous sample of the migration."""
    from pgmigrate.control.state import MigrationStateStore

    store = MigrationStateStore(control)
    now, prev = store.now_and_last_throughput(migration_id)
    prev_at, prev_produced, prev_applied = prev if prev else (None, None, None)
    sample = ThroughputSample(
        now,
        produced_total,
        applied_total,
        rate_per_second(prev_produced, prev_at, produced_total, now),
        rate_per_second(prev_applied, prev_at, applied_total, now),
        dead_letters,
        failed,
    )
    store.record_throughput(migration_id, asdict(sample))
    return sample


def sample_throughput(
    control: PgEndpoint,
    migration_id: str,
    names: MigrationNames,
    kafka: KafkaCluster,
    statuses: Mapping[str, Mapping[str, Any] | None] | None,
    dead_letters: int | None,
) -> ThroughputSample:
    """Read the live direction's offsets from Kafka and record a sample (the monitor's reading)."""
    from pgmigrate.stream.lag import read_sink_offsets

    produced, applied = offset_totals(*read_sink_offsets(kafka, names))
    return record_throughput(control, migration_id, produced, applied, dead_letters, failed_tasks(statuses))
