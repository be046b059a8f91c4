"""Triggers are imported by the triggerer from the path `serialize()` returns: it must import and
rebuild the same trigger. Connect is faked with httpx's MockTransport (unit test, no stack)."""

import asyncio
import importlib

import pytest

from pgmigrate.triggers.connectors_running import ConnectorsRunningTrigger
from pgmigrate.triggers.replication_lag import ReplicationLagTrigger
from pgmigrate.triggers.resync_complete import ResyncCompleteTrigger
from pgmigrate.triggers.snapshot_complete import SnapshotCompleteTrigger

pytestmark = pytest.mark.unit

TRIGGERS = [
    ConnectorsRunningTrigger(connectors=["a-source", "a-sink"], base_url="http://127.0.0.1:1"),
    ReplicationLagTrigger("a", "migration_source", "migration_target", 5.0),
    SnapshotCompleteTrigger("a", "migration_source", "migration_target", [["public", "orders"]]),
    ResyncCompleteTrigger("a", "0/16B3748", target_conn_id="migration_target"),
]


@pytest.mark.parametrize("trigger", TRIGGERS, ids=lambda t: type(t).__name__)
def test_serialize_round_trips_through_its_import_path(trigger):
    path, kwargs = trigger.serialize()
    module, _, name = path.rpartition(".")
    rebuilt = getattr(importlib.import_module(module), name)(**kwargs)
    assert type(rebuilt) is type(trigger)
    assert rebuilt.serialize() == (path, kwargs)


def test_serialize_names_the_concrete_trigger_not_the_base():
    path, kwargs = ConnectorsRunningTrigger(connectors=["a-source"], base_url="http://127.0.0.1:1").serialize()
    assert path == "pgmigrate.triggers.connectors_running.ConnectorsRunningTrigger"
    assert kwargs == {
        "connectors": ["a-source"],
        "kafka_connect_conn_id": "kafka_connect",
        "base_url": "http://127.0.0.1:1",
        "poll_interval": 5.0,
        "timeout": 600.0,
    }


FAILED_SINK = {
    "a-source": {"connector": {"state": "RUNNING"}, "tasks": [{"id": 0, "state": "RUNNING"}]},
    "a-sink": {
        "connector": {"state": "RUNNING"},
        "tasks": [
            {
                "id": 0,
                "state": "FAILED",
                "trace": "org.apache.kafka.connect.errors.ConnectException: x\n"
                "Caused by: org.postgresql.util.PSQLException: ERROR: permission denied",
            }
        ],
    },
}


class FakeConnect:
    """Unit fake of `ConnectClient` (no Connect): fixed status documents."""

    def __init__(self, statuses):
        self._statuses = statuses

    def statuses(self, names):
        return {n: self._statuses.get(n) for n in names}


def run_trigger(trigger):
    async def first_event():
        async for event in trigger.run():
            return event.payload

    return asyncio.run(first_event())


def test_a_failed_connector_fails_the_poke_and_the_trigger_alike(monkeypatch):
    from airflow.sdk.exceptions import AirflowFailException

    from pgmigrate.hooks.kafka_connect import KafkaConnectHook
    from pgmigrate.sensors.connectors_running import ConnectorsRunningSensor

    monkeypatch.setattr(KafkaConnectHook, "get_conn", lambda _self: FakeConnect(FAILED_SINK))
    sensor = ConnectorsRunningSensor(task_id="wait_connectors_running", deferrable=False)
    monkeypatch.setattr(sensor, "_connectors", lambda _context: ["a-source", "a-sink"])
    with pytest.raises(AirflowFailException) as poked:
        sensor.poke({})

    trigger = ConnectorsRunningTrigger(connectors=["a-source", "a-sink"], base_url="http://127.0.0.1:1")
    trigger._connect = FakeConnect(FAILED_SINK)
    monkeypatch.setattr(trigger, "open", lambda: asyncio.sleep(0))
    event = run_trigger(trigger)
    assert event["status"] == "error" and event["fatal"] is True
    assert event["message"] == str(poked.value)
    assert "a-sink task 0 FAILED" in event["message"] and "permission denied" in event["message"]


def test_the_trigger_keeps_waiting_through_a_failed_look_then_succeeds(monkeypatch):
    running = {
        name: {"connector": {"state": "RUNNING"}, "tasks": [{"id": 0, "state": "RUNNING"}]}
        for name in ("a-source", "a-sink")
    }
    looks = iter([OSError("connection refused"), FakeConnect(running)])

    class Flaky:
        def statuses(self, names):
            answer = next(looks)
            if isinstance(answer, Exception):
                raise answer
            return answer.statuses(names)

    trigger = ConnectorsRunningTrigger(connectors=["a-source", "a-sink"], poll_interval=0.01, timeout=30)
    trigger._connect = Flaky()
    monkeypatch.setattr(trigger, "open", lambda: asyncio.sleep(0))
    event = run_trigger(trigger)
    assert event["status"] == "success" and "RUNNING" in event["message"]


def test_a_sensor_hands_its_connections_poll_interval_and_timeout_to_its_trigger():
    from pgmigrate.sensors.replication_lag import ReplicationLagSensor

    sensor = ReplicationLagSensor(
        task_id="wait_caught_up", kafka_conn_id="k", kafka_connect_conn_id="c", poll_interval=3, timeout=60
    )
    _, kwargs = sensor.build_trigger({"params": {"migration_id": "shop"}}).serialize()
    assert kwargs["kafka_conn_id"] == "k" and kwargs["kafka_connect_conn_id"] == "c"
    assert kwargs["poll_interval"] == 3 and kwargs["timeout"] == 60.0
