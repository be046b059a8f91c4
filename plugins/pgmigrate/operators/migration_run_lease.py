"""The run lease of the DAGs that act on one migration (pg_migration, pg_cutover, pg_rollback, the recovery, schema
sync and resync runbooks): `claim_migration` first, `release_migration` as the run's teardown
(`pgmigrate.control.run_lease`). Runs of different migrations go side by side; a second run of the same migration
fails at once, naming the run that holds it."""

from __future__ import annotations

from typing import Any

from airflow.sdk.exceptions import AirflowFailException, AirflowRuntimeError

from pgmigrate.control.run_lease import MigrationBusy, RunLeaseStore
from pgmigrate.operators.base import MigrationTaskOperator


class _RunLeaseOperator(MigrationTaskOperator):
    ui_color = "#f3f3f3"

    def _lease(self, context: Any) -> tuple[RunLeaseStore, str, str, str]:
        self.store()  # creates the control tables if needed
        migration_id = str(context["params"]["migration_id"])
        run = context["dag_run"]
        return RunLeaseStore(self.endpoint(self.control_conn_id)), migration_id, run.dag_id, run.run_id


def _run_state(ti: Any, dag_id: str, run_id: str) -> str | None:
    """The holder run's state in Airflow; None when the run no longer exists."""
    try:
        state = ti.get_dagrun_state(dag_id, run_id)
        return str(getattr(state, "value", state))  # a DagRunState enum
    except AirflowRuntimeError as exc:
        if "404" in str(exc) or "not found" in str(exc).lower():
            return None
        raise


class ClaimMigrationOperator(_RunLeaseOperator):
    """Setup: hold the migration for this run (again, after a task is cleared)."""

    def execute(self, context: Any) -> str:
        store, migration_id, dag_id, run_id = self._lease(context)
        try:
            what = store.claim(migration_id, dag_id, run_id, lambda d, r: _run_state(context["ti"], d, r))
        except MigrationBusy as exc:
            raise AirflowFailException(str(exc)) from exc
        self.log.info("%s", what)
        return what


class ReleaseMigrationOperator(_RunLeaseOperator):
    """Teardown: let the migration go, whatever became of the run's other tasks."""

    def execute(self, context: Any) -> bool:
        store, migration_id, dag_id, run_id = self._lease(context)
        released = store.release(migration_id, dag_id, run_id)
        self.log.info(
            "%s %s", migration_id, "released by this run" if released else "was not held by this run: nothing to do"
        )
        return released


def migration_run_lease() -> tuple[ClaimMigrationOperator, ReleaseMigrationOperator]:
    """The claim and its teardown, for a DAG to put around its tasks (`claim >> first`, `last >> release`)."""
    claim = ClaimMigrationOperator(task_id="claim_migration", retries=2)
    release = ReleaseMigrationOperator(task_id="release_migration", retries=2).as_teardown(setups=claim)
    return claim, release
