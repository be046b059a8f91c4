"""`pipeline_ops.restart` after a task FAILED: Connect restarts tasks asynchronously, so the first status read
after the request may still show the old failure; restart must not take it for a new one.

Fake: `FakeConnect` below stands in for `ConnectClient` (statuses scripted per read), no Kafka Connect."""

from __future__ import annotations

import pytest

from pgmigrate.pipeline_ops import restart

pytestmark = pytest.mark.unit


def status(task_state: str) -> dict:
    trace = "org.apache.kafka.connect.errors.ConnectException: boom" if task_state == "FAILED" else None
    return {"connector": {"state": "RUNNING"}, "tasks": [{"id": 0, "state": task_state, "trace": trace}]}


class FakeConnect:
    """Scripted statuses: the sink reads FAILED until `stale_reads` reads after the restart request."""

    def __init__(self, stale_reads: int) -> None:
        self.stale_reads = stale_reads
        self.restarted = False
        self.config = {"connector.class": "x"}

    def exists(self, name: str) -> bool:
        return True

    def get_config(self, name: str) -> dict:
        return dict(self.config)

    def get_status(self, name: str) -> dict:
        if not self.restarted:
            return status("FAILED")
        if self.stale_reads > 0:
            self.stale_reads -= 1
            return status("FAILED")
        return status("RUNNING")

    def restart(self, name: str, include_tasks: bool = False, only_failed: bool = False) -> None:
        self.restarted = True

    def wait_for_state(self, name: str, state: str, timeout: float = 60.0) -> dict:
        current = self.get_status(name)
        if current["tasks"][0]["state"] == "FAILED":
            raise RuntimeError(f"{name} task 0 FAILED")
        return current


def test_restart_waits_out_the_stale_failed_status():
    connect = FakeConnect(stale_reads=2)
    actions = restart(connect, {"sink": dict(connect.config)})  # type: ignore[arg-type]
    assert actions == ["sink: restarted its failed tasks"]
