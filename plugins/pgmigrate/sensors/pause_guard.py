"""`pause_guard`: runs beside `cutover` (or rollback's critical section) and ends its pause at the deadline
if that task cannot: deferred to `PauseGuardTrigger` in the triggerer, so it survives the task's process."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow.sdk import BaseSensorOperator
from airflow.sdk.exceptions import AirflowException

from pgmigrate.core.params import CONTROL_CONN_ID
from pgmigrate.triggers.pause_guard import PauseGuardTrigger


class PauseGuardSensor(BaseSensorOperator):
    """Always deferrable: a guard that held a worker slot would die with the worker it shares with the
    cutover, and a worker process is what it guards against."""

    ui_color = "#fde2e2"
    template_fields = ("migration_id",)

    def __init__(
        self,
        *,
        migration_id: str = "{{ params.migration_id }}",
        control_conn_id: str = CONTROL_CONN_ID,
        wait_for_lease_seconds: float = 300.0,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("timeout", 6 * 3600)
        super().__init__(**kwargs)
        self.migration_id = migration_id
        self.control_conn_id = control_conn_id
        self.wait_for_lease_seconds = wait_for_lease_seconds

    def execute(self, context: Any) -> None:
        self.defer(
            trigger=PauseGuardTrigger(
                migration_id=self.migration_id,
                dag_run_id=context["run_id"],
                control_conn_id=self.control_conn_id,
                wait_for_lease_seconds=self.wait_for_lease_seconds,
                timeout=float(self.timeout),
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=float(self.timeout) + 120),
        )

    def poke(self, context: Any) -> bool:  # never pokes: see the class docstring
        raise NotImplementedError

    def execute_complete(self, context: Any, event: dict[str, Any]) -> dict[str, Any]:
        if event.get("status") != "success":
            raise AirflowException(event.get("message", "the pause guard reported an error without a message"))
        if event.get("state") == "expired" and event.get("ended_by") == "the pause guard":
            self.log.warning(
                "%s: the cutover task did not end its pause in time; the guard put clients back on the origin",
                event.get("message"),
            )
        else:
            self.log.info("%s", event.get("message"))
        return {k: event.get(k) for k in ("state", "ended_by", "message")}
