"""Reading Kafka Connect's `GET /connectors/{name}/status` answers: running, failed (with Connect's
trace), or not there yet. Pure assessments, shared by the sensors, their triggers, the operators and the
on-call CLI; `connectors_running` and `failed_connectors` read the statuses through a `ConnectClient`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pgmigrate.core.waits import WaitStatus

if TYPE_CHECKING:
    from pgmigrate.kafka.connect_client import ConnectClient

RUNNING = "running"
FAILED = "failed"
PENDING = "pending"


def first_trace_line(trace: str | None) -> str:
    if not trace:
        return "no trace"
    lines = [ln.strip() for ln in trace.strip().splitlines() if ln.strip()]
    # Connect traces open with the wrapper; the cause Debezium names is usually in a "Caused by" line.
    caused = [ln for ln in lines if ln.startswith("Caused by:")]
    return (caused[-1] if caused else lines[0])[:500]


def assess_connector(name: str, status: dict[str, Any] | None) -> tuple[str, str]:
    """(state, one-line description) for one connector's status document (None: not found)."""
    if status is None:
        return PENDING, f"{name}: not created yet"
    connector_state = status.get("connector", {}).get("state", "UNKNOWN")
    if connector_state == "FAILED":
        return FAILED, f"{name} FAILED: {first_trace_line(status['connector'].get('trace'))}"
    tasks = status.get("tasks", [])
    for task in tasks:
        if task.get("state") == "FAILED":
            return FAILED, f"{name} task {task.get('id')} FAILED: {first_trace_line(task.get('trace'))}"
    task_states = ",".join(t.get("state", "?") for t in tasks) or "no tasks yet"
    if connector_state == "RUNNING" and tasks and all(t.get("state") == "RUNNING" for t in tasks):
        return RUNNING, f"{name}: RUNNING ({len(tasks)} task(s) RUNNING on {tasks_by_worker(tasks)})"
    return PENDING, f"{name}: connector {connector_state}, tasks {task_states}"


def tasks_by_worker(tasks: list[dict[str, Any]]) -> str:
    """Which Connect worker runs how many of a connector's tasks: on a cluster, whether they spread."""
    counts: dict[str, int] = {}
    for task in tasks:
        worker = str(task.get("worker_id") or "?")
        counts[worker] = counts.get(worker, 0) + 1
    return ", ".join(f"{worker} x{count}" if count > 1 else worker for worker, count in sorted(counts.items()))


def assess_connectors(statuses: dict[str, dict[str, Any] | None]) -> tuple[str, str]:
    """Failed if any failed, running if all run, else pending; the description covers every connector."""
    assessed = {name: assess_connector(name, status) for name, status in statuses.items()}
    descriptions = "; ".join(desc for _, desc in assessed.values())
    states = {state for state, _ in assessed.values()}
    if FAILED in states:
        failed = "; ".join(desc for state, desc in assessed.values() if state == FAILED)
        return FAILED, failed
    if states == {RUNNING}:
        return RUNNING, descriptions
    return PENDING, descriptions


def failed_connectors(connect: ConnectClient, connectors: list[str]) -> str | None:
    """Connect's description of a FAILED connector or task among `connectors`, if any."""
    state, message = assess_connectors(connect.statuses(connectors))
    return message if state == FAILED else None


def connectors_running(connect: ConnectClient, connectors: list[str]) -> WaitStatus:
    """`wait_connectors_running`: done when every connector and all its tasks are RUNNING; fatal on FAILED."""
    state, message = assess_connectors(connect.statuses(connectors))
    if state == FAILED:
        return WaitStatus.failed(
            f"{message}. Fix the cause, then restart the failed tasks (scripts/migration restart, or POST "
            "/connectors/<name>/restart?includeTasks=true&onlyFailed=true) and rerun this task."
        )
    return WaitStatus(state == RUNNING, f"connectors: {message}")
