"""Triggers are imported by the triggerer from the path `serialize()` returns: it must import and
rebuild the same trigger. Connect is faked with httpx's MockTransport (unit test, no stack)."""

import asyncio
import importlib

import httpx
import pytest

from pgmigrate.triggers.connections import connector_statuses
from pgmigrate.triggers.connectors_running import ConnectorsRunningTrigger
from pgmigrate.triggers.replication_lag import ReplicationLagTrigger
from pgmigrate.triggers.snapshot_complete import SnapshotCompleteTrigger

pytestmark = pytest.mark.unit

TRIGGERS = [
    ConnectorsRunningTrigger(connectors=["a-source", "a-sink"], base_url="http://127.0.0.1:1"),
    ReplicationLagTrigger("a", "migration_source", "migration_target", 5.0),
    SnapshotCompleteTrigger("a", "migration_source", "migration_target", [["public", "orders"]]),
]


@pytest.mark.parametrize("trigger", TRIGGERS, ids=lambda t: type(t).__name__)
def test_serialize_round_trips_through_its_import_path(trigger):
    path, kwargs = trigger.serialize()
    module, _, name = path.rpartition(".")
    rebuilt = getattr(importlib.import_module(module), name)(**kwargs)
    assert type(rebuilt) is type(trigger)
    assert rebuilt.serialize() == (path, kwargs)


def test_connector_statuses_reports_missing_connectors_as_none():
    def fake_connect(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/connectors/present/status":
            return httpx.Response(200, json={"connector": {"state": "RUNNING"}, "tasks": []})
        return httpx.Response(404, json={"message": "not found"})

    async def read():
        async with httpx.AsyncClient(base_url="http://connect", transport=httpx.MockTransport(fake_connect)) as client:
            return await connector_statuses(client, ["present", "absent"])

    statuses = asyncio.run(read())
    assert statuses == {"present": {"connector": {"state": "RUNNING"}, "tasks": []}, "absent": None}
