"""Dead letters: the change records the JDBC sink could not write, when a migration runs with
`dead_letter=true` (connector_configs.dead_letter_config), and what brings the target whole again.

A dead letter is never an accepted loss. Every record in the migration's DLQ topic past the
acknowledged offsets is a P0 alert (`dead_letters`) and fails the pre-cutover checklist. The way out:
fix the cause (a constraint, a type, a full disk), resync exactly the keys the records name
(pgmigrate.recovery.dead_letter_resync), check that those rows now equal the source, and acknowledge:
`scripts/migration dlq --migration-id ID --resync`, then `--ack`. Rows the target rejects reach the topic
through pgmigrate.recovery.dead_letter_quarantine (Debezium 3.6's sink cannot put them there itself).

Here: parsing a DLQ record, the unacknowledged count, the listing; then Kafka and the control DB.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pgmigrate.control.state import MigrationStateStore
from pgmigrate.core.catalog import TableRef
from pgmigrate.core.endpoints import PgEndpoint
from pgmigrate.core.naming import MigrationNames
from pgmigrate.kafka.client_config import KafkaCluster, client_config

log = logging.getLogger(__name__)

# Headers Kafka Connect adds to a DLQ record (errors.deadletterqueue.context.headers.enable=true).
HEADER_PREFIX = "__connect.errors."
ORIGINAL_TOPIC = HEADER_PREFIX + "topic"
ORIGINAL_PARTITION = HEADER_PREFIX + "partition"
ORIGINAL_OFFSET = HEADER_PREFIX + "offset"
EXCEPTION_CLASS = HEADER_PREFIX + "exception.class.name"
EXCEPTION_MESSAGE = HEADER_PREFIX + "exception.message"
EXCEPTION_STACKTRACE = HEADER_PREFIX + "exception.stacktrace"
_OPS = {"c": "insert", "u": "update", "d": "delete", "r": "snapshot read", "t": "truncate"}


# --- parsing (pure) ---------------------------------------------------------------------------------------


def _text(value: bytes | str | None) -> str | None:
    if value is None:
        return None
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def parse_json_payload(raw: bytes | str | None) -> Any:
    """A JsonConverter record (`{"schema": …, "payload": …}` with schemas enabled, or the bare payload)."""
    text = _text(raw)
    if not text:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return text
    if isinstance(value, dict) and "payload" in value and set(value) <= {"schema", "payload"}:
        return value["payload"]
    return value


def root_cause(message: str | None, stacktrace: str | None) -> str:
    """The most specific error: the last `Caused by:` of the stack trace (the database's own message,
    e.g. a violated CHECK constraint), else the exception message Connect recorded."""
    causes = [
        line.strip()[len("Caused by:") :].strip()
        for line in (stacktrace or "").splitlines()
        if line.strip().startswith("Caused by:")
    ]
    return (causes[-1] if causes else (message or "")).strip() or "(no error message recorded)"


def table_from_topic(topic: str | None, names: MigrationNames) -> TableRef | None:
    """`<prefix>.<schema>.<table>` -> the table, for a record whose value names no source (it failed to convert).
    None when the topic cannot say: a dot inside a schema or table name makes the split ambiguous. (Debezium
    writes `_` for what a topic cannot hold, so such a name reads back as its sanitized form.)"""
    prefix = names.topic_prefix + "."
    if not topic or not topic.startswith(prefix):
        return None
    parts = topic[len(prefix) :].split(".")
    return TableRef(*parts) if len(parts) == 2 and all(parts) else None


@dataclass(frozen=True)
class DeadLetter:
    """One DLQ record: where it came from, the row's key and why the sink rejected it."""

    partition: int
    offset: int
    topic: str | None  # the data topic it was read from
    table: TableRef | None
    key: dict[str, Any] | None  # primary key columns -> values, as in the record key
    operation: str
    error: str
    source_position: str | None = None  # "partition:offset" in the data topic (Connect's headers)

    @property
    def table_name(self) -> str:
        return self.table.qualified if self.table else "(unknown table)"


def parse_dead_letter(
    partition: int,
    offset: int,
    key: bytes | None,
    value: bytes | None,
    headers: Iterable[tuple[str, bytes | None]] | None,
    names: MigrationNames,
) -> DeadLetter:
    found = {name: _text(raw) for name, raw in (headers or [])}
    topic = found.get(ORIGINAL_TOPIC)
    payload = parse_json_payload(value)
    source = payload.get("source") if isinstance(payload, dict) else None
    if isinstance(source, dict) and source.get("schema") and source.get("table"):
        table = TableRef(source["schema"], source["table"])
    else:
        table = table_from_topic(topic, names)
    parsed_key = parse_json_payload(key)
    op = payload.get("op") if isinstance(payload, dict) else None
    return DeadLetter(
        partition=partition,
        offset=offset,
        topic=topic,
        table=table,
        key=parsed_key if isinstance(parsed_key, dict) else None,
        operation=_OPS.get(op, op or "?"),
        error=root_cause(found.get(EXCEPTION_MESSAGE), found.get(EXCEPTION_STACKTRACE)),
        source_position=(
            f"{found.get(ORIGINAL_PARTITION)}:{found[ORIGINAL_OFFSET]}"
            if found.get(ORIGINAL_OFFSET) is not None
            else None
        ),
    )


def keys_by_table(letters: Iterable[DeadLetter]) -> dict[TableRef, list[dict[str, Any]]]:
    """The distinct keys per table, in first-seen order (what a keys resync must re-read)."""
    grouped: dict[TableRef, list[dict[str, Any]]] = {}
    for letter in letters:
        if letter.table is None or not letter.key:
            continue
        keys = grouped.setdefault(letter.table, [])
        if letter.key not in keys:
            keys.append(letter.key)
    return grouped


# --- backlog and acknowledgement (pure) -------------------------------------------------------------------


@dataclass(frozen=True)
class DeadLetterBacklog:
    """The DLQ topic's offsets now and the acknowledged ones (void when the topic was recreated since)."""

    topic_exists: bool
    topic_id: str | None = None
    low: dict[int, int] = field(default_factory=dict)
    end: dict[int, int] = field(default_factory=dict)
    acked: dict[int, int] = field(default_factory=dict)
    acked_topic_id: str | None = None

    @property
    def start_offsets(self) -> dict[int, int]:
        """Per partition, the first record not acknowledged (records below `low` are gone by retention)."""
        valid = self.acked if self.acked_topic_id == self.topic_id else {}
        return {p: max(self.low.get(p, 0), valid.get(p, 0)) for p in self.end}

    @property
    def unacknowledged(self) -> int:
        starts = self.start_offsets
        return sum(max(0, end - starts[p]) for p, end in self.end.items())

    @property
    def total(self) -> int:
        """Records in the topic now (within retention)."""
        return sum(max(0, end - self.low.get(p, 0)) for p, end in self.end.items())


def dead_letter_alert_text(migration_id: str, count: int) -> str:
    return (
        f"{count} change record(s) the sink could not write are in the dead letter queue: the target "
        f"misses them. List them: scripts/migration dlq --migration-id {migration_id}"
    )


def checklist_detail(migration_id: str, backlog: DeadLetterBacklog | None) -> tuple[bool, str]:
    """The pre-cutover checklist's `dead_letters` item: (ok, detail)."""
    if backlog is None:
        return False, "could not read the dead letter topic from Kafka; cutover needs to know it is empty"
    count = backlog.unacknowledged
    if not count:
        return True, "no unacknowledged dead letters"
    return False, (
        f"{count} unacknowledged dead letter(s): the target misses those changes. Run scripts/migration "
        f"dlq --migration-id {migration_id} (then --resync and --ack once the cause is fixed)"
    )


def format_dead_letters(
    migration_id: str, letters: Sequence[DeadLetter], backlog: DeadLetterBacklog, limit: int
) -> str:
    """What `scripts/migration dlq` prints: one line per dead-lettered change (Connect may write one twice when
    a batch is redelivered: copies of the same source position are shown once, counted), then what to do."""
    names = MigrationNames(migration_id)
    if not backlog.topic_exists:
        return (
            f"no dead letter topic {names.dead_letter_topic} (the migration runs fail-fast, dead_letter=false, "
            "or nothing was ever rejected)"
        )
    lines = [
        f"dead letter topic {names.dead_letter_topic}: {backlog.total} record(s), "
        f"{backlog.unacknowledged} not acknowledged"
    ]
    shown: dict[tuple, list[DeadLetter]] = {}
    for d in letters:
        same = (d.topic, d.source_position) if d.source_position else (d.partition, d.offset)
        shown.setdefault(same, []).append(d)
    for copies in list(shown.values())[:limit]:
        d = copies[0]
        key = json.dumps(d.key, default=str) if d.key is not None else "(no key)"
        extra = f" ({len(copies)} copies)" if len(copies) > 1 else ""
        lines.append(f"  [{d.partition}:{d.offset}] {d.table_name} key {key} {d.operation}: {d.error}{extra}")
    if len(shown) > limit:
        lines.append(f"  … and {len(shown) - limit} more (--limit)")
    if letters:
        tables = " ".join(f"--table {t.qualified}" for t in keys_by_table(letters))
        lines += [
            "What to do: fix the cause above on the target (nothing is lost: the source holds every row), then",
            f"  scripts/migration dlq --migration-id {migration_id} --resync   # re-read exactly these keys",
            f"  (or whole tables: scripts/migration resync --migration-id {migration_id} {tables})",
            f"  scripts/migration dlq --migration-id {migration_id} --ack      # after the rows match the source",
        ]
    return "\n".join(lines)


# --- Kafka ------------------------------------------------------------------------------------------------


def read_backlog(
    kafka: KafkaCluster, control: PgEndpoint, names: MigrationNames, timeout: float = 10.0
) -> DeadLetterBacklog:
    """The DLQ topic's watermarks and the acknowledgement stored in the control DB."""
    from confluent_kafka import Consumer, TopicCollection, TopicPartition
    from confluent_kafka.admin import AdminClient

    topic = names.dead_letter_topic
    admin = AdminClient(client_config(kafka))
    metadata = admin.list_topics(timeout=timeout)
    if topic not in metadata.topics:
        return DeadLetterBacklog(topic_exists=False)
    description = admin.describe_topics(TopicCollection([topic]))[topic].result(timeout)
    consumer = Consumer(
        client_config(
            kafka,
            {
                "group.id": f"pgmigrate-dlq-{names.migration_id}",
                "enable.auto.commit": False,
            },
        )
    )
    low, end = {}, {}
    try:
        for p in metadata.topics[topic].partitions:
            low[p], end[p] = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout)
    finally:
        consumer.close()
    acked, acked_topic_id = MigrationStateStore(control).dead_letter_ack(names.migration_id)
    return DeadLetterBacklog(True, str(description.topic_id), low, end, acked, acked_topic_id)


def read_dead_letters(
    kafka: KafkaCluster,
    names: MigrationNames,
    backlog: DeadLetterBacklog,
    everything: bool = False,
    timeout: float = 20.0,
) -> list[DeadLetter]:
    """The records between the acknowledged offsets (or, with `everything`, the topic's start) and the
    end offsets of `backlog`: a fixed range, so records arriving meanwhile wait for the next call."""
    import time

    from confluent_kafka import Consumer, TopicPartition

    starts = backlog.low if everything else backlog.start_offsets
    wanted = {p: (starts.get(p, 0), end) for p, end in backlog.end.items() if end > starts.get(p, 0)}
    if not wanted:
        return []
    consumer = Consumer(
        client_config(
            kafka,
            {
                "group.id": f"pgmigrate-dlq-{names.migration_id}",
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
            },
        )
    )
    letters: list[DeadLetter] = []
    done: set[int] = set()
    try:
        consumer.assign([TopicPartition(names.dead_letter_topic, p, start) for p, (start, _) in wanted.items()])
        deadline = time.monotonic() + timeout
        while len(done) < len(wanted):
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"read only {len(letters)} dead letters of {names.dead_letter_topic} in {timeout:.0f}s; retry"
                )
            msg = consumer.poll(1.0)
            if msg is None or msg.error():
                continue
            p, end = msg.partition(), wanted[msg.partition()][1]
            if msg.offset() < end:
                letters.append(parse_dead_letter(p, msg.offset(), msg.key(), msg.value(), msg.headers(), names))
            if msg.offset() >= end - 1:
                done.add(p)
    finally:
        consumer.close()
    return sorted(letters, key=lambda d: (d.partition, d.offset))


# --- control DB -------------------------------------------------------------------------------------------


def acknowledge(control: PgEndpoint, migration_id: str, backlog: DeadLetterBacklog, note: str = "") -> int:
    """Mark every record up to `backlog`'s end offsets as handled; returns how many this covered."""
    newly = backlog.unacknowledged
    MigrationStateStore(control).acknowledge_dead_letters(migration_id, backlog.topic_id, backlog.end, newly, note)
    return newly
