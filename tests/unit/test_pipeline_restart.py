"""`pipeline_ops.restart` after a task FAILED: Connect restarts tasks asynchronously, so the first status read
after the request may still show the old failure; restart must not take it for a new one.

Fake: `FakeConnect` below stands in for `ConnectClient` (statuses scripted per read), no Kafka Connect."""

from __future__ import annotations

import pytest

from pgmigrate.stream.pipeline_ops import restart

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


class HaltedConnectAfterRewrite:
    """A halted (PAUSED) connector whose config was hand-edited: the status read right after the rewrite
    shows RUNNING (Connect is restarting it), then it settles PAUSED again unless resumed."""

    def __init__(self) -> None:
        self.config = {"connector.class": "x", "insert.mode": "insert"}
        self.rewritten = self.resumed = False

    def exists(self, name: str) -> bool:
        return True

    def get_config(self, name: str) -> dict:
        return dict(self.config)

    def create_or_update(self, name: str, config: dict) -> None:
        self.config, self.rewritten = dict(config), True

    def get_status(self, name: str) -> dict:
        state = "RUNNING" if self.resumed or self.rewritten else "PAUSED"
        return {"connector": {"state": state}, "tasks": [{"id": 0, "state": state}]}

    def resume(self, name: str) -> None:
        self.resumed = True

    def wait_for_state(self, name: str, state: str, timeout: float = 60.0) -> dict:
        if not self.resumed:  # the transient RUNNING is over: it is PAUSED again
            raise RuntimeError(f"{name} did not reach {state}; last status: PAUSED")
        return self.get_status(name)


def test_restart_resumes_after_rewriting_a_halted_connectors_config():
    connect = HaltedConnectAfterRewrite()
    actions = restart(connect, {"sink": {"connector.class": "x", "insert.mode": "upsert"}})  # type: ignore[arg-type]
    assert connect.resumed and connect.config["insert.mode"] == "upsert"
    assert actions == ["sink: config rewritten (insert.mode differed)"]
