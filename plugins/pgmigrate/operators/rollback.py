"""The `pg_rollback` tasks: clients back to the source after a cutover, with every write made on the target
meanwhile replayed there by reverse replication first. `rollback` is the cutover's critical section in the
other direction (same lease, guard and fence); see `pgmigrate.cutover`."""

from __future__ import annotations

import time
from typing import Any

from airflow.sdk.exceptions import AirflowFailException

from pgmigrate.operators.cutover import CriticalSectionOperator, CutoverStepOperator, Migration, deploy_reverse
from pgmigrate.params import RollbackParams


class RollbackStepOperator(CutoverStepOperator):
    params_class = RollbackParams


class RollbackCheckOperator(RollbackStepOperator):
    """Phase cut_over; the reverse pipeline running (deployed here from the cutover's slots if a cutover's
    `deploy_reverse_connectors` never completed, so every target write still comes back)."""

    def execute(self, context: Any) -> dict:
        from pgmigrate.connector_status import RUNNING, assess_connectors

        m = self.migration(context)
        phase = m.state["phase"]
        if phase != "cut_over":
            raise AirflowFailException(
                f"migration {m.migration_id} is in phase {phase!r}: rollback applies after a cutover ('cut_over')."
            )
        leftover = self.settle_leftover_lease(m)
        if leftover:
            self.log.warning("%s", leftover)
        reverse = m.names.reversed()
        connect = self.connect()
        if not m.run.force:
            missing = [n for n in (reverse.source_connector, reverse.sink_connector) if not connect.exists(n)]
            if missing:
                self.log.warning("reverse connectors %s missing: deploying them from the cutover's slots", missing)
                deploy_reverse(self, m)
            statuses = {n: connect.get_status(n) for n in (reverse.source_connector, reverse.sink_connector)}
            state, detail = assess_connectors(statuses)
            if state != RUNNING:
                raise AirflowFailException(f"reverse replication is not running ({detail}): run pg_migration_restart "
                                           "for it first, or force=true if the target is gone (loses its writes)")
        routes = {k: str(v) for k, v in self.routing(m).routes().items()}
        self.log.info("rollback of %s (%s): clients now go to %s", m.migration_id, m.run.reason, routes)
        m.event("rollback_started", f"rollback requested: {m.run.reason}", reason=m.run.reason, force=m.run.force)
        return {"started_at": time.time(), "phase": phase, "routes": routes}


class RollbackOperator(CriticalSectionOperator):
    """`rollback`: target -> source through the critical section (see `cutover.critical_section`)."""

    params_class = RollbackParams

    def section_plan(self, context: Any, m: Migration):
        from pgmigrate.cutover.critical_section import SectionPlan, Side
        from pgmigrate.cutover.pre_validation import positions_of

        reverse = m.validations.get("reverse")
        return SectionPlan(
            purpose="rollback",
            migration_id=m.migration_id,
            dag_run_id=context["run_id"],
            names=m.names.reversed(),
            origin=Side(m.params.target_conn_id, m.target),
            destination=Side(m.params.source_conn_id, m.source),
            database=m.database,
            tables=m.tables,
            schemas=list(m.params.schemas),
            identity_columns=m.state.get("identity_columns") or [],
            max_pause_seconds=m.run.max_pause_seconds,
            # The switch was verified identical: without a post-cutover validation, every reverse change counts.
            since=positions_of(reverse) if reverse and reverse.get("ok") else {},
            allow_direct_sessions=m.run.allow_direct_sessions,
            unfence_destination=(m.state.get("fences") or {}).get("source"),
            force=m.run.force,
        )

    def on_switched(self, m: Migration, plan, result) -> None:
        fences = dict(m.state.get("fences") or {})
        fences.pop("source", None)
        if not plan.force:
            fences["target"] = self.lease_store().get(result.lease_id).plan.get("fence_origin") or {}
        m.store.upsert(m.migration_id, phase="rolled_back", fences=fences)
        m.event("switched_back", f"every PgBouncer routes {m.database} to the source {m.source.label} again; writes "
                f"were paused {result.pause_seconds:.3f}s", **result.as_dict())  # fmt: skip


class StopReverseOperator(RollbackStepOperator):
    def execute(self, context: Any) -> dict:
        from pgmigrate.cutover.reverse import stop_pipeline
        from pgmigrate.lag import read_sink_offsets

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
        m.event("rolled_back", f"reverse replication stopped ({', '.join(stopped) or 'nothing running'}); "
                f"{replayed} changes made on the target were replayed to the source", replayed=replayed)  # fmt: skip
        return {"stopped": stopped, "replayed_changes": replayed}


class RollbackReportOperator(RollbackStepOperator):
    def execute(self, context: Any) -> dict:
        from pgmigrate.rollback_report import write_rollback_report

        m = self.migration(context)
        ti = context["ti"]
        started = (ti.xcom_pull(task_ids="check") or {}).get("started_at") or time.time()
        switched = ti.xcom_pull(task_ids="rollback") or {}
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


class AbortRollbackOperator(RollbackStepOperator):
    """`rollback` failed: its pause ended (settled here if nobody did), clients stay on the target; the reverse
    pipeline resumes and the source's identities go back to BY DEFAULT for its sink. Rerun-safe."""

    def execute(self, context: Any) -> dict:
        from pgmigrate.cutover.lease import SWITCHED
        from pgmigrate.cutover.reverse import resume_pipeline, set_identity_generation
        from pgmigrate.operators.cutover import AbortCutoverOperator

        m = self.migration(context)
        lease = AbortCutoverOperator.wait_for_lease_end(self, context, m)
        if lease is not None and lease.state == SWITCHED:
            m.store.upsert(m.migration_id, phase="rolled_back")
            m.event("switched_back", "the rollback task ended after its switch: clients are on the source")
            raise AirflowFailException("the switch back had completed: clients are on the source; clear "
                                       "stop_reverse_replication and rollback_report to finish")  # fmt: skip
        problems = []
        resumed: list[str] = []
        try:
            set_identity_generation(m.source, m.state.get("identity_columns") or [], always=False)
        except Exception as exc:
            problems.append(f"could not set the source's identities BY DEFAULT ({exc})")
        try:
            resumed = resume_pipeline(self.connect(), m.source, m.names.reversed())
        except Exception as exc:
            problems.append(f"could not resume reverse replication ({exc})")
        route = {k: str(v) for k, v in self.routing(m).routes().items()}
        m.event("rollback_failed", f"rollback step failed; clients go to {route}; reverse replication resumed: "
                f"{', '.join(resumed) or 'none'}. Fix the failed task and trigger pg_rollback again (force=true if the "
                "target is gone)", problems=problems)  # fmt: skip
        if problems:
            raise AirflowFailException("; ".join(problems))
        return {"route": route, "resumed": resumed}
