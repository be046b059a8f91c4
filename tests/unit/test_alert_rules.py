"""Alert rules (pgmigrate.alerts.rules): each rule's boundary, the reconcile plan (raise once, resolve only
what was evaluated), delivery planning, payloads and thresholds. No database, no Airflow."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pgmigrate.alerts.channels import FileChannel, webhook_url
from pgmigrate.alerts.evaluation import Evaluation, Readings, evaluate, plan_reconcile
from pgmigrate.alerts.messages import message_payload, pending_messages
from pgmigrate.alerts.rules import (
    P0,
    P1,
    Alert,
    Thresholds,
    connector_alerts,
    kafka_disk_alert,
    lag_alert,
    slow_query_alert,
    validation_alert,
)

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
M = "m1"
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
T = Thresholds(lag_seconds=60, lag_window_seconds=300)


def running(*task_states: str, connector: str = "RUNNING") -> dict:
    tasks = [{"id": i, "state": s, "trace": "x\nCaused by: boom"} for i, s in enumerate(task_states)]
    return {"connector": {"state": connector}, "tasks": tasks}


def samples(*pairs: tuple[int, float | None]) -> list:
    """(seconds before NOW, lag)"""
    return [(NOW - timedelta(seconds=ago), lag) for ago, lag in pairs]


@pytest.mark.parametrize(
    ("statuses", "failed", "restarted"),
    [
        pytest.param({"src": running("RUNNING"), "sink": running("RUNNING")}, [], [], id="all-running"),
        pytest.param(
            {"src": running("RUNNING"), "sink": running("FAILED")}, ["connector_failed:sink"], [], id="task-failed"
        ),
        pytest.param({"sink": running(connector="FAILED")}, ["connector_failed:sink"], [], id="connector-failed"),
        pytest.param({"sink": None}, ["connector_failed:sink"], [], id="connector-missing"),
        pytest.param({"sink": running("PAUSED", connector="PAUSED")}, [], [], id="paused-is-not-failed"),
        pytest.param({"sink": running("RESTARTING")}, [], ["task_restarted:sink"], id="task-restarting"),
    ],
)
def test_connector_rules(statuses, failed, restarted):
    got_failed, got_restarted = connector_alerts(M, statuses)
    assert [a.condition for a in got_failed] == failed
    assert [a.condition for a in got_restarted] == restarted
    assert all(a.severity == P0 for a in got_failed)


def test_failed_task_message_names_the_cause():
    (alert,), _ = connector_alerts(M, {"sink": running("FAILED")})
    assert "task 0 FAILED" in alert.message and "Caused by: boom" in alert.message


@pytest.mark.parametrize(
    ("lags", "active"),
    [
        pytest.param([(400, 70), (300, 80), (200, 90), (100, 95), (0, 99)], True, id="above-for-whole-window"),
        pytest.param([(300, 80), (0, 99)], True, id="run-starts-exactly-a-window-ago"),
        pytest.param([(299, 80), (0, 99)], False, id="run-one-second-short"),
        pytest.param([(400, 70), (200, 30), (100, 95), (0, 99)], False, id="dip-below-restarts-the-window"),
        pytest.param([(400, 70), (200, None), (0, 99)], False, id="missing-reading-breaks-the-run"),
        pytest.param([(400, 70), (200, 90), (0, 60)], False, id="latest-at-threshold-is-not-above"),
        pytest.param([], False, id="no-samples"),
    ],
)
def test_lag_high_needs_every_sample_above_for_the_window(lags, active):
    alert = lag_alert(M, samples(*lags), NOW, T)
    assert (alert is not None) == active
    if alert:
        assert alert.severity == P1 and alert.condition == "lag_high"


def test_lag_window_is_a_parameter():
    short = Thresholds(lag_seconds=60, lag_window_seconds=30)
    assert lag_alert(M, samples((40, 70), (0, 75)), NOW, short) is not None
    assert lag_alert(M, samples((40, 70), (0, 75)), NOW, T) is None


BAD = {"tables": [{"table": "public.a", "ok": True}, {"table": "public.b", "ok": False}]}


@pytest.mark.parametrize(
    ("validation", "lag", "data_loss_open", "expected"),
    [
        pytest.param({"tables": [{"table": "public.a", "ok": True}]}, 1.0, False, None, id="identical"),
        pytest.param(None, 1.0, False, None, id="never-validated"),
        pytest.param(BAD, 1.0, False, "data_loss", id="differs-while-caught-up-is-data-loss"),
        pytest.param(BAD, 90.0, False, "validation_mismatch", id="differs-while-behind-is-a-mismatch"),
        pytest.param(BAD, None, False, "validation_mismatch", id="differs-lag-unknown"),
        pytest.param(BAD, 90.0, True, "data_loss", id="halt-makes-lag-grow-but-data-loss-stays"),
    ],
)
def test_validation_rules(validation, lag, data_loss_open, expected):
    alert = validation_alert(M, validation, lag, 5.0, data_loss_open)
    assert (alert.condition if alert else None) == expected
    if alert:
        assert "public.b" in alert.message and "public.a" not in alert.message


def test_data_loss_message_says_the_pipeline_is_halted():
    assert "pg_migration_halt" in validation_alert(M, BAD, 1.0, 5.0, False, halt=True).message
    assert "halt" not in validation_alert(M, BAD, 1.0, 5.0, False, halt=False).message


def test_kafka_disk_and_slow_query_thresholds():
    t = Thresholds(kafka_disk_percent=80, slow_query_seconds=300)
    assert kafka_disk_alert(M, [("/k", 80, 100)], t) is None
    assert kafka_disk_alert(M, [("/k", 10, 100), ("/j", 81, 100)], t).details == {"dirs": {"/j": 81.0}}
    assert slow_query_alert(M, [{"pid": 1, "seconds": 300.0, "query": "q"}], t) is None
    slow = slow_query_alert(M, [{"pid": 1, "seconds": 10.0}, {"pid": 7, "seconds": 301.0, "usename": "app"}], t)
    assert slow.severity == "P3" and "pid 7" in slow.message


def test_evaluate_marks_unread_readings_as_not_evaluated():
    readings = Readings(phase="streaming", connector_statuses=None, lag_samples=samples((0, 1.0)), now=NOW)
    result = evaluate(M, readings, T, set())
    assert "connector_failed" not in result.evaluated and "lag_high" in result.evaluated
    assert result.active == []


def test_connect_that_does_not_answer_is_a_p0_resolved_once_statuses_are_read_again():
    down = evaluate(
        M, Readings(phase="streaming", connect_unreachable="Kafka Connect at http://c:8083 is unreachable"), T, set()
    )
    assert [(a.severity, a.condition) for a in down.active] == [(P0, "connect_unreachable")]
    assert "connector_failed" not in down.evaluated, "unknown states: neither raised nor resolved"
    back = evaluate(M, Readings(phase="streaming", connector_statuses={}), T, {"connect_unreachable"})
    assert "connect_unreachable" in back.evaluated and back.active == []
    unread = evaluate(M, Readings(phase="streaming"), T, {"connect_unreachable"})
    assert "connect_unreachable" not in unread.evaluated


def test_evaluate_resolves_cutover_failed_only_once_cut_over():
    assert "cutover_failed" not in evaluate(M, Readings(phase="streaming"), T, set()).evaluated
    assert "cutover_failed" in evaluate(M, Readings(phase="cut_over"), T, set()).evaluated


def alert(condition: str, severity: str = P0) -> Alert:
    return Alert(severity, condition, M, condition)


def test_plan_raises_new_conditions_once_and_resolves_cleared_ones():
    evaluation = Evaluation([alert("connector_failed:sink"), alert("lag_high", P1)], {"connector_failed", "lag_high"})
    to_raise, to_resolve = plan_reconcile(set(), evaluation)
    assert [a.condition for a in to_raise] == ["connector_failed:sink", "lag_high"] and to_resolve == []
    # Next run, same conditions: nothing new.
    assert plan_reconcile({"connector_failed:sink", "lag_high"}, evaluation) == ([], [])
    # Sink repaired: its alert resolves, lag still open.
    repaired = Evaluation([alert("lag_high", P1)], {"connector_failed", "lag_high"})
    assert plan_reconcile({"connector_failed:sink", "lag_high"}, repaired) == ([], ["connector_failed:sink"])


def test_plan_leaves_unevaluated_and_notifier_alerts_open():
    unread = Evaluation([], {"lag_high"})  # Connect unreachable: connector kinds not evaluated
    assert plan_reconcile({"connector_failed:sink", "cutover_failed"}, unread) == ([], [])


def test_a_different_connector_is_a_different_condition():
    to_raise, _ = plan_reconcile(
        {"connector_failed:sink"}, Evaluation([alert("connector_failed:src")], {"connector_failed"})
    )
    assert [a.condition for a in to_raise] == ["connector_failed:src"]


def row(**over) -> dict:
    base = {
        "migration_id": M,
        "condition": "lag_high",
        "severity": P1,
        "message": "lag 90s",
        "raised_at": NOW,
        "resolved_at": None,
        "details": {},
        "deliveries": {"log": {}, "webhook": {}},
    }
    return {**base, **over}


def test_pending_messages():
    assert pending_messages(row()) == [("log", "raised"), ("webhook", "raised")]
    sent = {"log": {"raised": "t"}, "webhook": {"raised": "t"}}
    assert pending_messages(row(deliveries=sent)) == []
    assert pending_messages(row(deliveries=sent, resolved_at=NOW)) == [("log", "resolved"), ("webhook", "resolved")]
    # The webhook failed on raise and the alert resolved meanwhile: it gets the raise first, then the resolve.
    partial = {"log": {"raised": "t", "resolved": "t"}, "webhook": {}}
    assert pending_messages(row(deliveries=partial, resolved_at=NOW)) == [("webhook", "raised")]


def test_payload_is_slack_compatible_and_actionable():
    raised = message_payload(row(), "raised")
    assert raised["text"].startswith("[P1] m1: lag 90s. What to do:") and raised["status"] == "raised"
    resolved = message_payload(row(resolved_at=NOW), "resolved")
    assert resolved["text"].startswith("RESOLVED [P1] m1: lag_high cleared") and resolved["resolved_at"]


def test_thresholds_from_variable_with_per_migration_override():
    value = {"lag_seconds": 30, "migrations": {"alert-test": {"lag_window_seconds": 30}}}
    assert Thresholds.from_mapping(value, "alert-test") == Thresholds(lag_seconds=30, lag_window_seconds=30)
    assert Thresholds.from_mapping(value, "other") == Thresholds(lag_seconds=30)
    with pytest.raises(ValueError, match="lag_windw"):
        Thresholds.from_mapping({"lag_windw": 5})


def test_file_channel_appends_json_lines(tmp_path):
    channel = FileChannel(tmp_path / "a" / "alerts.log")
    channel.send(message_payload(row(), "raised"))
    channel.send(message_payload(row(resolved_at=NOW), "resolved"))
    lines = (tmp_path / "a" / "alerts.log").read_text().splitlines()
    assert len(lines) == 2 and '"status": "resolved"' in lines[1]


def test_webhook_url_from_connection_fields():
    assert webhook_url("https://hooks.slack.com/services/T/B/X", None, None, None) == (
        "https://hooks.slack.com/services/T/B/X"
    )
    assert webhook_url("127.0.0.1", 8999, "http", "/hook") == "http://127.0.0.1:8999/hook"


def test_monitor_dag_runs_every_minute_and_cutover_alerts_on_failure():
    from airflow.dag_processing.dagbag import DagBag

    from pgmigrate.notifications.migration_alerts import MigrationAlertNotifier

    dags = DagBag(dag_folder=str(REPO / "dags"))
    monitor = dags.dags["pg_migration_monitor"]
    assert monitor.timetable.expression == "* * * * *" and not monitor.catchup and monitor.max_active_runs == 1
    assert monitor.get_task("halt").downstream_task_ids == set() and "evaluate" in monitor.task_dict
    callbacks = dags.dags["pg_cutover"].on_failure_callback
    callbacks = callbacks if isinstance(callbacks, list) else [callbacks]
    assert any(isinstance(c, MigrationAlertNotifier) and c.condition == "cutover_failed" for c in callbacks)


def test_the_forward_slot_kept_after_cutover_is_a_p2_past_its_threshold_naming_teardown():
    thresholds = Thresholds(slot_retained_wal_mb=100)
    below = Readings(phase="cut_over", forward_slot=("pgmigrate_m", 100 * 2**20))
    assert evaluate(M, below, thresholds, set()).active == []
    above = evaluate(M, Readings(phase="cut_over", forward_slot=("pgmigrate_m", 101 * 2**20)), thresholds, set())
    [alert] = above.active
    assert (alert.severity, alert.condition) == ("P2", "forward_slot_retained")
    assert "pgmigrate_m" in alert.message and "pg_migration_teardown" in alert.message
    assert "pg_migration_teardown" in alert.action
    # Not read (before the cutover, or the source did not answer): neither raised nor resolved.
    assert "forward_slot_retained" not in evaluate(M, Readings(phase="streaming"), thresholds, set()).evaluated
    assert Thresholds.from_mapping({"slot_retained_wal_mb": 5}).slot_retained_wal_mb == 5.0


def test_schema_differences_after_the_cutover_are_ddl_on_the_target_naming_created_tables():
    created = {"kind": "table", "object": "public.notes", "source": None, "target": "r"}
    streaming = evaluate(M, Readings(phase="streaming", schema_differences=[created]), Thresholds(), set())
    assert [a.condition for a in streaming.active] == ["schema_mismatch"]
    after = evaluate(M, Readings(phase="cut_over", schema_differences=[created]), Thresholds(), set())
    [alert] = after.active
    assert (alert.severity, alert.condition) == ("P1", "target_ddl_after_cutover")
    assert "tables created on the target: public.notes" in alert.message
    assert "reverse replication" in alert.action and "pg_migration_teardown" in alert.action
    # The other condition is evaluated too, so an open schema_mismatch from before the cutover resolves.
    assert {"schema_mismatch", "target_ddl_after_cutover"} <= after.evaluated
    assert evaluate(M, Readings(phase="cut_over", schema_differences=[]), Thresholds(), set()).active == []


class _FakeControl:
    """A control endpoint whose one connection logs what runs on it: the claim's SELECT, each UPDATE, the commit."""

    def __init__(self, rows: list[dict], log: list[str]) -> None:
        self.rows, self.log = rows, log

    def connect(self, autocommit: bool = False):
        assert not autocommit, "the claim's row locks need one transaction"
        return _FakeConn(self)


class _FakeConn:
    def __init__(self, control: _FakeControl) -> None:
        self.control = control

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.control.log.append("close")

    def cursor(self, row_factory=None):
        return _FakeCursor(self.control)

    def commit(self) -> None:
        self.control.log.append("commit")


class _FakeCursor:
    def __init__(self, control: _FakeControl) -> None:
        self.control = control

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        pass

    def execute(self, query: str, args) -> None:
        self.control.log.append("select for update" if "FOR UPDATE SKIP LOCKED" in query else f"update {args[-1]}")

    def fetchall(self) -> list[dict]:
        return self.control.rows


class _Channel:
    def __init__(self, name: str, log: list[str], fails: bool = False) -> None:
        self.name, self.log, self.fails = name, log, fails

    def send(self, payload: dict) -> None:
        self.log.append(f"send {self.name} {payload['status']}")
        if self.fails:
            raise OSError("down")


def test_deliver_pending_sends_while_the_rows_are_locked_and_commits_after():
    from pgmigrate.alerts.lifecycle import deliver_pending

    log: list[str] = []
    control = _FakeControl([{**row(), "id": 7}], log)
    sent = deliver_pending(control, [_Channel("log", log), _Channel("webhook", log, fails=True)], M)
    assert sent == [("lag_high", "log", "raised")]
    assert log == ["select for update", "send log raised", "send webhook raised", "update 7", "commit", "close"]
