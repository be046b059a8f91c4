"""Dead letters on the real stack, one migration with `dead_letter=true`.

(a) A CHECK constraint only the target has, and source writes that violate it. Debezium 3.6.0's JDBC sink
FAILs on the first (it cannot hand write failures to Connect's DLQ); the monitor run dead-letters each
rejected row (pgmigrate.recovery.dead_letter_quarantine) and resumes the sink, which applies the later rows. Exactly
one P0 (`dead_letters`), `scripts/migration dlq` names table, key and error, `--ack` and the pre-cutover
checklist refuse; after the constraint is dropped, `dlq --resync` re-reads exactly those keys, `--ack --wait`
acknowledges once they match, the independent comparison finds the target identical, the next monitor run
resolves the alert, and throughput samples were recorded.
(b) A record Kafka Connect itself cannot convert (a corrupted value under a real key): Connect dead-letters
it without stopping the sink; resync + ack repair the stale row.
(c) The re-select of an unchanged TOASTed value fails (its source session is terminated): the placeholder never
reaches the target, not even for a moment, and the connector's retry carries the real value.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import psycopg
import pytest
from harness import (
    SOURCE_PORT,
    TARGET_PORT,
    airflow_api,
    conninfo,
    endpoint,
    run_dag,
    run_other_dag,
    tear_down_migration,
    wait_until_identical,
)
from psycopg import sql as pgsql

from devtools.databases import drop_database, recreate_database
from devtools.local_stack import connect_client
from pgmigrate.cli.airflow_api import AirflowApiError, put_postgres_connection
from pgmigrate.control.alert_store import AlertStore
from pgmigrate.control.state import MigrationStateStore
from pgmigrate.core.endpoints import PgEndpoint
from pgmigrate.core.naming import MigrationNames
from pgmigrate.cutover.checklist import evaluate_checklist
from pgmigrate.kafka.connector_configs import MAX_CHANGE_EVENT_BYTES
from pgmigrate.recovery.dead_letters import checklist_detail, read_backlog

pytestmark = pytest.mark.integration

MIGRATION_ID = "dlq-e2e"
SRC_DB, DST_DB = "dlq_src", "dlq_dst"
SOURCE_CONN, TARGET_CONN = "dlq_source", "dlq_target"
NAMES = MigrationNames(MIGRATION_ID)
CONNECT = connect_client()
CONTROL = PgEndpoint("127.0.0.1", 5435, "migration_control", "postgres", "postgres")
STORE = MigrationStateStore(CONTROL)
BOOTSTRAP = "127.0.0.1:9092"
CLI = Path(__file__).resolve().parents[2] / "scripts" / "migration"

SCHEMA = """
CREATE TABLE items (id int PRIMARY KEY, qty int NOT NULL, note text);
INSERT INTO items SELECT g, g, 'seed' FROM generate_series(1, 50) g;
CREATE TABLE notes (id int PRIMARY KEY, seen int NOT NULL DEFAULT 0, body text NOT NULL);
INSERT INTO notes (id, body)
SELECT g, (SELECT string_agg(md5(g::text || s::text), '') FROM generate_series(1, 300) s) FROM generate_series(1, 5) g;
"""


def _forget() -> None:
    tear_down_migration(MIGRATION_ID, SRC_DB, DST_DB)


@pytest.fixture(scope="module")
def migration():
    api = airflow_api()
    _forget()
    STORE.ensure_schema()
    with CONTROL.connect(autocommit=True) as conn:  # a rerun starts without an earlier run's leftovers
        for table in ("alert", "dead_letter_ack", "throughput_sample"):
            conn.execute(
                pgsql.SQL("DELETE FROM {} WHERE migration_id = %s").format(pgsql.Identifier(table)), (MIGRATION_ID,)
            )
    recreate_database(endpoint(SOURCE_PORT, SRC_DB))
    recreate_database(endpoint(TARGET_PORT, DST_DB))
    with psycopg.connect(conninfo(SOURCE_PORT, SRC_DB), autocommit=True) as conn:
        conn.execute(SCHEMA)
    put_postgres_connection(api, SOURCE_CONN, endpoint(SOURCE_PORT, SRC_DB))
    put_postgres_connection(api, TARGET_CONN, endpoint(TARGET_PORT, DST_DB))
    try:
        run_id, run, states = run_dag(
            api,
            {
                "migration_id": MIGRATION_ID,
                "source_conn_id": SOURCE_CONN,
                "target_conn_id": TARGET_CONN,
                "dead_letter": True,
            },
        )
        assert run["state"] == "success", f"pg_migration {run_id}: {states}"
        yield api
    finally:
        _forget()
        for conn_id in (SOURCE_CONN, TARGET_CONN):
            try:
                api.request("DELETE", f"/connections/{conn_id}")
            except AirflowApiError:
                pass
        drop_database(endpoint(SOURCE_PORT, SRC_DB))
        drop_database(endpoint(TARGET_PORT, DST_DB))
    from confluent_kafka.admin import AdminClient

    topics = AdminClient({"bootstrap.servers": BOOTSTRAP}).list_topics(timeout=10).topics
    assert NAMES.dead_letter_topic not in topics, "teardown must delete the dead letter topic too"


def run_monitor(api) -> None:
    run_id, run, states = run_other_dag(api, "pg_migration_monitor", {"migration_ids": [MIGRATION_ID]}, timeout=240)
    assert run["state"] == "success", f"pg_migration_monitor {run_id}: {states}"


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(CLI), "dlq", "--migration-id", MIGRATION_ID, *args], capture_output=True, text=True, timeout=300
    )


def sql(port: int, db: str, statement: str, params: tuple | None = None) -> list[tuple]:
    with psycopg.connect(conninfo(port, db), autocommit=True) as conn:
        cur = conn.execute(statement, params)
        return cur.fetchall() if cur.description else []


def wait_for(what: str, predicate, timeout: float = 120):
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(1)
    return value


def topic_configs(topic: str) -> dict[str, str]:
    from confluent_kafka.admin import AdminClient, ConfigResource

    resource = ConfigResource("topic", topic)
    admin = AdminClient({"bootstrap.servers": BOOTSTRAP})  # kept alive until the answer is read
    if topic not in admin.list_topics(timeout=10).topics:
        return {}  # Connect makes a change topic at its first record
    described = admin.describe_configs([resource])[resource].result(timeout=10)
    return {name: entry.value for name, entry in described.items()}


def open_p0() -> list[str]:
    return [r["condition"] for r in AlertStore(CONTROL).alerts(MIGRATION_ID, open_only=True) if r["severity"] == "P0"]


def wait_sink_task(state: str, timeout: float = 120) -> dict:
    return wait_for(
        f"sink task {state}",
        lambda: (s := CONNECT.get_status(NAMES.sink_connector))["tasks"]
        and all(t["state"] == state for t in s["tasks"])
        and s,
        timeout,
    )


def test_rows_the_target_rejects_are_dead_lettered_raise_one_p0_block_cutover_and_a_keys_resync_repairs(migration):
    api = migration
    config = CONNECT.get_config(NAMES.sink_connector)
    assert config["errors.tolerance"] == "all"
    assert config["errors.deadletterqueue.topic.name"] == NAMES.dead_letter_topic
    # The deploy made the DLQ topic itself, like Connect makes the change topics: the largest change event fits, and
    # neither loses a record to retention (the local stack's connection says one replica).
    dlq = topic_configs(NAMES.dead_letter_topic)
    changes = wait_for("the source's heartbeat topic", lambda: topic_configs(NAMES.heartbeat_topic), timeout=60)
    assert int(dlq["max.message.bytes"]) > MAX_CHANGE_EVENT_BYTES, dlq["max.message.bytes"]
    for topic in (dlq, changes):
        assert (topic["retention.ms"], topic["retention.bytes"], topic["min.insync.replicas"]) == ("-1", "-1", "1")

    # The cause: a constraint the target has and the source does not. Two changes violate it (an UPDATE of
    # a copied row, an INSERT), a later INSERT does not.
    sql(TARGET_PORT, DST_DB, "ALTER TABLE items ADD CONSTRAINT qty_not_negative CHECK (qty >= 0)")
    sql(SOURCE_PORT, SRC_DB, "UPDATE items SET qty = -1, note = 'rejected update' WHERE id = 7")
    sql(SOURCE_PORT, SRC_DB, "INSERT INTO items VALUES (101, -5, 'rejected insert')")
    sql(SOURCE_PORT, SRC_DB, "INSERT INTO items VALUES (102, 3, 'applied after')")
    # Debezium 3.6's sink FAILs on the first; the monitor dead-letters it (and then the second) and resumes.
    wait_sink_task("FAILED")
    run_monitor(api)
    wait_for("row 102 on the target", lambda: sql(TARGET_PORT, DST_DB, "SELECT 1 FROM items WHERE id = 102"))
    backlog = wait_for(
        "2 dead letters", lambda: (b := read_backlog(BOOTSTRAP, CONTROL, NAMES)).unacknowledged == 2 and b
    )
    wait_sink_task("RUNNING")
    assert sql(TARGET_PORT, DST_DB, "SELECT qty FROM items WHERE id = 7") == [(7,)]
    assert not sql(TARGET_PORT, DST_DB, "SELECT 1 FROM items WHERE id = 101")
    assert open_p0() == ["dead_letters"], AlertStore(CONTROL).alerts(MIGRATION_ID, open_only=True)
    (alert,) = [r for r in AlertStore(CONTROL).alerts(MIGRATION_ID, open_only=True) if r["condition"] == "dead_letters"]
    assert "change record(s)" in alert["message"] and f"dlq --migration-id {MIGRATION_ID}" in alert["message"]

    listed = cli()
    assert listed.returncode == 1, listed.stdout + listed.stderr
    lines = [line for line in listed.stdout.splitlines() if line.strip().startswith("[")]
    assert len(lines) == 2, listed.stdout
    assert 'public.items key {"id": 7} update' in lines[0] and 'public.items key {"id": 101} insert' in lines[1]
    assert all("qty_not_negative" in line for line in lines), listed.stdout
    assert f"scripts/migration dlq --migration-id {MIGRATION_ID} --resync" in listed.stdout

    ok, detail = checklist_detail(MIGRATION_ID, backlog)
    items = {
        i.name: i
        for i in evaluate_checklist(
            STORE.get(MIGRATION_ID),
            0.5,
            None,
            False,
            5,
            "running",
            "both RUNNING",
            pgbouncer=(True, "x"),
            pre_validation=(True, "x"),
            dead_letters=(ok, detail),
        )
    }
    assert not items["dead_letters"].ok and "2 unacknowledged" in detail and "scripts/migration dlq" in detail

    refused = cli("--ack")  # the rows still differ from the source
    assert refused.returncode == 1 and "still differ" in refused.stderr, refused.stdout + refused.stderr
    sql(TARGET_PORT, DST_DB, "ALTER TABLE items DROP CONSTRAINT qty_not_negative")  # the cause, fixed
    resync = cli("--resync")
    assert resync.returncode == 0, resync.stdout + resync.stderr
    acked = cli("--ack", "--wait", "120", "--note", "dropped qty_not_negative on the target")
    assert acked.returncode == 0 and "acknowledged 2 dead letter(s)" in acked.stdout, acked.stdout + acked.stderr

    assert wait_until_identical(SRC_DB, DST_DB, ["public"], timeout=120) == {}
    run_monitor(api)
    assert open_p0() == []
    resolved = [r for r in AlertStore(CONTROL).alerts(MIGRATION_ID) if r["condition"] == "dead_letters"]
    assert len(resolved) == 1 and resolved[0]["resolved_at"], resolved
    assert cli().returncode == 0

    samples = MigrationStateStore(CONTROL).throughput_samples(MIGRATION_ID)
    assert len(samples) >= 2 and samples[-1]["produced_total"] > 0 and samples[-1]["applied_total"] > 0, samples
    assert samples[-1]["produced_per_second"] is not None and any(s["dead_letters"] == 2 for s in samples), samples
    assert samples[-1]["dead_letters"] == 0 and samples[-1]["failed_tasks"] == 0, samples


def produce_corrupted_change(key_id: int) -> None:
    """A record of the items topic whose value no converter can read, under a real key (int32 `id`)."""
    from confluent_kafka import Producer

    key = {
        "schema": {
            "type": "struct",
            "optional": False,
            "name": f"{NAMES.topic_prefix}.public.items.Key",
            "fields": [{"type": "int32", "optional": False, "field": "id"}],
        },
        "payload": {"id": key_id},
    }
    producer = Producer({"bootstrap.servers": BOOTSTRAP})
    producer.produce(f"{NAMES.topic_prefix}.public.items", key=json.dumps(key).encode(), value=b"\x00corrupted{")
    assert producer.flush(30) == 0


def test_a_record_connect_cannot_convert_goes_to_the_dlq_without_stopping_the_sink(migration):
    wait_sink_task("RUNNING")
    # The change the corrupted record stood for never reached the target: its row 7 is stale.
    sql(TARGET_PORT, DST_DB, "UPDATE items SET qty = 999, note = 'stale' WHERE id = 7")
    produce_corrupted_change(7)
    sql(SOURCE_PORT, SRC_DB, "INSERT INTO items VALUES (103, 4, 'applied after')")

    wait_for("row 103 on the target", lambda: sql(TARGET_PORT, DST_DB, "SELECT 1 FROM items WHERE id = 103"))
    # At least once: Connect writes the record again if the batch is redelivered (listed once, with copies).
    wait_for("the dead letter", lambda: read_backlog(BOOTSTRAP, CONTROL, NAMES).unacknowledged >= 1)
    status = CONNECT.get_status(NAMES.sink_connector)
    assert {t["state"] for t in status["tasks"]} == {"RUNNING"}, status  # Connect itself dead-lettered it

    listed = cli()
    lines = [line for line in listed.stdout.splitlines() if line.strip().startswith("[")]
    assert listed.returncode == 1 and len(lines) == 1 and 'public.items key {"id": 7}' in lines[0], listed.stdout
    assert "JsonParseException" in lines[0] or "serializ" in lines[0].lower(), listed.stdout
    assert cli("--resync").returncode == 0
    acked = cli("--ack", "--wait", "120")
    assert acked.returncode == 0 and "acknowledged" in acked.stdout, acked.stdout + acked.stderr
    assert read_backlog(BOOTSTRAP, CONTROL, NAMES).unacknowledged == 0
    assert wait_until_identical(SRC_DB, DST_DB, ["public"], timeout=120) == {}


def test_a_failed_reselect_of_a_toasted_value_never_reaches_the_target(migration):
    """The update leaves the TOASTed body unchanged, so its event needs a re-select. The re-select is made to block
    on a lock on the TOAST table's index and its session is terminated: ToastReselector fails the event
    (retriable), the connector restarts and re-selects. Debezium's own reselector only warned here and the sink
    wrote its placeholder as the body."""
    # An ALWAYS trigger fires for the sink's writes too (session_replication_role=replica): it records every body
    # the target is given, in a schema the comparison does not cover.
    sql(
        TARGET_PORT,
        DST_DB,
        """
        CREATE SCHEMA probe;
        CREATE TABLE probe.body_writes (id int, body text);
        CREATE FUNCTION probe.record_body() RETURNS trigger LANGUAGE plpgsql AS
        $$ BEGIN INSERT INTO probe.body_writes VALUES (NEW.id, left(NEW.body, 100)); RETURN NEW; END $$;
        CREATE TRIGGER record_body BEFORE INSERT OR UPDATE ON public.notes
            FOR EACH ROW EXECUTE FUNCTION probe.record_body();
        ALTER TABLE public.notes ENABLE ALWAYS TRIGGER record_body;
    """,
    )
    # Stopped, not paused: a paused task's streaming thread keeps reading the slot (and re-selecting).
    CONNECT.stop(NAMES.source_connector)
    # The connector reads STOPPED before its task has let go of the slot: wait for the slot to be released, or
    # the update below is streamed (and re-selected, unblocked) by the stopping task.
    wait_for(
        "source stopped",
        lambda: CONNECT.get_status(NAMES.source_connector)["connector"]["state"] == "STOPPED"
        and sql(
            SOURCE_PORT, SRC_DB, "SELECT 1 FROM pg_replication_slots WHERE slot_name = %s AND NOT active", (NAMES.slot,)
        ),
    )
    sql(SOURCE_PORT, SRC_DB, "UPDATE notes SET seen = seen + 1 WHERE id = 3")
    toast_index = sql(
        SOURCE_PORT,
        SRC_DB,
        "SELECT i.indexrelid::regclass::text FROM pg_class c "
        "JOIN pg_index i ON i.indrelid = c.reltoastrelid WHERE c.oid = 'notes'::regclass",
    )[0][0]
    with psycopg.connect(conninfo(SOURCE_PORT, SRC_DB)) as lock:
        # REINDEX holds its index ACCESS EXCLUSIVE until commit: reading the out-of-line body waits on it, while
        # the connector's start (which locks `notes` itself ACCESS SHARE) does not.
        lock.execute(f"REINDEX INDEX {toast_index}")
        CONNECT.resume(NAMES.source_connector)
        blocked = wait_for(
            "the re-select waiting on the lock",
            lambda: sql(
                SOURCE_PORT,
                SRC_DB,
                """
            SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'
            AND query LIKE 'SELECT "body" FROM "public"."notes"%'""",
            ),
            timeout=60,
        )
        sql(SOURCE_PORT, SRC_DB, f"SELECT pg_terminate_backend({blocked[0][0]})")
        time.sleep(2)  # the connector sees the error while the lock still holds
    source_body = sql(SOURCE_PORT, SRC_DB, "SELECT seen, body FROM notes WHERE id = 3")
    wait_for(
        "the update applied",
        lambda: sql(TARGET_PORT, DST_DB, "SELECT seen, body FROM notes WHERE id = 3") == source_body,
        timeout=120,
    )
    writes = sql(TARGET_PORT, DST_DB, "SELECT id, body FROM probe.body_writes")
    assert writes and all(body == source_body[0][1][:100] for _, body in writes), writes
    status = CONNECT.get_status(NAMES.source_connector)
    assert {t["state"] for t in status["tasks"]} == {"RUNNING"}, status
    sql(TARGET_PORT, DST_DB, "DROP SCHEMA probe CASCADE")
