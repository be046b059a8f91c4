"""A pipeline's change topics as positions and as the keys that changed between two positions.

The in-pause verification compares only the rows whose keys changed after the last validated positions
(see `verification`): Kafka names them. `ChangeTopics` keeps its Kafka clients open across calls (the
pre-pause passes and the pause itself), because creating a client and assigning partitions costs round
trips the pause should not pay.

Positions are `{(topic, partition): offset}`; a topic or partition not listed starts at offset 0 (the
topics are created by the pipeline, so offset 0 is its first change). JSON form: `{"topic:partition": offset}`.

Keys are decoded from the JSON converter's key record (`{"schema": …, "payload": {column: value}}`) back
into PostgreSQL's text form, using Debezium's semantic type names (dates as days, timestamps as epoch
microseconds, and so on), so the database parses each value with its own input function. A key whose type
cannot be turned back (a struct) makes its table "undecodable": it is compared whole instead.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import time
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from pgmigrate.core.catalog import CONTROL_SCHEMA, TableInfo, TableRef
from pgmigrate.core.naming import MigrationNames
from pgmigrate.kafka.client_config import KafkaCluster, client_config

log = logging.getLogger(__name__)

Positions = dict[tuple[str, int], int]
_EPOCH = datetime(1970, 1, 1)
# Debezium replaces characters Kafka topic names cannot hold.


def positions_to_json(positions: Positions) -> dict[str, int]:
    return {f"{topic}:{partition}": offset for (topic, partition), offset in sorted(positions.items())}


def positions_from_json(data: dict[str, int] | None) -> Positions:
    result: Positions = {}
    for key, offset in (data or {}).items():
        topic, _, partition = key.rpartition(":")
        result[(topic, int(partition))] = int(offset)
    return result


def topic_of(names: MigrationNames, table: TableRef) -> str:
    """The change topic Debezium writes `table`'s changes to (`<prefix>.<schema>.<table>`, sanitized)."""
    return names.change_topic(table.schema, table.name)


def _time_text(micros: int) -> str:
    seconds, micro = divmod(micros, 1_000_000)
    minutes, second = divmod(seconds, 60)
    hour, minute = divmod(minutes, 60)
    return f"{hour:02d}:{minute:02d}:{second:02d}.{micro:06d}"


def value_text(schema: dict[str, Any], value: Any) -> str | None:
    """A key column's value as PostgreSQL text, from its Connect schema; None when it cannot be decoded."""
    if value is None:
        return None
    name = schema.get("name") or ""
    kind = schema.get("type")
    if name == "io.debezium.time.Date":
        return (date(1970, 1, 1) + timedelta(days=value)).isoformat()
    if name in ("io.debezium.time.MicroTimestamp", "io.debezium.time.Timestamp", "io.debezium.time.NanoTimestamp"):
        micros = {"io.debezium.time.MicroTimestamp": value, "io.debezium.time.Timestamp": value * 1000}.get(
            name, value // 1000
        )
        return (_EPOCH + timedelta(microseconds=micros)).isoformat(sep=" ")
    if name in ("io.debezium.time.MicroTime", "io.debezium.time.Time", "io.debezium.time.NanoTime"):
        micros = {"io.debezium.time.MicroTime": value, "io.debezium.time.Time": value * 1000}.get(name, value // 1000)
        return _time_text(micros)
    if name == "org.apache.kafka.connect.data.Decimal":
        scale = int((schema.get("parameters") or {}).get("scale", 0))
        unscaled = int.from_bytes(base64.b64decode(value), "big", signed=True)
        return str(Decimal(unscaled).scaleb(-scale))
    if kind == "struct" or kind == "array" or kind == "map":
        return None
    if kind == "boolean":
        return "true" if value else "false"
    if kind == "bytes":
        return "\\x" + base64.b64decode(value).hex()
    if kind in ("float32", "float64"):
        return repr(float(value))
    return str(value)


def key_texts(key: dict[str, Any], primary_key: list[str]) -> tuple[str, ...] | None:
    """The primary key of one key record, in `primary_key` order, as PostgreSQL text (None: undecodable)."""
    schema, payload = key.get("schema") or {}, key.get("payload")
    if not isinstance(payload, dict):
        return None
    fields = {f.get("field"): f for f in schema.get("fields") or []}
    values = []
    for column in primary_key:
        if column not in payload or column not in fields:
            return None
        text = value_text(fields[column], payload[column])
        if text is None:
            return None
        values.append(text)
    return tuple(values)


@dataclass
class ChangedKeys:
    """What changed between two positions, per table."""

    keys: dict[TableRef, set[tuple[str, ...]]] = field(default_factory=dict)
    truncated: set[TableRef] = field(default_factory=set)  # a TRUNCATE: the key set cannot say what is left
    undecodable: set[TableRef] = field(default_factory=set)
    records: int = 0

    def add(self, other: ChangedKeys) -> None:
        for table, keys in other.keys.items():
            self.keys.setdefault(table, set()).update(keys)
        self.truncated |= other.truncated
        self.undecodable |= other.undecodable
        self.records += other.records

    @property
    def key_count(self) -> int:
        return sum(len(k) for k in self.keys.values())

    def whole_tables(self) -> set[TableRef]:
        """Tables to compare whole rather than by key."""
        return self.truncated | self.undecodable


class ChangeTopicsGap(RuntimeError):
    """Kafka no longer holds the changes since a recorded position (retention deleted them)."""


class ChangeTopics:
    """Kafka clients for one pipeline's topics, kept open: its data topics (mapped to tables), the end
    offsets of every topic of its prefix, and the sink's committed offsets."""

    def __init__(
        self, kafka: KafkaCluster, names: MigrationNames, tables: list[TableInfo], timeout: float = 10.0
    ) -> None:
        from confluent_kafka import Consumer
        from confluent_kafka.admin import AdminClient

        self.names = names
        self.timeout = timeout
        self.tables = {topic_of(names, t.ref): t for t in tables if t.primary_key and t.ref.schema != CONTROL_SCHEMA}
        self._prefix = re.compile(rf"^{re.escape(names.topic_prefix)}\.")
        common = client_config(kafka)
        self._admin = AdminClient(common)
        self._sink = Consumer({**common, "group.id": names.sink_consumer_group, "enable.auto.commit": False})
        self._reader = Consumer(
            {
                **common,
                "group.id": f"pgmigrate-verify-{names.topic_prefix}",
                "enable.auto.commit": False,
                "enable.partition.eof": False,
                "fetch.wait.max.ms": 10,
            }
        )
        self._partitions: list[tuple[str, int]] | None = None

    def close(self) -> None:
        for consumer in (self._sink, self._reader):
            try:
                consumer.close()
            except Exception:  # closing after a broker loss must not hide the first error
                pass

    def partitions(self, refresh: bool = False) -> list[tuple[str, int]]:
        """Every partition of the pipeline's topics (data, heartbeat table, signal table)."""
        if self._partitions is None or refresh:
            metadata = self._admin.list_topics(timeout=self.timeout)
            self._partitions = sorted(
                (name, p)
                for name, topic in metadata.topics.items()
                if self._prefix.match(name)
                for p in topic.partitions
            )
        return self._partitions

    def _list_offsets(self, spec_name: str, timeout: float | None = None) -> Positions:
        from confluent_kafka import TopicPartition
        from confluent_kafka.admin import OffsetSpec

        spec = OffsetSpec.latest() if spec_name == "latest" else OffsetSpec.earliest()
        parts = self.partitions()
        if not parts:
            return {}
        futures = self._admin.list_offsets(
            {TopicPartition(t, p): spec for t, p in parts}, request_timeout=timeout or self.timeout
        )
        return {(tp.topic, tp.partition): f.result().offset for tp, f in futures.items()}

    def end_offsets(self, timeout: float | None = None) -> Positions:
        """The next offset of every partition: everything produced so far lies before it."""
        return self._list_offsets("latest", timeout)

    def start_offsets(self) -> Positions:
        return self._list_offsets("earliest")

    def sink_committed(self, timeout: float | None = None) -> Positions:
        """The sink's committed offsets: Connect commits only what the sink has written to the database."""
        from confluent_kafka import TopicPartition

        parts = [TopicPartition(t, p) for t, p in self.partitions()]
        if not parts:
            return {}
        committed = self._sink.committed(parts, timeout=timeout or self.timeout)
        return {(tp.topic, tp.partition): tp.offset for tp in committed if tp.offset >= 0}

    def check_retained(self, since: Positions) -> None:
        """Raise ChangeTopicsGap if a data topic no longer holds the records after `since`."""
        starts = self.start_offsets()
        gone = [
            f"{t}[{p}] starts at {low}, needed from {since.get((t, p), 0)}"
            for (t, p), low in starts.items()
            if t in self.tables and low > since.get((t, p), 0)
        ]
        if gone:
            raise ChangeTopicsGap("Kafka no longer holds the changes since the last validation: " + "; ".join(gone))

    def read_changes(self, since: Positions, until: Positions, deadline: float | None = None) -> ChangedKeys:
        """The keys of every data-topic record in [since, until), per table (`deadline`: time.monotonic())."""
        from confluent_kafka import KafkaError, TopicPartition

        result = ChangedKeys()
        todo = {tp: end for tp, end in until.items() if tp[0] in self.tables and end > since.get(tp, 0)}
        if not todo:
            return result
        self._reader.assign([TopicPartition(t, p, since.get((t, p), 0)) for t, p in todo])
        try:
            while todo:
                if deadline is not None and time.monotonic() > deadline:
                    raise TimeoutError(f"reading the changed keys: {len(todo)} partitions not read before the deadline")
                for message in self._reader.consume(num_messages=5000, timeout=0.05):
                    if message.error():
                        if message.error().code() == KafkaError._PARTITION_EOF:
                            continue
                        raise RuntimeError(f"reading {message.topic()}[{message.partition()}]: {message.error()}")
                    tp = (message.topic(), message.partition())
                    end = todo.get(tp)
                    if end is None or message.offset() >= end:
                        continue
                    self._take(result, self.tables[tp[0]], message)
                    if message.offset() >= end - 1:
                        del todo[tp]
        finally:
            self._reader.unassign()
        return result

    @staticmethod
    def _take(result: ChangedKeys, table: TableInfo, message: Any) -> None:
        result.records += 1
        raw = message.key()
        if raw is None:  # a TRUNCATE (or a message without a key): the table must be compared whole
            value = json.loads(message.value()) if message.value() else {}
            op = ((value or {}).get("payload") or {}).get("op")
            (result.truncated if op == "t" else result.undecodable).add(table.ref)
            return
        texts = key_texts(json.loads(raw), table.primary_key)
        if texts is None:
            result.undecodable.add(table.ref)
        else:
            result.keys.setdefault(table.ref, set()).add(texts)


def reached(marks: Positions, committed: Positions) -> bool:
    """Every partition committed at least up to `marks` (offsets that did not exist count as 0)."""
    return all(committed.get(tp, 0) >= offset for tp, offset in marks.items())
