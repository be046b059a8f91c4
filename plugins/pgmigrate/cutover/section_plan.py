"""What a critical section is asked to do (`SectionPlan`, its two `Side`s), what it reports (`SectionResult`),
and the one budget every step inside the pause draws on (`PauseBudget`). Plain data: the operators build a
plan from the migration's record and the run's params; `critical_section` carries it out."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import psycopg

from pgmigrate.core.catalog import TableInfo
from pgmigrate.core.endpoints import PgEndpoint
from pgmigrate.core.naming import MigrationNames
from pgmigrate.cutover.change_topics import Positions
from pgmigrate.cutover.routing.routes import Route

# Kept for the way back: the budget stops a step early enough that releasing the pause still fits.
RESTORE_RESERVE_SECONDS = 0.5
MIN_STEP_TIMEOUT_MS = 100


class CutoverAborted(RuntimeError):
    """The critical section stopped before the switch; clients are back on the origin (see `details`)."""

    def __init__(self, message: str, step: str, details: dict[str, Any]) -> None:
        super().__init__(message)
        self.step = step
        self.details = details


@dataclass(frozen=True)
class Side:
    """One server of the section: its Airflow connection id, endpoint, and where PgBouncer reaches it."""

    conn_id: str
    endpoint: PgEndpoint

    @property
    def route(self) -> Route:
        return Route(host=self.endpoint.host, port=self.endpoint.port, dbname=self.endpoint.dbname)

    def as_plan(self) -> dict:
        r = self.route
        return {"conn_id": self.conn_id, "route": {"host": r.host, "port": r.port, "dbname": r.dbname}}


@dataclass
class SectionPlan:
    purpose: str  # cutover | rollback | dry_run
    migration_id: str
    dag_run_id: str
    names: MigrationNames  # the pipeline that carries origin -> destination (drained, verified, stopped)
    origin: Side  # where clients are
    destination: Side  # where they go
    database: str  # the PgBouncer database
    tables: list[TableInfo]
    schemas: list[str]
    identity_columns: list[dict]
    max_pause_seconds: float
    since: Positions  # change-topic positions the last validation covered
    allow_direct_sessions: bool = False
    create_reverse_slots: bool = False  # cutover: keep every target change from the switch on, for rollback
    unfence_destination: dict | None = None  # rollback: the fence the cutover left on the source
    force: bool = False  # rollback with the origin gone: no fence, drain, verification or slot check
    precopy_passes: int = 8
    guard_wait_seconds: float = 120.0

    @property
    def dry_run(self) -> bool:
        return self.purpose == "dry_run"


@dataclass
class SectionResult:
    lease_id: str = ""
    pause_seconds: float = 0.0
    steps: list[dict[str, Any]] = field(default_factory=list)
    passes: list[dict[str, Any]] = field(default_factory=list)
    verification: dict[str, Any] = field(default_factory=dict)
    drain: dict[str, Any] = field(default_factory=dict)
    sequences: list[dict[str, Any]] = field(default_factory=list)
    fence: dict[str, Any] = field(default_factory=dict)
    stopped: list[str] = field(default_factory=list)
    reverse_slots: list[str] = field(default_factory=list)
    switched: bool = False
    failed_step: str | None = None
    late_writes: dict[str, int] = field(default_factory=dict)  # after the switch: changes on the origin after the drain
    problems: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "lease_id": self.lease_id,
            "pause_seconds": round(self.pause_seconds, 3),
            "steps": self.steps,
            "passes": self.passes,
            "verification": self.verification,
            "drain": self.drain,
            "sequences": len(self.sequences),
            "fence": self.fence,
            "stopped": self.stopped,
            "reverse_slots": self.reverse_slots,
            "switched": self.switched,
            "failed_step": self.failed_step,
            "late_writes": self.late_writes,
            "problems": self.problems,
        }


class PauseBudget:
    """One budget for the whole pause: what is left of `max_pause_seconds` since the pause began, minus a
    reserve for ending it, as statement and lock timeouts."""

    def __init__(self, max_pause_seconds: float) -> None:
        self.max_pause_seconds = max_pause_seconds
        self.started = time.monotonic()

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def remaining(self) -> float:
        return self.max_pause_seconds - self.elapsed() - RESTORE_RESERVE_SECONDS

    def timeout_ms(self) -> int:
        return max(MIN_STEP_TIMEOUT_MS, int(self.remaining() * 1000))

    def apply(self, *conns: psycopg.Connection) -> None:
        """Bound every later statement on these connections by what is left."""
        value = f"{self.timeout_ms()}ms"
        for conn in conns:
            conn.execute(
                "SELECT set_config('lock_timeout', %s, false), set_config('statement_timeout', %s, false)",
                (value, value),
            )
