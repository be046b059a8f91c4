"""Alerts on the real stack: `pg_migration_monitor` (triggered over the API, never waiting for the minute)
against a streaming migration, with a local webhook receiver behind the `alerts_webhook` connection.

(a) the sink FAILED (a hand edit to plain inserts, then an UPDATE on the source) -> one P0, not repeated
by the next run, one RESOLVED after pg_migration_restart; (b) the sink paused while the source keeps
writing -> lag above the threshold for the window (20 s for 10 s for this migration, through the thresholds
Variable; the defaults are 60 s for 300 s) ->
one P1, RESOLVED after resume; (c) a pg_cutover that fails (twice) -> one P0 `cutover_failed` from its
failure notifier, left open by the monitor until a cutover succeeds.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

import psycopg
import pytest
from harness import (
    SOURCE_PORT,
    TARGET_PORT,
    ConcurrentWriter,
    airflow_api,
    conninfo,
    endpoint,
    override_alert_thresholds,
    run_dag,
    run_other_dag,
    tear_down_migration,
)

from devtools.databases import drop_database, recreate_database
from devtools.local_stack import connect_client
from pgmigrate.alerts.channels import default_alert_log
from pgmigrate.cli.airflow_api import AirflowApiError, put_postgres_connection
from pgmigrate.control.alert_store import AlertStore
from pgmigrate.control.state import MigrationStateStore
from pgmigrate.core.endpoints import PgEndpoint
from pgmigrate.core.naming import MigrationNames
from pgmigrate.stream.lag import read_end_to_end_lag

MIGRATION_ID = "alert-test"
SRC_DB, DST_DB = "alert_src", "alert_dst"
NAMES = MigrationNames(MIGRATION_ID)
SINK = NAMES.sink_connector
CONNECT = connect_client()
CONTROL = PgEndpoint("127.0.0.1", 5435, "migration_control", "postgres", "postgres")
STORE = MigrationStateStore(CONTROL)
VARIABLE = "pgmigrate_alert_thresholds"
# The same rule as the defaults (lag over 60 s for 300 s), scaled down for this migration only: the test
# measures that the window is waited for, not how long it is.
OVERRIDE = {"lag_seconds": 20, "lag_window_seconds": 10}

SCHEMA = """
CREATE TABLE accounts (id int PRIMARY KEY, balance bigint NOT NULL);
INSERT INTO accounts SELECT g, 0 FROM generate_series(1, 100) g;
CREATE TABLE events (id bigserial PRIMARY KEY, at timestamptz NOT NULL DEFAULT clock_timestamp());
"""


class Receiver:
    """A Slack-style webhook on a free local port; keeps every JSON body it receives."""

    def __init__(self) -> None:
        self.bodies: list[dict] = []
        received = self.bodies

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                length = int(self.headers.get("Content-Length") or 0)
                received.append(json.loads(self.rfile.read(length)))
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args) -> None:
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def messages(self, condition: str, status: str, since: int = 0) -> list[dict]:
        """This migration's messages only: other migrations on the shared stack may alert too."""
        return [
            b
            for b in self.bodies[since:]
            if b.get("migration_id") == MIGRATION_ID and b.get("condition") == condition and b.get("status") == status
        ]

    def wait_for(self, condition: str, status: str, since: int = 0, timeout: float = 60) -> list[dict]:
        deadline = time.monotonic() + timeout
        while not self.messages(condition, status, since) and time.monotonic() < deadline:
            time.sleep(0.5)
        return self.messages(condition, status, since)


def _forget() -> None:
    tear_down_migration(MIGRATION_ID, SRC_DB, DST_DB)


@pytest.fixture(scope="module")
def migration():
    api = airflow_api()
    receiver = Receiver()
    _forget()
    STORE.ensure_schema()
    with CONTROL.connect(autocommit=True) as conn:  # a rerun starts without the alerts of an earlier one
        conn.execute("DELETE FROM alert WHERE migration_id = %s", (MIGRATION_ID,))
        conn.execute("DELETE FROM lag_sample WHERE migration_id = %s", (MIGRATION_ID,))
    override_alert_thresholds(api, MIGRATION_ID, OVERRIDE)
    try:
        api.request("DELETE", "/connections/alerts_webhook")
    except AirflowApiError:
        pass
    api.request(
        "POST",
        "/connections",
        json={
            "connection_id": "alerts_webhook",
            "conn_type": "http",
            "host": "127.0.0.1",
            "port": receiver.port,
            "schema": "http",
            "extra": json.dumps({"endpoint": "/hook"}),
        },
    )
    recreate_database(endpoint(SOURCE_PORT, SRC_DB))
    recreate_database(endpoint(TARGET_PORT, DST_DB))
    with psycopg.connect(conninfo(SOURCE_PORT, SRC_DB), autocommit=True) as conn:
        conn.execute(SCHEMA)
    put_postgres_connection(api, "alert_source", endpoint(SOURCE_PORT, SRC_DB))
    put_postgres_connection(api, "alert_target", endpoint(TARGET_PORT, DST_DB))
    writer = ConcurrentWriter(
        SRC_DB,
        lambda i: [
            ("UPDATE accounts SET balance = balance + 1 WHERE id = %s", (i % 100 + 1,)),
            ("INSERT INTO events DEFAULT VALUES", ()),
        ],
        rate=5,
    )
    try:
        run_id, run, states = run_dag(
            api, {"migration_id": MIGRATION_ID, "source_conn_id": "alert_source", "target_conn_id": "alert_target"}
        )
        assert run["state"] == "success", f"pg_migration {run_id}: {states}"
        writer.start()
        yield api, receiver
    finally:
        writer.stop()
        api.request("DELETE", "/connections/alerts_webhook")
        override_alert_thresholds(api, MIGRATION_ID, None)
        _forget()
        for conn_id in ("alert_source", "alert_target"):
            try:
                api.request("DELETE", f"/connections/{conn_id}")
            except AirflowApiError:
                pass
        drop_database(endpoint(SOURCE_PORT, SRC_DB))
        drop_database(endpoint(TARGET_PORT, DST_DB))
        receiver.server.shutdown()
    assert not writer.errors, writer.errors[:3]


def run_monitor(api) -> None:
    run_id, run, states = run_other_dag(api, "pg_migration_monitor", {"migration_ids": [MIGRATION_ID]}, timeout=180)
    assert run["state"] == "success", f"pg_migration_monitor {run_id}: {states}"


def wait_connector(state: str, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        status = CONNECT.get_status(SINK)
        states = {status["connector"]["state"], *(t["state"] for t in status["tasks"])}
        if state in states or time.monotonic() > deadline:
            assert state in states, f"{SINK} never reached {state}: {status}"
            return status
        time.sleep(1)


def e2e_lag() -> float:
    return read_end_to_end_lag(endpoint(SOURCE_PORT, SRC_DB), endpoint(TARGET_PORT, DST_DB), NAMES) or 0.0


def wait_lag(predicate, timeout: float) -> float:
    deadline = time.monotonic() + timeout
    while not predicate(lag := e2e_lag()):
        assert time.monotonic() < deadline, f"lag {lag:.1f}s never reached the expected value"
        time.sleep(1)
    return lag


def _seen_again(condition: str) -> bool:
    rows = [r for r in AlertStore(CONTROL).alerts(MIGRATION_ID, open_only=True) if r["condition"] == condition]
    return bool(rows) and rows[0]["last_seen_at"] > rows[0]["raised_at"]


def open_alerts() -> set[str]:
    return AlertStore(CONTROL).open_conditions(MIGRATION_ID)


def test_failed_sink_raises_one_p0_and_resolves_after_restart(migration):
    api, receiver = migration
    condition = f"connector_failed:{SINK}"
    run_monitor(api)
    assert condition not in open_alerts() and not receiver.messages(condition, "raised")

    # Someone "fixes" the sink by hand: plain inserts fail on the writer's next UPDATE -> task FAILED.
    CONNECT.create_or_update(SINK, {**CONNECT.get_config(SINK), "insert.mode": "insert"})
    wait_connector("FAILED")
    run_monitor(api)
    raised = receiver.wait_for(condition, "raised")
    assert len(raised) == 1 and raised[0]["severity"] == "P0", raised
    assert "FAILED" in raised[0]["text"] and "pg_migration_restart" in raised[0]["text"]

    run_monitor(api)  # still failed: no second message
    time.sleep(2)
    assert len(receiver.messages(condition, "raised")) == 1 and condition in open_alerts()

    run_id, run, states = run_other_dag(api, "pg_migration_restart", {"migration_id": MIGRATION_ID})
    assert run["state"] == "success", states
    run_monitor(api)
    resolved = receiver.wait_for(condition, "resolved")
    assert len(resolved) == 1 and resolved[0]["text"].startswith(f"RESOLVED [P0] {MIGRATION_ID}"), resolved
    assert condition not in open_alerts()
    run_monitor(api)
    assert len(receiver.messages(condition, "resolved")) == 1 and len(receiver.messages(condition, "raised")) == 1

    (row,) = [r for r in AlertStore(CONTROL).alerts(MIGRATION_ID) if r["condition"] == condition]
    assert row["notified_at"] and row["resolved_at"] and row["resolved_notified_at"]
    assert set(row["deliveries"]) == {"log", "webhook"}
    logged = [json.loads(line) for line in default_alert_log().read_text().splitlines() if MIGRATION_ID in line]
    raised_at = row["raised_at"].isoformat()  # the file keeps earlier runs' lines
    this_alert = [m["status"] for m in logged if m["condition"] == condition and m["raised_at"] == raised_at]
    assert this_alert == ["raised", "resolved"]
    timeline = [e["message"] for e in STORE.events(MIGRATION_ID) if e["phase"] == "alert"]
    assert any(condition in m and "resolved" in m for m in timeline), timeline


def test_paused_sink_raises_one_p1_for_lag_and_resolves_after_resume(migration):
    api, receiver = migration
    wait_lag(lambda lag: lag < 10, timeout=120)
    run_monitor(api)
    assert "lag_high" not in open_alerts()
    mark = len(receiver.bodies)

    CONNECT.pause(SINK)
    try:
        wait_lag(lambda lag: lag > 22, timeout=150)
        run_monitor(api)  # first sample above the threshold: the window has just started
        first = time.monotonic()
        assert "lag_high" not in open_alerts()
        time.sleep(max(0.0, 11 - (time.monotonic() - first)))
        run_monitor(api)
        raised = receiver.wait_for("lag_high", "raised", mark)
        assert len(raised) == 1 and raised[0]["severity"] == "P1" and raised[0]["details"]["lag_seconds"] > 20, raised
        run_monitor(api)
        assert len(receiver.messages("lag_high", "raised", mark)) == 1
    finally:
        CONNECT.resume(SINK)

    wait_lag(lambda lag: lag < 10, timeout=120)
    run_monitor(api)
    resolved = receiver.wait_for("lag_high", "resolved", mark)
    assert len(resolved) == 1 and "lag_high" not in open_alerts(), resolved


def test_failed_cutover_raises_one_p0_through_its_failure_notifier(migration):
    api, receiver = migration
    mark = len(receiver.bodies)
    CONNECT.pause(SINK)  # pre_validate refuses a pipeline whose sink is not RUNNING
    try:
        run_id, run, states = run_other_dag(api, "pg_cutover", {"migration_id": MIGRATION_ID, "backup": False})
        assert run["state"] == "failed" and states["pre_validate"] == "failed", states
        cutover = receiver.wait_for("cutover_failed", "raised", mark, timeout=90)
        assert len(cutover) == 1 and cutover[0]["severity"] == "P0", cutover
        assert f"pg_cutover run {run_id} failed" in cutover[0]["text"], cutover[0]["text"]

        # A second failure while the alert is open: the callback runs (last_seen_at moves), nothing is sent.
        run_id, run, states = run_other_dag(api, "pg_cutover", {"migration_id": MIGRATION_ID, "backup": False})
        assert run["state"] == "failed", states
        deadline = time.monotonic() + 90
        while not _seen_again("cutover_failed"):
            assert time.monotonic() < deadline, "the second failed cutover's callback never ran"
            time.sleep(1)
        time.sleep(2)
        assert len(receiver.messages("cutover_failed", "raised", mark)) == 1
        assert "cutover_failed" in open_alerts()
        run_monitor(api)  # still streaming, not cut over: the monitor leaves it open
        assert "cutover_failed" in open_alerts()
    finally:
        CONNECT.resume(SINK)
