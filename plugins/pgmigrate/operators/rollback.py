"""The `pg_rollback` tasks: clients back to the source after a cutover, with every write made on the
target in the meantime replayed there by reverse replication first."""

from __future__ import annotations

import time
from typing import Any

from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from pgmigrate.operators.cutover import CutoverOperator, PauseWritesOperator, _address
from pgmigrate.params import RollbackParams


class RollbackOperator(CutoverOperator):
    params_class = RollbackParams


class RollbackCheckOperator(RollbackOperator):
    def execute(self, context: Any) -> dict:
        m = self.migration(context)
        phase = m.state["phase"]
        if phase not in ("cut_over", "rolling_back") and not m.run.force:
            raise AirflowFailException(
                f"migration {m.params.migration_id} is in phase {phase!r}: rollback applies after a cutover "
                "('cut_over'). Use force=true only if you know clients are on the target."
            )
        route = self.switch().current_route(m.database)
        self.log.info("rollback of %s (%s): clients now go to %s:%s/%s", m.params.migration_id, m.run.reason,
                      route.host, route.port, route.dbname)  # fmt: skip
        m.event("rollback_started", f"rollback requested: {m.run.reason}", reason=m.run.reason, force=m.run.force)
        return {"started_at": time.time(), "phase": phase}


class RollbackPauseOperator(PauseWritesOperator):
    params_class = RollbackParams
    paused_phase = "rolling_back"


class DrainReverseOperator(RollbackOperator):
    inside_pause = True

    def execute(self, context: Any) -> dict:
        from pgmigrate.drain import wait_drained
        from pgmigrate.lag import consumer_lag, read_sink_offsets

        m = self.migration(context)
        reverse = m.names.reversed()
        if m.run.force:
            try:
                pending = consumer_lag(*read_sink_offsets(self.bootstrap(), reverse))
                lost = f"{pending} change records not yet applied to the source"
            except Exception as exc:
                lost = f"unknown: Kafka unreadable ({exc})"
            m.event("rollback_forced", f"force=true: no drain; may be lost: {lost}, plus anything on the target "
                    "not yet read by the reverse connector")  # fmt: skip
            raise AirflowSkipException(f"force=true: drain skipped; may be lost: {lost}")
        budget = self.pause_started(context) + m.run.max_pause_seconds - time.time()
        result = wait_drained(m.target, m.source, reverse, self.bootstrap(), timeout=max(0.5, budget - 1))
        self.log_pause(context, "reverse replication drained: every write made on the target is on the source")
        return result.as_dict()


class SwitchBackOperator(RollbackOperator):
    inside_pause = True

    def execute(self, context: Any) -> dict:
        from pgmigrate.reverse_replication import set_identity_generation
        from pgmigrate.sequences import sync_sequences

        m = self.migration(context)
        synced = sync_sequences(m.target, m.source, m.params.schemas)
        set_identity_generation(m.source, m.state.get("identity_columns") or [], always=True)
        seconds = self.switch_paused_route(
            context,
            m,
            m.source,
            f"the pause watchdog resumed {m.database} before the switch back: clients kept writing to the "
            "target, so reverse replication has more to drain. Trigger pg_rollback again.",
        )
        m.event("switched_back", f"PgBouncer routes {m.database} to the source {_address(m.source)} again; writes "
                f"were paused {seconds:.2f}s", pause_seconds=seconds, sequences=len(synced))  # fmt: skip
        return {"pause_seconds": seconds, "sequences": len(synced)}


class StopReverseOperator(RollbackOperator):
    def execute(self, context: Any) -> dict:
        from pgmigrate.lag import read_sink_offsets
        from pgmigrate.reverse_replication import stop_pipeline

        m = self.migration(context)
        reverse = m.names.reversed()
        replayed = 0
        try:
            _, committed = read_sink_offsets(self.bootstrap(), reverse)
            heartbeat_topic_part = f".{m.names.control_schema}."
            replayed = sum(v for (topic, _), v in committed.items() if heartbeat_topic_part not in topic)
        except Exception as exc:
            self.log.warning("could not read the reverse sink's offsets: %s", exc)
        stopped = stop_pipeline(self.connect(), m.source, reverse)
        m.store.upsert(m.params.migration_id, phase="rolled_back")
        m.event("rolled_back", f"reverse replication stopped ({', '.join(stopped) or 'nothing running'}); "
                f"{replayed} changes made on the target were replayed to the source", replayed=replayed)  # fmt: skip
        return {"stopped": stopped, "replayed_changes": replayed}


class RollbackReportOperator(RollbackOperator):
    def execute(self, context: Any) -> dict:
        from pgmigrate.rollback_report import write_rollback_report

        m = self.migration(context)
        ti = context["ti"]
        started = (ti.xcom_pull(task_ids="check") or {}).get("started_at") or time.time()
        switched = ti.xcom_pull(task_ids="switch_back") or {}
        stopped = ti.xcom_pull(task_ids="stop_reverse_replication") or {}
        path = write_rollback_report(
            m.store,
            m.params.migration_id,
            reason=m.run.reason,
            forced=m.run.force,
            rollback_seconds=time.time() - started,
            pause_seconds=switched.get("pause_seconds"),
            replayed_changes=stopped.get("replayed_changes"),
        )
        self.log.info("rollback report: %s", path)
        return {"report": str(path), "rollback_seconds": time.time() - started}


class AbortRollbackOperator(RollbackOperator):
    """A rollback step failed while writes were paused: resume wherever clients are routed now."""

    def execute(self, context: Any) -> dict:
        from pgmigrate.pause_watchdog import disarm

        m = self.migration(context)
        switch = self.switch()
        switch.resume(m.database)
        handle = self.watchdog_handle(context)
        if handle is not None:
            disarm(handle)
        route = switch.current_route(m.database)
        m.event("rollback_failed", f"rollback step failed; resumed, clients go to {route.host}:{route.port}. Fix the "
                "failed task and trigger pg_rollback again (force=true if the target is gone)")  # fmt: skip
        return {"route": f"{route.host}:{route.port}/{route.dbname}"}
