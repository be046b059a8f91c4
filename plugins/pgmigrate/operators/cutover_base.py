"""What every pg_cutover and pg_rollback task shares: the migration as `pg_migration` recorded it, the run's
params, its clients (Kafka Connect, Kafka, every PgBouncer, the pause lease), and the task that runs a
critical section (`CriticalSectionOperator`). The steps live in `pgmigrate.cutover`; these stay thin."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from pgmigrate.control.state import MigrationStateStore
from pgmigrate.core.catalog import TableInfo
from pgmigrate.core.endpoints import PgEndpoint
from pgmigrate.core.naming import MigrationNames
from pgmigrate.core.params import CutoverParams, MigrationParams
from pgmigrate.hooks.migration_db import MigrationDatabaseHook
from pgmigrate.kafka.connector_configs import stored_generated_columns
from pgmigrate.operators.base import MigrationTaskOperator

if TYPE_CHECKING:
    from pgmigrate.cutover.change_topics import Positions
    from pgmigrate.cutover.section_plan import SectionPlan

log = logging.getLogger(__name__)


@dataclass
class Migration:
    """What a cutover acts on: the migration as `pg_migration` recorded it."""

    run: Any  # this DAG run's params: CutoverParams or RollbackParams
    params: MigrationParams
    state: dict[str, Any]
    store: MigrationStateStore

    @property
    def names(self) -> MigrationNames:
        return self.params.names

    @property
    def migration_id(self) -> str:
        return self.params.migration_id

    @cached_property
    def source(self) -> PgEndpoint:
        return MigrationDatabaseHook(self.params.source_conn_id).get_conn()

    @cached_property
    def target(self) -> PgEndpoint:
        return MigrationDatabaseHook(self.params.target_conn_id).get_conn()

    @property
    def database(self) -> str:
        return self.run.pgbouncer_database or self.source.dbname

    @cached_property
    def tables(self) -> list[TableInfo]:
        from pgmigrate.core.migration_tables import resolve_tables

        return resolve_tables(self.source, self.params)

    @property
    def validations(self) -> dict[str, Any]:
        return dict(self.state.get("pre_validation") or {})

    def event(self, phase: str, message: str, **details: Any) -> None:
        self.store.record_event(self.params.migration_id, phase, message, **details)
        log.info("state: %s: %s", phase, message)

    def record_validation(self, direction: str, phase: str, task: str, record: dict[str, Any]) -> None:
        """Keep a full row diff's `record` as the latest of its `direction` (forward, reverse), which the next
        critical section verifies from, and record the `phase` event saying how it went."""
        self.store.upsert(self.migration_id, pre_validation={**self.validations, direction: record})
        self.event(
            phase,
            f"{task}: {record['tables']} tables, {record['rows']} rows "
            + ("identical" if record["ok"] else "DIFFER")
            + f" in {record['seconds']:.1f}s",
            **record,
        )


def lease_sides(lease) -> Any:
    """The servers of a pause lease's plan, from the Airflow connections it names."""
    from pgmigrate.cutover.guard import Sides

    return Sides(
        MigrationDatabaseHook(lease.plan["origin"]["conn_id"]).get_conn(),
        MigrationDatabaseHook(lease.plan["destination"]["conn_id"]).get_conn(),
    )


class CutoverStepOperator(MigrationTaskOperator):
    """Base of the pg_cutover and pg_rollback tasks: the run's params, the migration's record, its clients."""

    ui_color = "#fdf0e6"
    params_class: Any = CutoverParams

    def migration(self, context: Any) -> Migration:
        run = self.run_params(context)
        state = self.recorded_state(run.migration_id)
        return Migration(run, MigrationParams.from_dict(state["params"]), state, self.store())

    def pipeline_state(self, names: MigrationNames) -> tuple[str, str]:
        """(running|failed|pending, description) of the pipeline's source and sink connectors."""
        from pgmigrate.kafka.connector_status import assess_connectors

        connect = self.connect()
        return assess_connectors(connect.statuses([names.source_connector, names.sink_connector]))

    def require_running_pipeline(self, names: MigrationNames, task: str) -> None:
        """A validation compares once the sink has caught up, which a paused or failed connector never does:
        refuse at once, naming it, rather than wait out the catch-up timeout."""
        from pgmigrate.kafka.connector_status import RUNNING

        state, detail = self.pipeline_state(names)
        if state != RUNNING:
            raise AirflowFailException(
                f"{task}: the {'reverse' if names.reverse else 'forward'} pipeline is not running ({detail}), so "
                "the target cannot catch up to be compared. Resume or restart its connectors (scripts/migration "
                "status names them; scripts/migration restart), then trigger this DAG again."
            )

    @staticmethod
    def skip_after_dry_run(m: Migration) -> None:
        if getattr(m.run, "dry_run", False):
            raise AirflowSkipException("dry_run: nothing was switched, so there is nothing to do after the switch")

    def control(self) -> PgEndpoint:
        return MigrationDatabaseHook(self.control_conn_id).get_conn()

    def routing(self, m: Migration):
        """Every PgBouncer of the run's `pgbouncer_conn_ids`, as one (`cutover.clients`)."""
        from pgmigrate.cutover.routing.fleet import ClientRouting, PgBouncerInstance
        from pgmigrate.hooks.pgbouncer import PgBouncerHook

        instances = []
        for conn_id in m.run.pgbouncer_conn_ids:
            try:
                instances.append(PgBouncerInstance(conn_id, PgBouncerHook(conn_id).get_switch()))
            except (LookupError, ValueError) as exc:
                raise AirflowFailException(
                    f"PgBouncer connection {conn_id!r} (pgbouncer_conn_ids lists every PgBouncer clients use): {exc}"
                ) from exc
        return ClientRouting(instances, m.database)

    def lease_store(self):
        from pgmigrate.control.pause_lease import LeaseStore

        return LeaseStore(self.control())

    def settle_leftover_lease(self, m: Migration) -> str | None:
        """An earlier attempt's pause that nobody ended (its process and the guard both gone): end it now if
        its deadline passed, putting clients back where it says. Returns what was done, or None."""
        from pgmigrate.control.pause_lease import ABANDONED, ARMED, PENDING
        from pgmigrate.cutover.guard import enforce

        store = self.lease_store()
        lease = store.active(m.migration_id)
        if lease is None:
            return None
        if lease.state == PENDING and lease.holder_stale():
            store.end(lease.lease_id, ABANDONED, by=self.task_id, note="holder gone before pausing", expect=PENDING)
            return f"lease {lease.lease_id} of run {lease.dag_run_id} abandoned (its task died before pausing)"
        if lease.state == ARMED and (lease.seconds_to_deadline() or 0) <= 0:
            sides = lease_sides(lease)
            ended = enforce(store, lease.lease_id, self.routing(m), sides, by=self.task_id)
            state = ended.state if ended else "?"
            return f"lease {lease.lease_id} of run {lease.dag_run_id} was past its deadline: ended {state}"
        return None

    def wait_for_lease_end(self, context: Any, m: Migration, grace_seconds: float = 15.0):
        """The run's latest lease once it has ended (settled by whoever ended it; enforced here if nobody did)."""
        from pgmigrate.cutover.guard import enforce

        store = self.lease_store()
        while True:
            lease = store.latest_for_run(m.migration_id, context["run_id"])
            if lease is None or not lease.active:
                if lease is not None:
                    sides = lease_sides(lease)
                    enforce(store, lease.lease_id, self.routing(m), sides, by=self.task_id)
                return lease
            if lease.state == "pending" and lease.holder_stale(5.0):
                store.end(lease.lease_id, "abandoned", by=self.task_id, note="cutover task gone", expect="pending")
                continue
            left = lease.seconds_to_deadline()
            if left is not None and left < -grace_seconds:
                sides = lease_sides(lease)
                ended = enforce(store, lease.lease_id, self.routing(m), sides, by=self.task_id)
                return ended or store.get(lease.lease_id)
            time.sleep(0.5)


class CriticalSectionOperator(CutoverStepOperator):
    """Runs a `CriticalSection` and records it; `section_plan` says which (cutover, dry run, rollback)."""

    def section_plan(self, context: Any, m: Migration) -> SectionPlan:
        raise NotImplementedError

    @staticmethod
    def plan_for(
        context: Any, m: Migration, *, purpose: str, forward: bool, since: Positions, **options: Any
    ) -> SectionPlan:
        """What a cutover's and a rollback's plans share. `forward`: source -> target over the forward pipeline,
        else target -> source over the reverse one; `options`: the other `SectionPlan` fields of that direction."""
        from pgmigrate.cutover.section_plan import SectionPlan, Side

        source, target = Side(m.params.source_conn_id, m.source), Side(m.params.target_conn_id, m.target)
        return SectionPlan(
            purpose=purpose,
            migration_id=m.migration_id,
            dag_run_id=context["run_id"],
            names=m.names if forward else m.names.reversed(),
            origin=source if forward else target,
            destination=target if forward else source,
            database=m.database,
            tables=m.tables,
            schemas=list(m.params.schemas),
            identity_columns=m.state.get("identity_columns") or [],
            max_pause_seconds=m.run.max_pause_seconds,
            since=since,
            allow_direct_sessions=m.run.allow_direct_sessions,
            **options,
        )

    def on_switched(self, m: Migration, plan, result) -> None:
        raise NotImplementedError

    def execute(self, context: Any) -> dict:
        from pgmigrate.control.pause_lease import LeaseBusy, LeaseLost
        from pgmigrate.cutover.critical_section import CriticalSection
        from pgmigrate.cutover.section_plan import CutoverAborted
        from pgmigrate.kafka.connect_client import ConnectClient

        m = self.migration(context)
        leftover = self.settle_leftover_lease(m)
        if leftover:
            self.log.warning("%s", leftover)
        plan = self.section_plan(context, m)
        connect = self.connect()
        # Inside the pause a Connect call must not retry for seconds: one short try, then the step fails.
        quick = ConnectClient(connect.base_url, timeout=2.0, retries=1, auth=connect.auth, other_urls=connect.urls)
        section = CriticalSection(
            plan, self.lease_store(), self.routing(m), self.routing(m), quick, self.kafka_cluster(), say=self.log.info
        )
        self.log.info(
            "%s of %s: clients on %s move to %s through %s; max pause %gs",
            plan.purpose,
            m.migration_id,
            plan.origin.endpoint.label,
            plan.destination.endpoint.label,
            ", ".join(m.run.pgbouncer_conn_ids),
            plan.max_pause_seconds,
        )
        try:
            result = section.run()
        except (CutoverAborted, LeaseLost, LeaseBusy) as exc:
            details = {**section.result.as_dict(), **getattr(exc, "details", {})}
            where = getattr(exc, "step", "the pause")
            m.event(f"{plan.purpose}_aborted", f"{plan.purpose} aborted at {where}: {exc}"[:2000], **details)
            raise AirflowFailException(
                f"{exc} Writes were paused {section.result.pause_seconds:.2f}s; clients are on the origin again."
            ) from exc
        except Exception as exc:
            m.event(
                f"{plan.purpose}_aborted",
                f"{plan.purpose} failed: {str(exc).splitlines()[0][:500]}",
                **section.result.as_dict(),
            )
            raise
        if plan.dry_run:
            m.event(
                "cutover_dry_run",
                f"dry run: writes paused {result.pause_seconds:.3f}s, drained and verified; resumed on the source",
                **result.as_dict(),
            )
            return result.as_dict()
        self.on_switched(m, plan, result)
        return result.as_dict()


def deploy_reverse(op: CutoverStepOperator, m: Migration) -> tuple[str, ...]:
    """Reverse connectors and native subscription from the pause's slots; rerun-safe (rollback calls it too
    when a cutover's `deploy_reverse_connectors` never completed)."""
    from pgmigrate.cutover.reverse import deploy_reverse_connectors, start_reverse_native
    from pgmigrate.hooks.kafka_connect import KafkaConnectHook
    from pgmigrate.stream.native_replication import split_by_channel

    connect = op.connect()
    keyed, native = split_by_channel(m.tables)
    for name in (m.names.source_connector, m.names.sink_connector):  # stopped in the pause; make sure
        if connect.exists(name):
            connect.stop(name)
    start_reverse_native(m.source, m.target, m.names, [t.ref for t in native], m.params.subscriber_passfile)
    deployed = deploy_reverse_connectors(
        connect,
        KafkaConnectHook(op.kafka_connect_conn_id).connector_secrets(),
        m.source,
        m.target,
        m.names,
        [t.ref for t in keyed],
        list(m.params.schemas),
        stored_generated_columns(keyed),
        topics=op.topic_settings(),
    )
    for name in deployed:
        connect.wait_for_state(name, "RUNNING", timeout=120)
    return deployed


def undo_cutover_pipeline(op: CutoverStepOperator, m: Migration) -> tuple[list[str], list[str]]:
    """Best effort, each step independent: (problems, connectors resumed)."""
    from pgmigrate.cutover.reverse import remove_reverse_replication, resume_pipeline, set_identity_generation

    identity = m.state.get("identity_columns") or []
    problems: list[str] = []
    resumed: list[str] = []
    steps = [
        (
            "remove the reverse pipeline",
            lambda: remove_reverse_replication(op.connect(), op.kafka_cluster(), m.source, m.target, m.names),
        ),
        ("restore identity columns on the source", lambda: set_identity_generation(m.source, identity, always=True)),
        # The forward sink inserts explicit ids into the target.
        ("identity BY DEFAULT on the target", lambda: set_identity_generation(m.target, identity, always=False)),
        ("resume the forward pipeline", lambda: resumed.extend(resume_pipeline(op.connect(), m.target, m.names))),
    ]
    for what, step in steps:
        try:
            step()
        except Exception as exc:  # best effort: the next step still runs
            log.error("abort: could not %s: %s", what, exc)
            problems.append(f"could not {what} ({str(exc).splitlines()[0][:200]})")
    return problems, resumed
