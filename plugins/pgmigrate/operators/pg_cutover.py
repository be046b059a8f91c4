"""The `pg_cutover` tasks: thin wrappers over `pgmigrate.cutover` (its `__init__` says what each part does).

Only `cutover` pauses client writes, and it holds the whole pause in its one process
(`CriticalSection`); `pause_guard` (a deferred sensor, `pgmigrate.sensors.pause_guard`) beside it ends that
pause at the deadline if the process cannot. What can happen before the pause (validation, backup, reverse
publications) or after it (reverse connectors, verification, foreign keys, full validation) is a task of
its own. `abort_cutover` undoes the pipeline changes of a cutover that did not switch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from pgmigrate.core.endpoints import PgEndpoint
from pgmigrate.operators.cutover_base import (
    CriticalSectionOperator,
    CutoverStepOperator,
    Migration,
    deploy_reverse,
    undo_cutover_pipeline,
)
from pgmigrate.operators.cutover_checklist import dead_letter_check, direct_session_check, lease_check, pgbouncer_check

if TYPE_CHECKING:
    from pgmigrate.cutover.section_plan import SectionPlan


class PreValidateOperator(CutoverStepOperator):
    """The full row diff while streaming, with the change-topic positions it covers (`cutover.pre_validation`);
    reuses a passing one younger than `reuse_validation_minutes`."""

    def execute(self, context: Any) -> dict:
        from pgmigrate.cutover.pre_validation import SinkBehind, age_minutes, reusable, validate_with_positions

        m = self.migration(context)
        if m.state["phase"] != "streaming":
            raise AirflowFailException(
                f"migration {m.migration_id} is in phase {m.state['phase']!r}, not 'streaming': "
                "nothing to cut over (run pg_migration first, or see scripts/migration status)"
            )
        earlier = m.validations.get("forward")
        if reusable(earlier, m.run.reuse_validation_minutes):
            self.log.info(
                "reusing the validation of %.1f min ago (reuse_validation_minutes=%g): %d tables identical",
                age_minutes(earlier),
                m.run.reuse_validation_minutes,
                earlier["tables"],
            )
            return {"reused": True, **{k: earlier[k] for k in ("at", "tables", "rows")}}
        self.require_running_pipeline(m.names, "pre_validate")
        try:
            record = validate_with_positions(m.source, m.target, m.names, m.tables, self.kafka_cluster())
        except SinkBehind as exc:
            raise AirflowFailException(str(exc)) from exc
        m.record_validation("forward", "pre_validated", "pre_validate", record)
        if not record["ok"]:
            raise AirflowFailException(
                "pre_validate: rows differ while streaming (after re-checks, so not in flight):\n"
                + "\n".join(record["differences"][:20])
                + "\nRepair them (scripts/migration resync --table …), then trigger pg_cutover again."
            )
        return {"reused": False, **{k: record[k] for k in ("at", "tables", "rows", "seconds")}}


class CutoverChecklistOperator(CutoverStepOperator):
    """The runbook's go/no-go list before the pause (`cutover.checklist`); the live readings are
    `operators.cutover_checklist`."""

    def execute(self, context: Any) -> dict:
        from pgmigrate.cutover.checklist import evaluate_checklist, format_checklist
        from pgmigrate.cutover.pre_validation import checklist_detail
        from pgmigrate.stream.lag import read_lag

        m = self.migration(context)
        leftover = self.settle_leftover_lease(m)
        if leftover:
            self.log.warning("%s", leftover)
        reading = read_lag(m.source, m.target, m.names, self.kafka_cluster())
        connectors_state, connectors_detail = self.pipeline_state(m.names)
        items = evaluate_checklist(
            m.state,
            reading.end_to_end_seconds,
            reading.native_seconds,
            reading.native_expected,
            m.params.max_lag_seconds,
            connectors_state,
            connectors_detail,
            pgbouncer=pgbouncer_check(self, m),
            pre_validation=checklist_detail(m.validations.get("forward"), m.run.max_validation_age_minutes),
            dead_letters=dead_letter_check(self, m),
            direct_sessions=direct_session_check(self, m),
            pause_lease=lease_check(self, m),
        )
        self.log.info("pre-cutover checklist for %s:\n%s", m.migration_id, format_checklist(items))
        failed = [i for i in items if not i.ok]
        if failed:
            raise AirflowFailException(
                "cutover refused: "
                + "; ".join(f"{i.name}: {i.detail}" for i in failed)
                + ". Fix these (scripts/migration status shows the details), then trigger pg_cutover again."
            )
        return {"checklist": [i.__dict__ for i in items]}


class PrepareReverseOperator(CutoverStepOperator):
    """Before the pause: what reverse replication needs that captures nothing yet (its own tables,
    publications), so the pause only creates the slots."""

    def execute(self, context: Any) -> dict:
        from pgmigrate.cutover.reverse import prepare_reverse
        from pgmigrate.stream.native_replication import split_by_channel

        m = self.migration(context)
        keyed, native = split_by_channel(m.tables)
        prepare_reverse(m.source, m.target, m.names, [t.ref for t in keyed], [t.ref for t in native])
        return {"publication": m.names.reversed().publication}


class RefreshMaterializedViewsOperator(CutoverStepOperator):
    """Before the pause: the target's materialized views refreshed from the data streamed so far, so the clients
    find contents as fresh as the source's tables (a REFRESH costs its query: never inside the pause)."""

    def execute(self, context: Any) -> dict:
        from pgmigrate.schema.materialized_views import refresh_materialized_views

        m = self.migration(context)
        refreshed = refresh_materialized_views(m.source, m.target, m.params.schemas)
        self.log.info("materialized views refreshed on the target: %s", ", ".join(refreshed) or "none in the schemas")
        return {"refreshed": refreshed}


class BackupSourceOperator(CutoverStepOperator):
    """pg_dump of the source (directory format, parallel) plus the connector configs, before anything changes."""

    def execute(self, context: Any) -> dict:
        from pgmigrate.cutover.backup import backup_source

        m = self.migration(context)
        if not m.run.backup:
            raise AirflowSkipException("backup=false: no backup of the source taken")
        connect = self.connect()
        configs = {
            n: connect.get_config(n) for n in (m.names.source_connector, m.names.sink_connector) if connect.exists(n)
        }
        result = backup_source(m.source, m.params.migration_id, configs)
        m.event("backup_taken", f"source backed up to {result['path']} in {result['seconds']:.0f}s", **result)
        return result


class CutoverOperator(CriticalSectionOperator):
    """`cutover`: source -> target, the reverse slots created in the pause (see `cutover.critical_section`)."""

    def section_plan(self, context: Any, m: Migration) -> SectionPlan:
        from pgmigrate.cutover.pre_validation import positions_of

        return self.plan_for(
            context,
            m,
            purpose="dry_run" if m.run.dry_run else "cutover",
            forward=True,
            since=positions_of(m.validations.get("forward")),
            create_reverse_slots=True,
            precopy_passes=m.run.precopy_passes,
            # After a rollback the target kept a fence: lifted when clients come back to it.
            unfence_destination=(m.state.get("fences") or {}).get("target"),
        )

    def on_switched(self, m: Migration, plan, result) -> None:
        if result.late_writes:
            from pgmigrate.notifications.migration_alerts import raise_task_alert

            raise_task_alert(
                "P0",
                "writes_after_switch",
                m.migration_id,
                "writes reached the source after the "
                f"cutover's drain point and are not on the target: {result.late_writes}",
                self.control_conn_id,
            )
        fences = {k: v for k, v in (m.state.get("fences") or {}).items() if k != "target"}
        fences["source"] = {
            **(result.fence or {}),
            **(self.lease_store().get(result.lease_id).plan.get("fence_origin") or {}),
        }
        m.store.upsert(m.migration_id, phase="cut_over", fences=fences)
        m.event(
            "cut_over",
            f"every PgBouncer routes {m.database} to the target {m.target.label}; writes were paused "
            f"{result.pause_seconds:.3f}s; the reverse slots keep every target change until the reverse connectors "
            "run (deploy_reverse_connectors)",
            **result.as_dict(),
        )


class DeployReverseConnectorsOperator(CutoverStepOperator):
    """After the switch: the reverse connectors (and native subscription) start from the slots created in the
    pause, so nothing written on the target since is missed; wait until both run."""

    def execute(self, context: Any) -> dict:
        m = self.migration(context)
        self.skip_after_dry_run(m)
        try:
            deployed = deploy_reverse(self, m)
        except Exception as exc:
            # Clients are on the target: say so, and that nothing is lost (the slots keep every target change).
            m.event(
                "reverse_replication_down",
                "clients write to the target but reverse replication is not running "
                f"({str(exc).splitlines()[0][:300]}): the reverse slots keep every target change; this task's "
                "retry, or pg_rollback (which deploys the reverse connectors first), brings them to the source",
            )
            raise
        m.event("reverse_replication", f"reverse replication running: {', '.join(deployed)}")
        return {"reverse": list(deployed)}


class VerifyCutoverOperator(CutoverStepOperator):
    """After the switch: a write through every PgBouncer lands on the target, none holds a server connection
    to the source, and the cutover saw no change reach the source after its drain point."""

    def execute(self, context: Any) -> dict:
        from pgmigrate.cutover.verify import verify_route
        from pgmigrate.hooks.pgbouncer import PgBouncerHook

        m = self.migration(context)
        self.skip_after_dry_run(m)
        results = {}
        problems = []
        for i in self.routing(m).instances:
            admin = PgBouncerHook(i.conn_id).get_conn()
            clients = [
                PgEndpoint(admin.host, admin.port, m.database, user, password)
                for user, password in ((m.source.user, m.source.password), (admin.user, admin.password))
            ]
            results[i.conn_id] = verify_route(i.switch, m.database, m.source, m.target, clients)
            problems += [f"{i.conn_id}: {p}" for p in results[i.conn_id]["problems"]]
        late = next(
            (
                e["details"].get("late_writes")
                for e in reversed(m.store.events(m.migration_id))
                if e["phase"] == "cut_over" and e["details"]
            ),
            None,
        )
        if late:
            problems.append(f"changes reached the source after the drain point and are NOT on the target: {late}")
        self.log.info("verify: %s", results)
        if problems:
            raise AirflowFailException(
                f"cutover verification failed: {'; '.join(problems)}. Writes go through "
                "PgBouncer; if they must go back to the source, run pg_rollback."
            )
        m.event(
            "cutover_verified",
            "a write through every PgBouncer landed on the target; no server connection to the source",
            pgbouncers=list(results),
        )
        return {"pgbouncers": results}


class ValidateForeignKeysOperator(CutoverStepOperator):
    """After the switch: foreign keys left NOT VALID while rows streamed in (a child before its parent) are
    validated now that the target holds everything; the application keeps writing meanwhile."""

    def execute(self, context: Any) -> dict:
        from pgmigrate.schema.post_data import validate_pending_foreign_keys

        m = self.migration(context)
        self.skip_after_dry_run(m)
        result = validate_pending_foreign_keys(m.source, m.target, m.params.schemas)
        self.log.info("foreign keys validated on the target: %s", ", ".join(result["validated"]) or "none pending")
        if result["failed"]:
            raise AirflowFailException(
                "foreign keys that are valid on the source do not hold on the target: "
                + "; ".join(f"{f['constraint']}: {f['error']}" for f in result["failed"])
                + ". The rows are on the target as they were on the source at the switch; compare with pg_validate "
                "(scripts/migration compare) before deciding on pg_rollback."
            )
        if result["validated"]:
            m.event("foreign_keys_validated", f"validated on the target: {', '.join(result['validated'])}")
        return result


class PostValidateOperator(CutoverStepOperator):
    """After the switch, while reverse replication keeps rollback possible: the full row diff again, target
    (where clients write now) against source; its positions in the reverse topics let a rollback verify only
    what changed since. A difference is a P0 alert."""

    def execute(self, context: Any) -> dict:
        from pgmigrate.cutover.pre_validation import validate_with_positions

        m = self.migration(context)
        self.skip_after_dry_run(m)
        self.require_running_pipeline(m.names.reversed(), "post_validate")
        record = validate_with_positions(m.target, m.source, m.names.reversed(), m.tables, self.kafka_cluster())
        m.record_validation("reverse", "post_validated", "post_validate", record)
        if not record["ok"]:
            from pgmigrate.notifications.migration_alerts import raise_task_alert

            message = "after the cutover, rows differ between target and source: " + "; ".join(
                record["differences"][:5]
            )
            raise_task_alert("P0", "post_cutover_mismatch", m.migration_id, message, self.control_conn_id)
            raise AirflowFailException(
                message + ". Reverse replication keeps rollback possible (pg_rollback); compare "
                "with scripts/migration compare before deciding."
            )
        return {k: record[k] for k in ("at", "tables", "rows", "seconds")}


class AbortCutoverOperator(CutoverStepOperator):
    """When `cutover` failed: make sure its pause ended (settling a lease nobody ended, once past its deadline),
    then undo what the section changed in the pipeline: forward connectors and native subscription resumed,
    reverse slots and publications removed, identities back. Rerun-safe. If the switch did happen (the task
    died after it), nothing is undone: the state says cut_over and rollback stays possible."""

    def execute(self, context: Any) -> dict:
        from pgmigrate.control.pause_lease import SWITCHED

        m = self.migration(context)
        if self.lease_store().latest_for_run(m.migration_id, context["run_id"]) is None:
            raise AirflowSkipException("the cutover never began its pause in this run: nothing to undo")
        lease = self.wait_for_lease_end(context, m)
        if lease is not None and lease.state == SWITCHED:
            m.store.upsert(m.migration_id, phase="cut_over")
            m.event(
                "cut_over",
                "the cutover task ended after its switch: clients are on the target; the reverse slot "
                "keeps every change (clear deploy_reverse_connectors, or pg_rollback deploys it)",
            )
            raise AirflowFailException(
                "the switch had completed: clients are on the target. Clear "
                "deploy_reverse_connectors to start reverse replication "
                "(pg_rollback also does)."
            )
        problems, resumed = undo_cutover_pipeline(self, m)
        m.store.upsert(m.migration_id, phase="streaming", last_error="; ".join(problems) or None)
        ended = f"pause lease {lease.lease_id} ended {lease.state} by {lease.ended_by}" if lease else "no pause"
        m.event(
            "cutover_undone",
            f"cutover undone, clients on the source ({ended}); forward connectors resumed: "
            f"{', '.join(resumed) or 'none'}" + (f"; still to do: {'; '.join(problems)}" if problems else ""),
            problems=problems,
            lease=lease.lease_id if lease else None,
            lease_state=lease.state if lease else None,
        )
        if problems:
            raise AirflowFailException(
                f"clients are on the source, but: {'; '.join(problems)}. Once Kafka Connect answers, run "
                f"pg_migration_restart (scripts/migration restart --migration-id {m.migration_id})."
            )
        return {"resumed": resumed}
