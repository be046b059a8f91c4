"""Quarantine: dead-lettering of rows the target rejects, done by the platform, for `dead_letter=true`.

Debezium 3.6's JDBC sink does not hand a failed write to Connect's errant record reporter: a row the target
rejects (a CHECK or NOT NULL constraint, a value out of range) FAILs the task even with
`errors.tolerance=all`. So the monitor does what the reporter would: it reads the rejected statement from
the task's trace (table and key of the batch entry PostgreSQL refused), stops the sink, copies the records of
that topic partition from the sink's committed offset up to and including the rejected one into the DLQ
topic (with Connect's error headers), moves the sink's offset just past it and resumes the sink.

The records before the rejected one in that range were in the same aborted batch (offsets are committed
every second), so they are dead-lettered too, marked as such: `dlq --resync` re-reads every listed key from
the source, which repairs them all. A trace that does not name a data error of one row (a lost connection,
a missing table) is left alone: the sink stays FAILED and the P0 `connector_failed` stands (fail-fast).
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass
from typing import Any

from pgmigrate.core.catalog import TableRef
from pgmigrate.core.naming import MigrationNames
from pgmigrate.kafka.client_config import KafkaCluster, client_config
from pgmigrate.kafka.connect_client import ConnectClient
from pgmigrate.recovery.dead_letters import (
    EXCEPTION_CLASS,
    EXCEPTION_MESSAGE,
    EXCEPTION_STACKTRACE,
    HEADER_PREFIX,
    ORIGINAL_OFFSET,
    ORIGINAL_PARTITION,
    ORIGINAL_TOPIC,
    parse_json_payload,
)

log = logging.getLogger(__name__)

# PostgreSQL's messages for errors that belong to one row's values (SQLSTATE classes 22 and 23).
ROW_ERRORS = (
    "violates check constraint",
    "violates not-null constraint",
    "violates unique constraint",
    "violates exclusion constraint",
    "value too long",
    "out of range",
    "invalid input syntax",
    "invalid input value",
    "numeric field overflow",
)
_BATCH_ENTRY = re.compile(r"Batch entry \d+ (?P<sql>INSERT INTO .+?) was aborted: (?P<error>ERROR: [^\n]+)", re.S)
_IDENT = r'"(?:[^"]|"")+"'
# A pattern that reads the sink's statement from the trace, not SQL anyone runs.
_INSERT_HEAD = "INSERT INTO (?P<schema>" + _IDENT + r")\.(?P<table>" + _IDENT + ")"  # noqa: S608
_INSERT_TAIL = r" \((?P<cols>[^)]*)\) VALUES \((?P<vals>.*)\) ON CONFLICT \((?P<keys>[^)]*)\)"
_INSERT = re.compile(_INSERT_HEAD + _INSERT_TAIL, re.S)
QUARANTINED = "__pgmigrate.quarantined"  # header: "rejected" (the row the target refused) or "same-batch"
MAX_PER_PASS = 5  # each takes ~10 s (stop, copy, resume, settle); the monitor task has 3 min for every migration


@dataclass(frozen=True)
class RejectedRow:
    table: TableRef
    key: dict[str, str | None]  # key column -> the value as bound (text)
    error: str


def _unquote_ident(ident: str) -> str:
    return ident[1:-1].replace('""', '"')


def _split_values(text: str) -> list[str | None]:
    """`('7'::int4),('a''b'),(NULL)` -> ['7', "a'b", None]: each element's leading literal, unescaped."""
    values: list[str | None] = []
    i, n = 0, len(text)
    while i < n:
        if text[i] != "(":
            i += 1
            continue
        i += 1
        if text[i] == "'":
            j, chunk = i + 1, []
            while j < n:
                if text[j] == "'" and j + 1 < n and text[j + 1] == "'":
                    chunk.append("'")
                    j += 2
                elif text[j] == "'":
                    break
                else:
                    chunk.append(text[j])
                    j += 1
            values.append("".join(chunk))
            i = j + 1
        else:
            end = text.index(")", i)
            raw = text[i:end].strip()
            values.append(None if raw.upper() == "NULL" else raw.split("::")[0])
            i = end
        depth = 0  # skip to the element's closing parenthesis (casts such as ::numeric(10,2) nest)
        while i < n and not (text[i] == ")" and depth == 0):
            depth += text[i] == "("
            depth -= text[i] == ")"
            i += 1
        i += 1
    return values


def parse_rejected_row(trace: str | None) -> RejectedRow | None:
    """The row PostgreSQL refused, from a FAILED sink task's trace; None unless it is a one-row data error."""
    match = _BATCH_ENTRY.search(trace or "")
    if not match or not any(marker in match["error"] for marker in ROW_ERRORS):
        return None
    insert = _INSERT.match(match["sql"])
    if not insert:
        return None
    columns = [_unquote_ident(c.strip()) for c in re.findall(_IDENT, insert["cols"])]
    keys = [_unquote_ident(c.strip()) for c in re.findall(_IDENT, insert["keys"])]
    values = _split_values(insert["vals"])
    if len(values) != len(columns) or not keys or any(k not in columns for k in keys):
        return None
    row = dict(zip(columns, values, strict=True))
    return RejectedRow(
        TableRef(_unquote_ident(insert["schema"]), _unquote_ident(insert["table"])),
        {k: row[k] for k in keys},
        match["error"].strip(),
    )


def key_matches(record_key: bytes | None, key: dict[str, str | None]) -> bool:
    """A record key (JsonConverter) against the bound key values, compared as text."""
    payload = parse_json_payload(record_key)
    if not isinstance(payload, dict):
        return False
    return all(k in payload and (None if payload[k] is None else str(payload[k])) == v for k, v in key.items())


def error_headers(topic: str, partition: int, offset: int, rejected: bool, row: RejectedRow, trace: str) -> list:
    """Connect's DLQ context headers (what `dead_letters.parse_dead_letter` reads), plus ours."""
    message = (
        row.error
        if rejected
        else (f"not applied: in the batch the target aborted for {row.table.qualified} {row.key} ({row.error})")
    )
    return [
        (ORIGINAL_TOPIC, topic.encode()),
        (ORIGINAL_PARTITION, str(partition).encode()),
        (ORIGINAL_OFFSET, str(offset).encode()),
        (HEADER_PREFIX + "stage", b"TASK_PUT"),
        (EXCEPTION_CLASS, b"org.postgresql.util.PSQLException"),
        (EXCEPTION_MESSAGE, message.encode()),
        (EXCEPTION_STACKTRACE, (trace if rejected else "").encode()),
        (QUARANTINED, b"rejected" if rejected else b"same-batch"),
    ]


def _failed_sink_trace(connect: ConnectClient, sink: str) -> str | None:
    if not connect.exists(sink):
        return None
    failed = [t for t in connect.get_status(sink).get("tasks", []) if t.get("state") == "FAILED"]
    return failed[0].get("trace") if failed else None


def _committed(connect: ConnectClient, sink: str, topic: str) -> dict[int, int]:
    return {
        o["partition"]["kafka_partition"]: o["offset"]["kafka_offset"]
        for o in connect.get_offsets(sink)
        if o["partition"].get("kafka_topic") == topic
    }


def _records_through_rejected(
    kafka: KafkaCluster, topic: str, committed: dict[int, int], row: RejectedRow, timeout: float = 30.0
) -> tuple[int, list[Any]] | None:
    """(partition, records from the committed offset through the first one with the rejected key)."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer(client_config(kafka, {"group.id": "pgmigrate-dlq-quarantine", "enable.auto.commit": False}))
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        for p in partitions:
            start = committed.get(p, 0)
            _, end = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            if end <= start:
                continue
            consumer.assign([TopicPartition(topic, p, start)])
            records, deadline = [], time.monotonic() + timeout
            while time.monotonic() < deadline:
                msg = consumer.poll(1.0)
                if msg is None or msg.error():
                    continue
                records.append(msg)
                if key_matches(msg.key(), row.key):
                    return p, records
                if msg.offset() >= end - 1:
                    break
    finally:
        consumer.close()
    return None


def quarantine_once(connect: ConnectClient, kafka: KafkaCluster, names: MigrationNames) -> dict[str, Any] | None:
    """If the sink FAILED on a row the target rejected: dead-letter it (and its batch), skip it, resume."""
    from confluent_kafka import Producer

    sink = names.sink_connector
    trace = _failed_sink_trace(connect, sink)
    row = parse_rejected_row(trace)
    if row is None:
        return None
    topic = names.change_topic(row.table.schema, row.table.name)
    connect.stop(sink)
    connect.wait_for_state(sink, "STOPPED", timeout=60)
    found = _records_through_rejected(kafka, topic, _committed(connect, sink, topic), row)
    if found is None:
        log.error(
            "quarantine: no record of %s with key %s after the committed offset; %s stays as it was",
            topic,
            row.key,
            sink,
        )
        connect.resume(sink)
        return None
    partition, records = found
    producer = Producer(client_config(kafka, {"acks": "all", "enable.idempotence": True}))
    for msg in records:
        rejected = msg is records[-1]
        headers = list(msg.headers() or []) + error_headers(topic, partition, msg.offset(), rejected, row, trace or "")
        producer.produce(names.dead_letter_topic, key=msg.key(), value=msg.value(), headers=headers)
    if producer.flush(30):
        raise RuntimeError(
            f"could not write {len(records)} record(s) to {names.dead_letter_topic}; {sink} stays "
            "STOPPED at its offsets: rerun the monitor or scripts/migration restart"
        )
    skip_to = records[-1].offset() + 1
    connect.alter_offsets(
        sink, [{"partition": {"kafka_topic": topic, "kafka_partition": partition}, "offset": {"kafka_offset": skip_to}}]
    )
    connect.resume(sink)
    log.warning(
        "quarantine: %s rejected %s key %s (%s); %d record(s) of %s[%d] up to offset %d dead-lettered to %s, "
        "sink resumed at %d",
        sink,
        row.table.qualified,
        row.key,
        row.error,
        len(records),
        topic,
        partition,
        skip_to - 1,
        names.dead_letter_topic,
        skip_to,
    )
    return {
        "table": row.table.qualified,
        "key": row.key,
        "error": row.error,
        "records": len(records),
        "partition": partition,
        "resumed_at": skip_to,
    }


def quarantine_rejected_rows(
    connect: ConnectClient, kafka: KafkaCluster, names: MigrationNames, settle_seconds: float = 8.0
) -> list[dict[str, Any]]:
    """Quarantine until the sink runs without failing on a rejected row for `settle_seconds` (at most
    MAX_PER_PASS rows per call; the next monitor run goes on)."""
    done: list[dict[str, Any]] = []
    while len(done) < MAX_PER_PASS:
        result = quarantine_once(connect, kafka, names)
        if result is None:
            break
        done.append(result)
        deadline = time.monotonic() + settle_seconds
        while time.monotonic() < deadline and _failed_sink_trace(connect, names.sink_connector) is None:
            time.sleep(1)
    return done
