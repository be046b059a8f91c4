"""The pause lease: the client-write pause as one row of the control database (`pause_lease`). It lives with
the control tables (every SQL statement on them is in `pgmigrate.control`); the cutover's critical section
(`pgmigrate.cutover.critical_section`) and its pause guard (`pgmigrate.cutover.guard`) hold and end it.

Whoever ends a pause does it with one atomic compare-and-set on the row's `state`, so exactly one wins:
- the switch (`switching()`): the row is locked, the PgBouncers are switched, and the row goes
  `armed -> switched` in the same transaction, before the deadline by the database's clock;
- the cutover itself (`end(..., "released")`) when a step failed or a dry run is over;
- an enforcer at the deadline (`end(..., "expired")`): the thread in the cutover's own process, or the
  pause guard in Airflow's triggerer (`pgmigrate.cutover.guard`), which outlives a `kill -9` of the task.
Only the winner touches the PgBouncers afterwards. Nothing is kept on a local disk: any host that reaches
the control database can arm, end or enforce a pause. Times are the control database's clock.

States: `pending` (created before the pause: the guard gets ready) -> `armed` (deadline set; PgBouncers
being paused) -> `switched` | `released` | `expired`. A `pending` lease whose holder stopped beating is
`abandoned` by the next attempt.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from pgmigrate.control.store import ControlStore

log = logging.getLogger(__name__)

PENDING, ARMED, SWITCHED = "pending", "armed", "switched"
RELEASED, EXPIRED, ABANDONED = "released", "expired", "abandoned"
ACTIVE_STATES = (PENDING, ARMED)
# A holder that has not beaten for this long has died before pausing: its pending lease may be taken over.
HOLDER_STALE_SECONDS = 30.0
# The connections that take part in a compare-and-set notice a dead peer within seconds, not the
# operating system's two hours: a cutover host that vanishes mid-switch releases its row lock quickly.
KEEPALIVES = {"keepalives": 1, "keepalives_idle": 2, "keepalives_interval": 1, "keepalives_count": 3}


class LeaseLost(RuntimeError):
    """The pause ended before this process could end it: an enforcer put clients back (or another attempt did)."""


class LeaseBusy(RuntimeError):
    """Another pause of this migration is pending or armed."""


@dataclass
class Lease:
    lease_id: str
    migration_id: str
    dag_run_id: str
    purpose: str
    state: str
    max_pause_seconds: float
    deadline: datetime | None = None
    plan: dict[str, Any] = field(default_factory=dict)
    created_at: datetime | None = None
    armed_at: datetime | None = None
    ended_at: datetime | None = None
    ended_by: str | None = None
    note: str | None = None
    holder_seen_at: datetime | None = None
    guard_seen_at: datetime | None = None
    now: datetime | None = None  # the control database's clock when the row was read

    @property
    def active(self) -> bool:
        return self.state in ACTIVE_STATES

    def seconds_to_deadline(self) -> float | None:
        if self.deadline is None or self.now is None:
            return None
        return (self.deadline - self.now).total_seconds()

    def guard_watching(self, within_seconds: float = 5.0) -> bool:
        return (
            self.guard_seen_at is not None
            and self.now is not None
            and ((self.now - self.guard_seen_at).total_seconds() <= within_seconds)
        )

    def holder_stale(self, seconds: float = HOLDER_STALE_SECONDS) -> bool:
        seen = self.holder_seen_at or self.created_at
        return seen is not None and self.now is not None and (self.now - seen).total_seconds() > seconds


_SELECT = (
    "SELECT lease_id, migration_id, dag_run_id, purpose, state, max_pause_seconds, deadline, plan, created_at, "
    "armed_at, ended_at, ended_by, note, holder_seen_at, guard_seen_at, clock_timestamp() AS now FROM pause_lease "
)


class LeaseStore(ControlStore):
    """Every SQL statement on `pause_lease`. The table comes with the control schema (`MigrationStateStore`)."""

    def _connect(self) -> psycopg.Connection:
        return self.endpoint.connect(autocommit=True, **KEEPALIVES)

    def _one(self, query: str, args: tuple) -> Lease | None:
        row = self._row(query, args)
        return Lease(**row) if row else None

    def get(self, lease_id: str) -> Lease | None:
        return self._one(_SELECT + "WHERE lease_id = %s", (lease_id,))

    def active(self, migration_id: str) -> Lease | None:
        return self._one(
            _SELECT + "WHERE migration_id = %s AND state IN ('pending', 'armed')",
            (migration_id,),
        )

    def latest_for_run(self, migration_id: str, dag_run_id: str) -> Lease | None:
        """The newest lease of a DAG run (what its pause guard watches)."""
        return self._one(
            _SELECT + "WHERE migration_id = %s AND dag_run_id = %s ORDER BY created_at DESC LIMIT 1",
            (migration_id, dag_run_id),
        )

    def latest(self, migration_id: str) -> Lease | None:
        return self._one(
            _SELECT + "WHERE migration_id = %s ORDER BY created_at DESC LIMIT 1",
            (migration_id,),
        )

    def create(
        self, migration_id: str, dag_run_id: str, purpose: str, max_pause_seconds: float, plan: dict[str, Any]
    ) -> Lease:
        """A new `pending` lease. An earlier attempt's pending lease whose holder died is abandoned first;
        one that is still alive, or armed, refuses (LeaseBusy): two pauses of one migration never overlap."""
        current = self.active(migration_id)
        if current is not None:
            if current.state == PENDING and current.holder_stale():
                self.end(
                    current.lease_id,
                    ABANDONED,
                    by="next attempt",
                    note="holder stopped beating before the pause",
                    expect=PENDING,
                )
            else:
                raise LeaseBusy(
                    f"another pause of {migration_id} is {current.state} (lease {current.lease_id}, "
                    f"{current.purpose} of DAG run {current.dag_run_id}): wait for it to end"
                    + (f" (deadline {current.deadline.isoformat()})" if current.deadline else "")
                    + ", or end that run first."
                )
        lease_id = f"{migration_id}:{uuid.uuid4().hex[:12]}"
        self._execute(
            "INSERT INTO pause_lease (lease_id, migration_id, dag_run_id, purpose, state, max_pause_seconds, plan, "
            "holder_seen_at) VALUES (%s, %s, %s, %s, 'pending', %s, %s, clock_timestamp())",
            (lease_id, migration_id, dag_run_id, purpose, max_pause_seconds, Jsonb(plan)),
        )
        log.info(
            "pause lease %s created for the %s of %s (max pause %gs)",
            lease_id,
            purpose,
            migration_id,
            max_pause_seconds,
        )
        return self.get(lease_id)  # type: ignore[return-value]

    def beat_holder(self, lease_id: str) -> None:
        self._execute("UPDATE pause_lease SET holder_seen_at = clock_timestamp() WHERE lease_id = %s", (lease_id,))

    def beat_guard(self, lease_id: str) -> None:
        self._execute("UPDATE pause_lease SET guard_seen_at = clock_timestamp() WHERE lease_id = %s", (lease_id,))

    def update_plan(self, lease_id: str, **entries: Any) -> None:
        """Merge `entries` into the plan (write-ahead: e.g. the fence is recorded before it is applied, so
        whoever restores clients can lift it even if this process dies in between)."""
        self._execute("UPDATE pause_lease SET plan = plan || %s WHERE lease_id = %s", (Jsonb(entries), lease_id))

    def arm(self, lease_id: str) -> Lease:
        """pending -> armed with the deadline `max_pause_seconds` from now (the control database's clock).
        Call right before pausing: from here on an enforcer ends the pause at the deadline."""
        with self._connect() as conn:
            row = conn.execute(
                "UPDATE pause_lease SET state = 'armed', armed_at = clock_timestamp(), "
                "deadline = clock_timestamp() + make_interval(secs => max_pause_seconds) "
                "WHERE lease_id = %s AND state = 'pending' RETURNING lease_id",
                (lease_id,),
            ).fetchone()
        if row is None:
            current = self.get(lease_id)
            raise LeaseLost(f"pause lease {lease_id} is {current.state if current else 'gone'}, not pending: not armed")
        return self.get(lease_id)  # type: ignore[return-value]

    def end(self, lease_id: str, state: str, by: str, note: str = "", expect: str = ARMED) -> bool:
        """Compare-and-set `expect` -> `state`; True if this call won. `expired` wins only once the deadline
        has passed by the database's clock, so an enforcer that runs early changes nothing."""
        with self._connect() as conn:
            row = conn.execute(
                "UPDATE pause_lease SET state = %s, ended_at = clock_timestamp(), ended_by = %s, note = %s "
                "WHERE lease_id = %s AND state = %s AND (%s <> 'expired' OR clock_timestamp() >= deadline) "
                "RETURNING lease_id",
                (state, by, note or None, lease_id, expect, state),
            ).fetchone()
        won = row is not None
        if won:
            log.info("pause lease %s: %s -> %s by %s%s", lease_id, expect, state, by, f" ({note})" if note else "")
        return won

    @contextmanager
    def switching(self, lease_id: str, lock_timeout_ms: int, by: str) -> Iterator[None]:
        """Hold the lease while the routes change: the row is locked (an enforcer's `end(expired)` waits),
        the block switches the PgBouncers, and `armed -> switched` commits with it. Raises LeaseLost
        before the block when the pause already ended or the deadline passed, and after it when the
        deadline passed meanwhile (the block's work must then be undone by whoever wins the expiry).
        If this process dies inside the block, the transaction rolls back and the lock goes with it."""
        conn = self.endpoint.connect(autocommit=False, **KEEPALIVES)
        try:
            # A frozen holder must not keep the row locked past the pause: the server ends its transaction.
            conn.execute(
                "SELECT set_config('lock_timeout', %s, true), "
                "set_config('idle_in_transaction_session_timeout', %s, true)",
                (f"{lock_timeout_ms}ms", f"{max(lock_timeout_ms, 1000)}ms"),
            )
            try:
                row = conn.execute(
                    "SELECT state, clock_timestamp() < deadline FROM pause_lease WHERE lease_id = %s FOR UPDATE",
                    (lease_id,),
                ).fetchone()
            except psycopg.errors.LockNotAvailable as exc:
                raise LeaseLost(f"pause lease {lease_id} is being ended by an enforcer right now") from exc
            if row is None or row[0] != ARMED or not row[1]:
                raise LeaseLost(
                    f"pause lease {lease_id} is {row[0] if row else 'gone'}"
                    + ("" if row is None or row[1] else " and past its deadline")
                    + ": the pause ended before the switch"
                )
            yield
            done = conn.execute(
                "UPDATE pause_lease SET state = 'switched', ended_at = clock_timestamp(), ended_by = %s "
                "WHERE lease_id = %s AND state = 'armed' AND clock_timestamp() < deadline RETURNING lease_id",
                (by, lease_id),
            ).fetchone()
            if done is None:
                raise LeaseLost(f"pause lease {lease_id}: the deadline passed during the switch")
            conn.commit()
            log.info("pause lease %s: armed -> switched by %s", lease_id, by)
        except BaseException:
            try:
                conn.rollback()
            except psycopg.Error:
                pass
            raise
        finally:
            conn.close()
