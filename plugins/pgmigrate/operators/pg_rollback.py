"""The `pg_rollback` tasks: clients back to the source after a cutover, with every write made on the target
meanwhile replayed there by reverse replication first. `rollback` is the cutover's critical section in the
other direction (same lease, guard and fence); see `pgmigrate.cutover`."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from airflow.sdk.exceptions import AirflowFailException

from pgmigrate.core.params import RollbackParams
from pgmigrate.operators.cutover_base import CriticalSectionOperator, CutoverStepOperator, Migration, deploy_reverse

if TYPE_CHECKING:
    from pgmigrate.cutover.section_plan import SectionPlan


class RollbackStepOperator(CutoverStepOperator):
    params_class = RollbackParams


class RollbackCheckOperator(RollbackStepOperator):
    """Phase cut_over; the reverse pipeline running (deployed here from the cutover's slots if a cutover's
    `deploy_reverse_connectors` never completed, so every target write still comes back)."""

    def execute(self, context: Any) -> dict:
        from pgmigrate.kafka.connector_status import RUNNING, assess_connectors

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
                raise AirflowFailException(
                    f"reverse replication is not running ({detail}): run pg_migration_restart "
                    "for it first, or force=true if the target is gone (loses its writes)"
                )
        routes = {k: str(v) for k, v in self.routing(m).routes().items()}
        self.log.info("rollback of %s (%s): clients now go to %s", m.migration_id, m.run.reason, routes)
        m.event("rollback_started", f"rollback requested: {m.run.reason}", reason=m.run.reason, force=m.run.force)
        return {"started_at": time.time(), "phase": phase, "routes": routes}


class RollbackOperator(CriticalSectionOperator):
    """`rollback`: target -> source through the critical section (see `cutover.critical_section`)."""

    params_class = RollbackParams

    def section_plan(self, context: Any, m: Migration) -> SectionPlan:
        from pgmigrate.cutover.pre_validation import positions_of

        reverse = m.validations.get("reverse")
        return self.plan_for(
            context,
            m,
            purpose="rollback",
            forward=False,
            # The switch was verified identical: without a post-cutover validation, every reverse change counts.
            since=positions_of(reverse) if reverse and reverse.get("ok") else {},
            unfence_destination=(m.state.get("fences") or {}).get("source"),
            force=m.run.force,
        )

    def on_switched(self, m: Migration, plan, result) -> None:
        fences = dict(m.state.get("fences") or {})
        fences.pop("source", None)
        if not plan.force:
            fences["target"] = self.lease_store().get(result.lease_id).plan.get("fence_origin") or {}
        m.store.upsert(m.migration_id, phase="rolling_back", fences=fences)
        m.event(
            "switched_back",
            f"every PgBouncer routes {m.database} to the source {m.source.label} again; writes "
            f"were paused {result.pause_seconds:.3f}s",
            **result.as_dict(),
        )


class ResumeForwardOperator(RollbackStepOperator):
    """After the switch back: the reverse pipeline is removed (its connectors, slots, publications and topics;
    what it replayed is counted first) and the forward one resumes, so the target follows the source again and
    the migration is back to `streaming`: ready for another cutover once the cause is fixed.

    The Debezium channel replays, as idempotent upserts, the changes the reverse sink applied to the source
    (the target already holds them). The native channel cannot (PostgreSQL 15 subscriptions have no origin
    filter: a replayed INSERT into a table without a primary key would add a duplicate), so its subscription
    is created anew with an initial copy of those tables."""

    def execute(self, context: Any) -> dict:
        from pgmigrate.cutover.reverse import remove_reverse_replication, set_identity_generation
        from pgmigrate.stream.lag import read_sink_offsets
        from pgmigrate.stream.native_replication import (
            drop_native_replication,
            ensure_native_replication,
            split_by_channel,
        )

        m = self.migration(context)
        reverse = m.names.reversed()
        replayed = 0
        try:
            _, committed = read_sink_offsets(self.kafka_cluster(), reverse)
            heartbeat_topic_part = f".{m.names.control_schema}."
            replayed = sum(v for (topic, _), v in committed.items() if heartbeat_topic_part not in topic)
        except Exception as exc:
            self.log.warning("could not read the reverse sink's offsets: %s", exc)
        connect = self.connect()
        removed = remove_reverse_replication(connect, self.kafka_cluster(), m.source, m.target, m.names)
        # The forward sink inserts the source's ids into the target again.
        set_identity_generation(m.target, m.state.get("identity_columns") or [], always=False)
        _, native = split_by_channel(m.tables)
        if native:
            drop_native_replication(m.source, m.target, m.names)
            ensure_native_replication(
                m.source,
                m.target,
                m.names,
                [t.ref for t in native],
                initial_copy=True,
                subscriber_passfile=m.params.subscriber_passfile,
            )
        resumed = []
        for name in (m.names.sink_connector, m.names.source_connector):
            if connect.exists(name):
                connect.resume(name)
                resumed.append(name)
        validations = {k: v for k, v in m.validations.items() if k != "reverse"}
        m.store.upsert(m.migration_id, phase="streaming", pre_validation=validations)
        m.event(
            "rolled_back",
            f"rolled back: reverse replication removed ({replayed} changes made on the target "
            f"were replayed to the source); forward replication resumed ({', '.join(resumed) or 'none'}"
            + (f", {len(native)} native-channel tables copied again" if native else "")
            + "): the target follows "
            "the source again, ready for another cutover",
            replayed=replayed,
            removed=removed,
        )
        return {"resumed": resumed, "replayed_changes": replayed}


class RollbackReportOperator(RollbackStepOperator):
    """The rollback report, from the results of `check`, `rollback` and `resume_forward_replication` (their
    XComArgs, wired in the DAG file)."""

    template_fields = ("checked", "switched", "resumed")

    def __init__(self, *, checked: Any = None, switched: Any = None, resumed: Any = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.checked, self.switched, self.resumed = checked, switched, resumed

    def execute(self, context: Any) -> dict:
        from pgmigrate.report.rollback_report import RollbackFacts, write_rollback_report

        m = self.migration(context)
        started = (self.checked or {}).get("started_at") or time.time()
        switched = self.switched or {}
        stopped = self.resumed or {}
        facts = RollbackFacts(
            m.params.migration_id,
            reason=m.run.reason,
            forced=m.run.force,
            rollback_seconds=time.time() - started,
            pause_seconds=switched.get("pause_seconds"),
            replayed_changes=stopped.get("replayed_changes"),
        )
        path = write_rollback_report(m.store, facts)
        self.log.info("rollback report: %s", path)
        return {"report": str(path), "rollback_seconds": time.time() - started}


class AbortRollbackOperator(RollbackStepOperator):
    """`rollback` failed: its pause ended (settled here if nobody did), clients stay on the target; the reverse
    pipeline resumes and the source's identities go back to BY DEFAULT for its sink. Rerun-safe."""

    def execute(self, context: Any) -> dict:
        from pgmigrate.control.pause_lease import SWITCHED
        from pgmigrate.cutover.reverse import resume_pipeline, set_identity_generation

        m = self.migration(context)
        lease = self.wait_for_lease_end(context, m)
        if lease is not None and lease.state == SWITCHED:
            m.store.upsert(m.migration_id, phase="rolling_back")
            m.event("switched_back", "the rollback task ended after its switch: clients are on the source")
            raise AirflowFailException(
                "the switch back had completed: clients are on the source; clear "
                "resume_forward_replication and rollback_report to finish"
            )
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
        m.event(
            "rollback_failed",
            f"rollback step failed; clients go to {route}; reverse replication resumed: "
            f"{', '.join(resumed) or 'none'}. Fix the failed task and trigger pg_rollback again (force=true if the "
            "target is gone)",
            problems=problems,
        )
        if problems:
            raise AirflowFailException("; ".join(problems))
        return {"route": route, "resumed": resumed}
