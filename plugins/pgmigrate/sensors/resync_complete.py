"""`wait_resync`: the incremental snapshot signalled by `request_resync` is done (deferrable)."""

from __future__ import annotations

from typing import Any

from pgmigrate.core.waits import WaitStatus
from pgmigrate.sensors.base import MigrationSensor
from pgmigrate.triggers.resync_complete import ResyncCompleteTrigger


class ResyncCompleteSensor(MigrationSensor):
    """`request`: what the task that signalled the resync returned (its XComArg, wired in the DAG file)."""

    template_fields = ("request",)

    def __init__(self, *, request: Any, **kwargs: Any) -> None:
        kwargs.setdefault("poll_interval", 2.0)
        super().__init__(**kwargs)
        self.request = request

    def _request(self, context: Any) -> dict:
        return self.request or {"signal_lsn": None}

    def build_trigger(self, context: Any) -> ResyncCompleteTrigger:
        request = self._request(context)
        return ResyncCompleteTrigger(
            migration_id=context["params"]["migration_id"],
            signal_lsn=request["signal_lsn"],
            target_conn_id=request.get("target_conn_id") if request.get("native_tables") else None,
            **self.wait_arguments(),
        )

    def look(self, context: Any) -> WaitStatus:
        from pgmigrate.core.naming import MigrationNames
        from pgmigrate.stream.resync import resync_done

        request = self._request(context)
        connect = self.connect_client()
        target = self.endpoint(request["target_conn_id"]) if request.get("native_tables") else None
        return resync_done(connect, MigrationNames(context["params"]["migration_id"]), request["signal_lsn"], target)
