"""Pure rules of dead letters and throughput (no servers): fail-fast by default, the DLQ config, parsing a
DLQ record, the unacknowledged count, the keys resync signal, the P0 rule, the checklist item, the
throughput deltas and the report's chart."""

import json
import re
from datetime import UTC, datetime, timedelta

import pytest

from pgmigrate.alerts.evaluation import Evaluation, Readings, evaluate, plan_reconcile
from pgmigrate.alerts.rules import P0, Thresholds, dead_letter_alert
from pgmigrate.core.catalog import TableRef
from pgmigrate.core.endpoints import PgEndpoint
from pgmigrate.core.naming import MigrationNames
from pgmigrate.core.params import MigrationParams
from pgmigrate.cutover.checklist import evaluate_checklist
from pgmigrate.kafka.connector_configs import SecretRefs, build_sink_config, build_source_config, sink_topics_regex
from pgmigrate.kafka.topic_settings import TopicSettings
from pgmigrate.recovery.dead_letter_resync import (
    SIGNAL_DATA_MAX,
    key_condition,
    keys_snapshot_signal,
    keys_snapshot_signals,
)
from pgmigrate.recovery.dead_letters import (
    DeadLetterBacklog,
    checklist_detail,
    format_dead_letters,
    keys_by_table,
    parse_dead_letter,
    root_cause,
    table_from_topic,
)
from pgmigrate.report.throughput_chart import throughput_chart_svg, throughput_summary
from pgmigrate.stream.throughput import failed_tasks, offset_totals, rate_per_second

pytestmark = pytest.mark.unit

NAMES = MigrationNames("dlq-unit")
TARGET = PgEndpoint("127.0.0.1", 5434, "shop", "postgres", "secret")
SECRETS = SecretRefs("/opt/secrets/x.properties")
TOPICS = TopicSettings(replication_factor=1, min_insync_replicas=1)  # the single-broker local stack
TRACE = """org.apache.kafka.connect.errors.ConnectException: JDBC sink connector failure
\tat io.debezium.connector.jdbc.JdbcSinkConnectorTask.put(JdbcSinkConnectorTask.java:100)
Caused by: org.hibernate.exception.ConstraintViolationException: could not execute statement
Caused by: org.postgresql.util.PSQLException: ERROR: new row for relation "items" violates check constraint "qty_ok"
\tat org.postgresql.core.v3.QueryExecutorImpl.receiveErrorResponse(QueryExecutorImpl.java:2733)"""


def test_the_default_is_fail_fast_and_dead_letter_routes_to_the_migrations_topic():
    sink = build_sink_config(NAMES, TARGET, ["public"], SECRETS, topics=TOPICS)
    assert sink["errors.tolerance"] == "none" and not any(k.startswith("errors.deadletterqueue") for k in sink)
    assert build_source_config(NAMES, TARGET, [], "copy", SECRETS, topics=TOPICS)["errors.tolerance"] == "none"
    assert MigrationParams.from_dict({"migration_id": "x"}).dead_letter is False
    assert MigrationParams.from_dict({"migration_id": "x", "dead_letter": True}).dead_letter is True

    dlq = build_sink_config(NAMES, TARGET, ["public"], SECRETS, dead_letter=True, topics=TOPICS)
    assert dlq["errors.tolerance"] == "all"
    assert dlq["errors.deadletterqueue.topic.name"] == NAMES.dead_letter_topic == "__pgmigrate-dlq.pgmigrate_dlq_unit"
    assert dlq["errors.deadletterqueue.context.headers.enable"] == "true"
    assert dlq["errors.deadletterqueue.topic.replication.factor"] == "1"
    # The sink never consumes its own DLQ, and the reverse pipeline's DLQ name differs.
    assert not re.fullmatch(sink_topics_regex(NAMES, ["public", "pgmigrate_dlq_unit"]), NAMES.dead_letter_topic)
    assert NAMES.reversed().dead_letter_topic != NAMES.dead_letter_topic


def _record(key: dict, op: str = "c", table: str = "items", with_trace: bool = True):
    key_json = json.dumps({"schema": {"type": "struct"}, "payload": key}).encode()
    value = json.dumps(
        {"schema": {}, "payload": {"op": op, "after": {}, "source": {"schema": "public", "table": table}}}
    ).encode()
    headers = [
        ("__connect.errors.topic", f"{NAMES.topic_prefix}.public.{table}".encode()),
        ("__connect.errors.exception.message", b"JDBC sink connector failure"),
        ("__connect.errors.exception.stacktrace", TRACE.encode() if with_trace else None),
    ]
    return key_json, value, headers


def test_a_dlq_record_gives_table_key_operation_and_the_databases_error():
    letter = parse_dead_letter(0, 4, *_record({"id": 7}, op="u"), NAMES)
    assert (letter.table, letter.key, letter.operation) == (TableRef("public", "items"), {"id": 7}, "update")
    assert letter.error.startswith("org.postgresql.util.PSQLException") and '"qty_ok"' in letter.error
    no_trace = parse_dead_letter(0, 5, *_record({"id": 8}, with_trace=False), NAMES)
    assert no_trace.error == "JDBC sink connector failure"
    # Without a Debezium envelope the table comes from the original topic's name.
    bare = parse_dead_letter(
        0,
        6,
        b'{"id": 9}',
        b"not json",
        [("__connect.errors.topic", f"{NAMES.topic_prefix}.sales.orders".encode())],
        NAMES,
    )
    assert bare.table == TableRef("sales", "orders") and bare.key == {"id": 9} and bare.operation == "?"
    assert root_cause(None, None) == "(no error message recorded)"


def test_unacknowledged_counts_past_the_ack_and_ignores_an_ack_of_a_deleted_topic():
    backlog = DeadLetterBacklog(True, "t1", low={0: 0}, end={0: 5}, acked={0: 3}, acked_topic_id="t1")
    assert (backlog.unacknowledged, backlog.total, backlog.start_offsets) == (2, 5, {0: 3})
    recreated = DeadLetterBacklog(True, "t2", low={0: 0}, end={0: 2}, acked={0: 3}, acked_topic_id="t1")
    assert recreated.unacknowledged == 2
    retention = DeadLetterBacklog(True, "t1", low={0: 4}, end={0: 6}, acked={}, acked_topic_id=None)
    assert retention.unacknowledged == 2
    assert DeadLetterBacklog(False).unacknowledged == 0


def test_keys_resync_signal_filters_exactly_the_dead_lettered_keys():
    letters = [parse_dead_letter(0, i, *_record(k), NAMES) for i, k in enumerate([{"id": 7}, {"id": 101}, {"id": 7}])]
    by_table = keys_by_table(letters)
    assert by_table == {TableRef("public", "items"): [{"id": 7}, {"id": 101}]}
    signal = keys_snapshot_signal(by_table)
    data = json.loads(signal["data"])
    assert signal["type"] == "execute-snapshot" and data["type"] == "incremental"
    assert data["data-collections"] == ["public\\.items"]
    condition = {"data-collection": "public.items", "filter": "(\"id\") IN (('7'), ('101'))"}
    assert data["additional-conditions"] == [condition]
    composite = key_condition([{"a": "x'y", "b": True}]).as_string(None)
    assert composite == "(\"a\", \"b\") IN (('x''y', 'true'))"
    with pytest.raises(ValueError, match="different key columns"):
        key_condition([{"a": 1}, {"b": 2}])
    many = {TableRef("public", "items"): [{"id": n} for n in range(1000)]}
    signals = keys_snapshot_signals(many)
    assert len(signals) > 1 and all(len(s["data"]) <= SIGNAL_DATA_MAX for s in signals)
    assert sum(json.loads(s["data"])["additional-conditions"][0]["filter"].count("'") // 2 for s in signals) == 1000


def test_dead_letters_are_one_p0_resolved_only_when_read_and_acknowledged():
    assert dead_letter_alert("m", 0) is None
    alert = dead_letter_alert("m", 3)
    assert alert.severity == P0 and alert.condition == "dead_letters" and "scripts/migration dlq" in alert.message
    assert "--ack" in alert.action
    now = datetime(2026, 1, 1, tzinfo=UTC)
    found = evaluate("m", Readings(phase="streaming", dead_letters=3, now=now), Thresholds(), set())
    assert [a.condition for a in found.active] == ["dead_letters"]
    # Kafka unreadable: the open alert is neither repeated nor resolved.
    unread = evaluate("m", Readings(phase="streaming"), Thresholds(), {"dead_letters"})
    assert plan_reconcile({"dead_letters"}, unread) == ([], [])
    acked = evaluate("m", Readings(phase="streaming", dead_letters=0), Thresholds(), {"dead_letters"})
    assert plan_reconcile({"dead_letters"}, acked) == ([], ["dead_letters"])
    assert plan_reconcile({"dead_letters"}, Evaluation(found.active, found.evaluated)) == ([], [])


def test_the_checklist_refuses_unacknowledged_dead_letters_with_count_and_command():
    ok, detail = checklist_detail("m", DeadLetterBacklog(True, "t", {0: 0}, {0: 2}))
    assert not ok and "2 unacknowledged" in detail and "scripts/migration dlq --migration-id m" in detail
    assert checklist_detail("m", DeadLetterBacklog(False)) == (True, "no unacknowledged dead letters")
    assert checklist_detail("m", None)[0] is False
    state = {"phase": "streaming"}
    items = evaluate_checklist(
        state,
        0.5,
        None,
        False,
        5,
        "running",
        "both",
        pgbouncer=(True, "a"),
        pre_validation=(True, "b"),
        dead_letters=(ok, detail),
    )
    items = {i.name: i for i in items}
    assert not items["dead_letters"].ok and all(i.ok for n, i in items.items() if n != "dead_letters")


def test_the_dlq_listing_names_table_key_error_and_the_commands():
    letters = [parse_dead_letter(0, 0, *_record({"id": 7}, op="u"), NAMES)]
    text = format_dead_letters("dlq-unit", letters, DeadLetterBacklog(True, "t", {0: 0}, {0: 1}), limit=10)
    assert 'public.items key {"id": 7} update: org.postgresql.util.PSQLException' in text
    assert "scripts/migration dlq --migration-id dlq-unit --resync" in text and "--ack" in text
    assert "scripts/migration resync --migration-id dlq-unit --table public.items" in text
    assert "no dead letter topic" in format_dead_letters("dlq-unit", [], DeadLetterBacklog(False), 10)


def test_throughput_is_the_offset_delta_over_the_clock_and_never_negative():
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    assert rate_per_second(100, t0, 700, t0 + timedelta(seconds=60)) == 10.0
    assert rate_per_second(None, None, 700, t0) is None
    assert rate_per_second(700, t0, 5, t0 + timedelta(seconds=60)) is None  # topics recreated by a reset
    assert rate_per_second(700, t0, 800, t0) is None
    ends, committed = {("a", 0): 10, ("b", 0): 5}, {("a", 0): 7, ("other", 0): 99}
    assert offset_totals(ends, committed) == (15, 7)
    statuses = {
        "src": {"connector": {"state": "RUNNING"}, "tasks": [{"state": "RUNNING"}]},
        "sink": {"connector": {"state": "FAILED"}, "tasks": [{"state": "FAILED"}]},
        "gone": None,
    }
    assert failed_tasks(statuses) == 2 and failed_tasks(None) is None


def test_the_report_charts_throughput_and_marks_errors():
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    samples = [
        {
            "at": t0 + timedelta(minutes=i),
            "produced_per_second": 10.0 * i,
            "applied_per_second": 8.0 * i,
            "dead_letters": 2 if i == 2 else 0,
            "failed_tasks": 0,
        }
        for i in range(4)
    ]
    svg = throughput_chart_svg(samples)
    assert svg.startswith('<svg class="chart" id="throughput-chart"') and svg.count("<polyline") == 2
    assert "2 dead letters" in svg
    assert "Not enough" in throughput_chart_svg(samples[:1])
    assert "4 samples" in throughput_summary(samples) and "most dead letters seen 2" in throughput_summary(samples)


SINK_TRACE = (
    "org.apache.kafka.connect.errors.ConnectException: JDBC sink connector failure\n"
    'Caused by: java.sql.BatchUpdateException: Batch entry 0 INSERT INTO "public"."items" ("id","qty",'
    "\"Note \"\"x\"\"\") VALUES (('7'::int4),('-1'::int4),('it''s, (odd)')) ON CONFLICT (\"id\") DO UPDATE SET "
    '"qty"=EXCLUDED."qty" was aborted: ERROR: new row for relation "items" violates check constraint '
    '"qty_ok"\n  Detail: Failing row contains (7, -1, it\'s).  Call getNextException to see other errors.'
)


def test_the_quarantine_reads_the_rejected_row_from_the_sinks_trace_and_only_for_row_errors():
    from pgmigrate.recovery.dead_letter_quarantine import error_headers, key_matches, parse_rejected_row

    row = parse_rejected_row(SINK_TRACE)
    assert row.table == TableRef("public", "items") and row.key == {"id": "7"} and "qty_ok" in row.error
    assert parse_rejected_row(SINK_TRACE.replace("violates check constraint", "could not connect")) is None
    assert parse_rejected_row("java.net.ConnectException: Connection refused") is None
    assert parse_rejected_row(None) is None
    assert key_matches(b'{"schema": {}, "payload": {"id": 7}}', {"id": "7"})
    assert not key_matches(b'{"schema": {}, "payload": {"id": 8}}', {"id": "7"})
    # What the quarantine writes reads back like a record Connect dead-lettered.
    topic = f"{NAMES.topic_prefix}.public.items"
    value = json.dumps({"payload": {"op": "u", "source": {"schema": "public", "table": "items"}}}).encode()
    for rejected, expected in ((True, "qty_ok"), (False, "not applied: in the batch")):
        headers = error_headers(topic, 0, 41, rejected, row, SINK_TRACE)
        letter = parse_dead_letter(0, 3, b'{"payload": {"id": 7}}', value, headers, NAMES)
        assert letter.table == TableRef("public", "items") and letter.key == {"id": 7} and expected in letter.error


def test_copies_of_one_dead_lettered_change_are_listed_once():
    key, value, headers = _record({"id": 7})
    headers = [*headers, ("__connect.errors.partition", b"0"), ("__connect.errors.offset", b"41")]
    letters = [parse_dead_letter(0, n, key, value, headers, NAMES) for n in (5, 6)]
    text = format_dead_letters("dlq-unit", letters, DeadLetterBacklog(True, "t", {0: 0}, {0: 7}), limit=10)
    assert text.count('key {"id": 7}') == 1 and "(2 copies)" in text


def test_a_topic_names_its_table_only_when_the_split_is_unambiguous():
    prefix = NAMES.topic_prefix
    assert table_from_topic(f"{prefix}.public.items", NAMES) == TableRef("public", "items")
    assert table_from_topic(f"{prefix}.My.Schema.items", NAMES) is None  # which dot splits schema from table?
    assert table_from_topic("elsewhere.public.items", NAMES) is None
    assert table_from_topic(None, NAMES) is None
