"""KafkaConnectHook against the real local stack: Kafka Connect on 127.0.0.1:8083 with the
Debezium 3.6 plugins, and the source PostgreSQL on 127.0.0.1:5433 (wal_level=logical).

A trivial Debezium source connector streams one table of a scratch database ``hooktest``.
Connector, slot and publication names carry a per-run suffix, so a crashed earlier run never
collides with this one; the fixtures delete the connector, drop slot, publication and
database afterwards.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg2
import pytest
from psycopg2 import sql

from devtools.local_stack import CONNECT_AUTH, CONNECT_URL
from pgmigrate.hooks.kafka_connect import KafkaConnectHook
from pgmigrate.kafka.connect_client import ConnectClient
from pgmigrate.kafka.connect_errors import ConnectConfigError, ConnectUnavailableError

pytestmark = pytest.mark.integration

PG = {"host": "127.0.0.1", "port": 5433, "user": "postgres", "password": "postgres"}
DB = "hooktest"
PG_CLASS = "io.debezium.connector.postgresql.PostgresConnector"
JDBC_SINK_CLASS = "io.debezium.connector.jdbc.JdbcSinkConnector"
SECRETS_FILE = Path(__file__).resolve().parents[2] / ".stack" / "secrets" / "postgres.properties"
RUN = uuid.uuid4().hex[:8]


@contextmanager
def pg_cursor(dbname: str) -> Iterator[Any]:
    """An autocommit cursor; the connection is closed afterwards (psycopg2's own `with` is not)."""
    conn = psycopg2.connect(dbname=dbname, connect_timeout=10, **PG)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            yield cur
    finally:
        conn.close()


def source_config(slot: str, publication: str) -> dict[str, Any]:
    """A minimal Debezium source: one table, pgoutput, no initial snapshot."""
    return {
        "connector.class": PG_CLASS,
        "tasks.max": 1,
        "database.hostname": PG["host"],
        "database.port": PG["port"],
        "database.user": PG["user"],
        # Resolved by Connect's FileConfigProvider on the worker; never sent in clear.
        "database.password": f"${{file:{SECRETS_FILE}:password}}",
        "database.dbname": DB,
        "topic.prefix": DB,
        "plugin.name": "pgoutput",
        "slot.name": slot,
        "publication.name": publication,
        "publication.autocreate.mode": "filtered",  # a publication for table.include.list only
        "table.include.list": "public.items",
        "snapshot.mode": "no_data",  # stream only; the test makes its own change
    }


def drop_slot_when_released(slot: str, timeout: float = 60.0) -> None:
    """The slot stays active until the deleted connector's task has shut down."""
    deadline = time.monotonic() + timeout
    with pg_cursor("postgres") as cur:
        while True:
            cur.execute("SELECT active FROM pg_replication_slots WHERE slot_name = %s", (slot,))
            row = cur.fetchone()
            if row is None:
                return
            if not row[0]:
                cur.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"replication slot {slot} still active {timeout:g}s after delete")
            time.sleep(1)


def wait_for_active_slot(slot: str, timeout: float = 180.0) -> None:
    """Changes are captured only once the task streams from its slot.

    Creating a logical slot waits for every transaction open on the server to end, so a
    long transaction elsewhere on 5433 delays this; hence the generous timeout.
    """
    deadline = time.monotonic() + timeout
    with pg_cursor("postgres") as cur:
        while time.monotonic() < deadline:
            cur.execute("SELECT active FROM pg_replication_slots WHERE slot_name = %s", (slot,))
            row = cur.fetchone()
            if row and row[0]:
                return
            time.sleep(0.5)
    raise AssertionError(
        f"replication slot {slot} not active after {timeout:g}s; slot creation waits for open "
        "transactions: look for old xact_start in pg_stat_activity on 127.0.0.1:5433"
    )


def lsn_to_int(lsn: str) -> int:
    high, low = lsn.split("/")
    return (int(high, 16) << 32) + int(low, 16)


@pytest.fixture(scope="module")
def hook() -> ConnectClient:
    """The client the hook hands out (`get_conn()`): what operators, sensors and triggers call."""
    return KafkaConnectHook(base_url=CONNECT_URL, auth=CONNECT_AUTH).get_conn()


def drop_scratch_db() -> None:
    """Drop ``hooktest`` with its slots; a database with a replication slot cannot be dropped."""
    with pg_cursor("postgres") as cur:
        cur.execute("SELECT slot_name FROM pg_replication_slots WHERE database = %s", (DB,))
        slots = [row[0] for row in cur.fetchall()]
    for slot in slots:
        drop_slot_when_released(slot)
    with pg_cursor("postgres") as cur:
        cur.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            (DB,),
        )
        cur.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(DB)))


@pytest.fixture(scope="module")
def scratch_db(hook: ConnectClient) -> Iterator[str]:
    for leftover in hook.list_connectors():  # from an earlier run that crashed before cleanup
        if leftover.startswith("hooktest-"):
            hook.delete(leftover)
    drop_scratch_db()
    with pg_cursor("postgres") as cur:
        cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DB)))
    with pg_cursor(DB) as cur:
        cur.execute("CREATE TABLE items (id integer PRIMARY KEY, name text NOT NULL)")
    yield DB
    drop_scratch_db()


class Source:
    """One Debezium connector on the scratch database, and how to clean it up."""

    def __init__(self, hook: ConnectClient, label: str) -> None:
        self.hook = hook
        self.name = f"hooktest-{label}-{RUN}"
        self.slot = f"hooktest_{label}_{RUN}"
        self.publication = f"hooktest_{label}_{RUN}"
        self.config = source_config(self.slot, self.publication)

    def start(self) -> None:
        self.hook.create_or_update(self.name, self.config)
        self.hook.wait_for_state(self.name, "RUNNING", timeout=90)
        wait_for_active_slot(self.slot)

    def cleanup(self) -> None:
        self.hook.delete(self.name)
        drop_slot_when_released(self.slot)
        with pg_cursor(DB) as cur:
            cur.execute(sql.SQL("DROP PUBLICATION IF EXISTS {}").format(sql.Identifier(self.publication)))


@pytest.fixture(scope="module")
def source(hook: ConnectClient, scratch_db: str) -> Iterator[Source]:
    connector = Source(hook, "main")
    try:
        connector.start()
        yield connector
    finally:
        connector.cleanup()


@pytest.fixture
def running(source: Source) -> Iterator[Source]:
    """Each test gets the connector RUNNING (recreated if a test deleted it), and leaves it RUNNING."""
    if not source.hook.exists(source.name):
        source.start()
    source.hook.wait_for_state(source.name, "RUNNING", timeout=90)
    yield source
    hook = source.hook
    if hook.exists(source.name) and hook.get_status(source.name)["connector"]["state"] != "RUNNING":
        hook.resume(source.name)
        hook.wait_for_state(source.name, "RUNNING", timeout=90)


def stream_one_change(source: Source, timeout: float = 90.0) -> list[dict[str, Any]]:
    """Insert a row and wait until Connect has committed an offset at or past it."""
    with pg_cursor(DB) as cur:
        cur.execute("SELECT pg_current_wal_lsn()::text")
        before = lsn_to_int(cur.fetchone()[0])
        cur.execute("INSERT INTO items SELECT coalesce(max(id), 0) + 1, 'streamed' FROM items")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:  # offsets are flushed every offset.flush.interval.ms (5 s)
        offsets = source.hook.get_offsets(source.name)
        if offsets and int(offsets[0]["offset"].get("lsn", 0)) >= before:
            return offsets
        time.sleep(1)
    raise AssertionError(f"no offset past LSN {before} for {source.name} within {timeout:g}s")


def test_list_plugins_has_both_debezium_connectors(hook: ConnectClient) -> None:
    classes = {plugin["class"] for plugin in hook.list_plugins()}
    everything = {plugin["class"] for plugin in hook.list_plugins(connectors_only=False)}

    assert {PG_CLASS, JDBC_SINK_CLASS} <= classes
    assert "org.apache.kafka.connect.transforms.InsertField$Value" in everything - classes


def test_validate_names_the_bad_keys(hook: ConnectClient, scratch_db: str) -> None:
    config = source_config("unused_slot", "unused_pub")
    config["snapshot.mode"] = "sometimes"
    del config["database.hostname"]
    config["database.password"] = "literal-password-for-test"

    errors = hook.validate(PG_CLASS, config)
    with pytest.raises(ConnectConfigError) as err:
        hook.validate_or_raise(PG_CLASS, config, name="hooktest-invalid")

    assert {"snapshot.mode", "database.hostname"} <= {error.split(":")[0] for error in errors}
    message = str(err.value)
    assert "snapshot.mode: " in message and "database.hostname: " in message
    assert "literal-password-for-test" not in message
    assert hook.validate(PG_CLASS, source_config("unused_slot", "unused_pub")) == []


def test_unreachable_connect_gives_a_clear_error() -> None:
    unreachable = KafkaConnectHook(base_url="http://127.0.0.1:1", timeout=2.0, retries=2)

    with pytest.raises(ConnectUnavailableError) as err:
        unreachable.get_conn().get_status("anything")

    assert "http://127.0.0.1:1" in str(err.value) and "make stack-status" in str(err.value)
    ok, message = unreachable.test_connection()
    assert not ok and "http://127.0.0.1:1" in message


def test_test_connection_via_env_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    user, password = CONNECT_AUTH
    monkeypatch.setenv("AIRFLOW_CONN_KAFKA_CONNECT", CONNECT_URL.replace("://", f"://{user}:{password}@"))

    ok, message = KafkaConnectHook().test_connection()

    assert ok, message
    assert CONNECT_URL in message


def test_create_or_update_is_idempotent(running: Source) -> None:
    hook = running.hook

    again = hook.create_or_update(running.name, running.config)  # same config: left alone
    assert again["name"] == running.name
    assert hook.get_status(running.name)["connector"]["state"] == "RUNNING"

    changed = {**running.config, "heartbeat.interval.ms": 10000}
    updated = hook.create_or_update(running.name, changed)
    assert updated["config"]["heartbeat.interval.ms"] == "10000"
    hook.wait_for_state(running.name, "RUNNING", timeout=90)
    hook.create_or_update(running.name, running.config)  # back to the fixture's config
    assert "heartbeat.interval.ms" not in hook.get_config(running.name)


def test_config_status_and_list(running: Source) -> None:
    hook = running.hook

    config = hook.get_config(running.name)
    status = hook.get_status(running.name)

    assert config["database.password"].startswith("${file:")  # stored unresolved
    assert config["slot.name"] == running.slot
    assert status["connector"]["state"] == "RUNNING" and status["tasks"][0]["state"] == "RUNNING"
    assert hook.exists(running.name) and not hook.exists(f"hooktest-missing-{RUN}")
    assert running.name in hook.list_connectors()
    expanded = hook.list_connectors(expand_status=True)
    assert isinstance(expanded, dict)
    assert expanded[running.name]["status"]["connector"]["state"] == "RUNNING"


def test_pause_and_resume(running: Source) -> None:
    hook = running.hook

    hook.pause(running.name)
    paused = hook.wait_for_state(running.name, "PAUSED", timeout=60)
    hook.resume(running.name)
    resumed = hook.wait_for_state(running.name, "RUNNING", timeout=60)

    assert [task["state"] for task in paused["tasks"]] == ["PAUSED"]
    assert [task["state"] for task in resumed["tasks"]] == ["RUNNING"]


def test_stop_keeps_config_and_resume_restarts(running: Source) -> None:
    hook = running.hook

    hook.stop(running.name)
    stopped = hook.wait_for_state(running.name, "STOPPED", timeout=60)

    assert stopped["tasks"] == []
    assert hook.get_config(running.name)["slot.name"] == running.slot
    hook.resume(running.name)
    hook.wait_for_state(running.name, "RUNNING", timeout=90)


def test_offsets_carry_the_lsn_of_a_streamed_change(running: Source) -> None:
    offsets = stream_one_change(running)

    assert offsets[0]["partition"] == {"server": DB}
    assert int(offsets[0]["offset"]["lsn"]) > 0


def test_alter_and_reset_offsets_stop_the_connector_first(running: Source) -> None:
    hook = running.hook
    offsets = stream_one_change(running)
    assert hook.get_status(running.name)["connector"]["state"] == "RUNNING"

    message = hook.alter_offsets(running.name, offsets)

    assert "altered successfully" in message
    assert hook.get_status(running.name)["connector"]["state"] == "STOPPED"
    assert hook.get_offsets(running.name) == offsets

    hook.resume(running.name)
    hook.wait_for_state(running.name, "RUNNING", timeout=90)
    message = hook.reset_offsets(running.name)

    assert "reset successfully" in message
    assert hook.get_status(running.name)["connector"]["state"] == "STOPPED"
    assert hook.get_offsets(running.name) == []


def test_restart_variants(running: Source) -> None:
    hook = running.hook

    assert hook.restart(running.name) is None  # connector only: Connect answers 204
    hook.wait_for_state(running.name, "RUNNING", timeout=90)
    with_tasks = hook.restart(running.name, include_tasks=True)
    assert with_tasks is not None and len(with_tasks["tasks"]) == 1
    hook.wait_for_state(running.name, "RUNNING", timeout=90)
    only_failed = hook.restart(running.name, include_tasks=True, only_failed=True)
    assert only_failed is not None and only_failed["name"] == running.name
    hook.wait_for_state(running.name, "RUNNING", timeout=90)


def test_delete(running: Source) -> None:
    hook = running.hook

    assert hook.delete(running.name) is True

    assert not hook.exists(running.name)
    assert running.name not in hook.list_connectors()
    assert hook.delete(running.name) is False  # already gone
