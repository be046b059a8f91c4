"""One DAG run at a time per migration (table `migration_run_lease`): what `max_active_runs=1` did for every
migration at once, kept for each migration alone, so a migration that loads for days does not hold up another.

A run claims its migration in its first task and releases it in its teardown. A claim succeeds when the row is free,
already this run's (a cleared task of the same run, at 3 a.m.), or held by a run that is no longer running (marked
failed in the UI, or deleted, before its teardown ran): that one is taken over, and the log says so.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from psycopg.rows import dict_row

from pgmigrate.control.store import ControlStore

LIVE_RUN_STATES = ("queued", "running")


@dataclass(frozen=True)
class RunHolder:
    dag_id: str
    run_id: str
    claimed_at: datetime

    def describe(self) -> str:
        return f"{self.dag_id} run {self.run_id} (since {self.claimed_at:%Y-%m-%d %H:%M:%S %Z})"


class MigrationBusy(RuntimeError):
    """Another live run holds the migration."""

    def __init__(self, migration_id: str, holder: RunHolder, state: str) -> None:
        self.migration_id, self.holder, self.state = migration_id, holder, state
        super().__init__(
            f"migration {migration_id!r} is held by {holder.describe()}, which is {state}: two runs must not act on "
            "one migration's slot and connectors at once. Wait for that run to finish (or mark it failed in the "
            "Airflow UI), then clear this task to go on; other migrations are not affected."
        )


class RunLeaseStore(ControlStore):
    """Claims and releases of `migration_run_lease`; each claim is one transaction with the row locked."""

    def claim(self, migration_id: str, dag_id: str, run_id: str, run_state: Callable[[str, str], str | None]) -> str:
        """Hold `migration_id` for this run, or raise MigrationBusy. `run_state(dag_id, run_id)` is the holder
        run's state in Airflow (None: the run no longer exists). Returns what happened, for the log."""
        with self._connect() as conn, conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
            cur.execute(
                "INSERT INTO migration_run_lease (migration_id, dag_id, run_id) VALUES (%s, %s, %s) "
                "ON CONFLICT (migration_id) DO NOTHING RETURNING claimed_at",
                (migration_id, dag_id, run_id),
            )
            if cur.fetchone() is not None:
                return f"claimed {migration_id} for {dag_id} run {run_id}"
            cur.execute(
                "SELECT dag_id, run_id, claimed_at FROM migration_run_lease WHERE migration_id = %s FOR UPDATE",
                (migration_id,),
            )
            holder = RunHolder(**cur.fetchone())
            if (holder.dag_id, holder.run_id) == (dag_id, run_id):
                return f"{migration_id} already held by this run ({dag_id} run {run_id})"
            state = run_state(holder.dag_id, holder.run_id)
            if state in LIVE_RUN_STATES:
                raise MigrationBusy(migration_id, holder, state)
            cur.execute(
                "UPDATE migration_run_lease SET dag_id = %s, run_id = %s, claimed_at = clock_timestamp() "
                "WHERE migration_id = %s",
                (dag_id, run_id, migration_id),
            )
            return (
                f"claimed {migration_id} for {dag_id} run {run_id}, taken over from {holder.describe()}, which is "
                f"{state or 'gone'}"
            )

    def release(self, migration_id: str, dag_id: str, run_id: str) -> bool:
        """Let go of `migration_id` if this run holds it; whether it did."""
        row = self._row(
            "DELETE FROM migration_run_lease WHERE migration_id = %s AND dag_id = %s AND run_id = %s "
            "RETURNING migration_id",
            (migration_id, dag_id, run_id),
        )
        return row is not None

    def holder(self, migration_id: str) -> RunHolder | None:
        row = self._row(
            "SELECT dag_id, run_id, claimed_at FROM migration_run_lease WHERE migration_id = %s", (migration_id,)
        )
        return RunHolder(**row) if row else None
