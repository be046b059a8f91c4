"""The monitor run split per migration (pgmigrate.alerts.monitor): which migrations are monitored, ended ones'
alerts resolved, one migration's failure not stopping another's. Fakes for the state and alert stores; no
database, no Airflow."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from pgmigrate.alerts import monitor
from pgmigrate.alerts.monitor import MonitorResult, monitor_one, monitored_ids
from pgmigrate.alerts.rules import P0, Alert, Thresholds

pytestmark = pytest.mark.unit

CONTROL = object()  # the fakes ignore the endpoint

MIGRATIONS = [
    {"migration_id": "a-stream", "phase": "streaming", "params": {}},
    {"migration_id": "b-caught", "phase": "caught_up", "params": {"source_conn_id": "src_b"}},
    {"migration_id": "c-cut", "phase": "cut_over", "params": None},
    {"migration_id": "d-snapshot", "phase": "snapshotting", "params": {}},
    {"migration_id": "e-torn", "phase": "torn_down", "params": {}},
    {"migration_id": "f-rolled", "phase": "rolled_back", "params": {}},
    {"migration_id": "g-failed", "phase": "failed", "params": {}},
    {"migration_id": "h-torn-quiet", "phase": "torn_down", "params": {}},
]
WITH_OPEN = {"a-stream", "e-torn", "f-rolled", "g-failed"}


class FakeStateStore:
    def __init__(self, endpoint: Any) -> None:
        self.endpoint = endpoint

    def migrations(self) -> list[dict[str, Any]]:
        return [dict(m) for m in MIGRATIONS]

    def get(self, migration_id: str) -> dict[str, Any] | None:
        return next((dict(m) for m in MIGRATIONS if m["migration_id"] == migration_id), None)


class FakeAlertStore:
    def __init__(self, endpoint: Any) -> None:
        self.endpoint = endpoint

    def migrations_with_open_alerts(self) -> set[str]:
        return set(WITH_OPEN)


class FakeChannel:
    name = "log"


@pytest.fixture
def fakes(monkeypatch):
    """Records the calls the monitor makes instead of reading anything."""
    calls: dict[str, list] = {"resolved": [], "monitored": [], "delivered": []}
    fail: set[str] = set()
    halt: set[str] = set()

    def resolve_all(control: Any, migration_id: str) -> list[str]:
        calls["resolved"].append(migration_id)
        return ["lag_high"]

    def monitor_migration(state, control, source, target, *args, **kwargs) -> MonitorResult:
        migration_id = state["migration_id"]
        calls["monitored"].append((migration_id, source, target))
        if migration_id in fail:
            raise RuntimeError(f"{migration_id}: connection refused")
        result = MonitorResult(migration_id, state["phase"])
        if migration_id in halt:
            result.raised = [Alert(P0, "data_loss", migration_id, "rows differ")]
            result.halt = True
        return result

    def deliver(control: Any, channels: Any, migration_id: str | None = None) -> list:
        calls["delivered"].append(migration_id)
        return []

    monkeypatch.setattr(monitor, "MigrationStateStore", FakeStateStore)
    monkeypatch.setattr(monitor, "AlertStore", FakeAlertStore)
    monkeypatch.setattr(monitor, "resolve_all", resolve_all)
    monkeypatch.setattr(monitor, "monitor_migration", monitor_migration)
    monkeypatch.setattr(monitor, "deliver", deliver)
    return calls, fail, halt


def run_one(migration_id: str) -> dict[str, str] | None:
    return monitor_one(
        CONTROL,
        migration_id,
        connect=None,
        kafka=None,
        channels=[FakeChannel()],
        log_dirs=(),
        endpoint_for=lambda conn_id: f"endpoint:{conn_id}",
        thresholds_for=lambda _: Thresholds(),
    )


def test_monitored_ids_are_the_monitored_phases_and_ended_ones_are_resolved(fakes):
    calls, _, _ = fakes
    assert monitored_ids(CONTROL) == ["a-stream", "b-caught", "c-cut"]
    # only ended migrations with open alerts: not the snapshotting one, not the quiet torn-down one
    assert calls["resolved"] == ["e-torn", "f-rolled", "g-failed"]
    assert calls["monitored"] == [], "listing the ids reads no migration"


def test_monitored_ids_honour_the_migration_ids_param(fakes):
    calls, _, _ = fakes
    assert monitored_ids(CONTROL, {"b-caught", "d-snapshot", "f-rolled", "unknown"}) == ["b-caught"]
    assert calls["resolved"] == ["f-rolled"], "an ended migration outside the param keeps its alerts this run"


def test_monitor_one_reads_its_own_connections_and_returns_the_halt_conf(fakes):
    calls, _, halt = fakes
    halt.add("b-caught")
    assert run_one("a-stream") is None
    assert run_one("b-caught") == {
        "migration_id": "b-caught",
        "reason": "P0 data loss detected by pg_migration_monitor",
    }
    assert calls["monitored"] == [
        ("a-stream", "endpoint:migration_source", "endpoint:migration_target"),
        ("b-caught", "endpoint:src_b", "endpoint:migration_target"),
    ]


def test_monitor_one_skips_a_migration_that_left_the_monitored_phases(fakes, caplog):
    calls, _, _ = fakes
    with caplog.at_level(logging.INFO, logger=monitor.__name__):
        assert run_one("e-torn") is None
        assert run_one("gone-since") is None
    assert calls["monitored"] == []
    assert "e-torn is torn_down now: not monitored" in caplog.text
    assert "gone-since is gone now: not monitored" in caplog.text


def test_monitor_one_raises_so_only_its_mapped_task_fails(fakes):
    _, fail, _ = fakes
    fail.add("a-stream")
    with pytest.raises(RuntimeError, match="connection refused"):
        run_one("a-stream")
    assert run_one("b-caught") is None, "the next migration is monitored as usual"
