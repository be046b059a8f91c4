"""The `pg_cutover` tasks: thin wrappers; the steps live in plain modules (drain, sequences,
reverse_replication, route_switch, checksums).

Between `pause_writes` and `switch_route` client writes wait in PgBouncer, so those tasks have no
retries: any failure goes to `abort_cutover`, which puts everything back (clients on the source,
forward pipeline running) and resumes. A watchdog armed at the pause resumes the database at the
deadline even if every Airflow process died.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from pgmigrate.catalog import TableInfo
from pgmigrate.endpoints import PgEndpoint
from pgmigrate.hooks.migration_db import MigrationDatabaseHook
from pgmigrate.naming import MigrationNames
from pgmigrate.params import CutoverParams, InvalidParams, MigrationParams
from pgmigrate.state import MigrationStateStore

CONTROL_CONN_ID = "migration_control"
log = logging.getLogger(__name__)


@dataclass
class Migration:
    """What a cutover acts on: the migration as `pg_migration` recorded it."""

    run: Any  # this DAG run's params: CutoverParams or RollbackParams
    params: MigrationParams
    state: dict[str, Any]
    store: MigrationStateStore
    # Inside the write pause: no statement waits for a lock past the pause's deadline (a reporting
    # transaction holding a table must fail the step, not hold clients until the watchdog fires).
    lock_timeout_ms: int | None = None

    @property
    def names(self) -> MigrationNames:
        return self.params.names

    @cached_property
    def source(self) -> PgEndpoint:
        return self._bounded(MigrationDatabaseHook(self.params.source_conn_id).get_conn())

    @cached_property
    def target(self) -> PgEndpoint:
        return self._bounded(MigrationDatabaseHook(self.params.target_conn_id).get_conn())

    def _bounded(self, endpoint: PgEndpoint) -> PgEndpoint:
        return endpoint.with_settings(lock_timeout=f"{self.lock_timeout_ms}ms") if self.lock_timeout_ms else endpoint

    @property
    def database(self) -> str:
        return self.run.pgbouncer_database or self.source.dbname

    @cached_property
    def tables(self) -> list[TableInfo]:
        from pgmigrate.migration_tables import resolve_tables

        return resolve_tables(self.source, self.params)

    def event(self, phase: str, message: str, **details: Any) -> None:
        self.store.record_event(self.params.migration_id, phase, message, **details)
        log.info("state: %s: %s", phase, message)


class CutoverOperator(BaseOperator):
    ui_color = "#fdf0e6"

    def __init__(
        self,
        *,
        control_conn_id: str = CONTROL_CONN_ID,
        kafka_connect_conn_id: str = "kafka_connect",
        kafka_conn_id: str = "kafka_default",
        pgbouncer_conn_id: str = "pgbouncer_admin",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.control_conn_id = control_conn_id
        self.kafka_connect_conn_id = kafka_connect_conn_id
        self.kafka_conn_id = kafka_conn_id
        self.pgbouncer_conn_id = pgbouncer_conn_id

    params_class: Any = CutoverParams
    # True for the steps between the pause and the switch: they must finish before the pause deadline.
    inside_pause = False

    def migration(self, context: Any) -> Migration:
        try:
            run = self.params_class.from_dict(dict(context["params"]))
        except InvalidParams as exc:
            raise AirflowFailException(str(exc)) from exc
        store = MigrationStateStore(MigrationDatabaseHook(self.control_conn_id).get_conn())
        store.ensure_schema()
        state = store.get(run.migration_id)
        if state is None:
            raise AirflowFailException(
                f"migration {run.migration_id!r} has no state record: run pg_migration for it first "
                "(scripts/migration list shows the known migrations)."
            )
        migration = Migration(run, MigrationParams.from_dict(state["params"]), state, store)
        if self.inside_pause:
            remaining = self.pause_started(context) + run.max_pause_seconds - time.time()
            if remaining <= 0:
                raise AirflowFailException(
                    f"the write pause reached max_pause_seconds={run.max_pause_seconds:g} before {self.task_id} "
                    "started: the watchdog resumed clients on the old side, so this attempt stops here. Rerun the DAG "
                    "(consider a larger max_pause_seconds if the steps are slow under this load)."
                )
            # Leave ~1.5 s of the pause for abort_cutover to start and resume clients itself.
            migration.lock_timeout_ms = max(200, int((remaining - 1.5) * 1000))
        return migration

    def connect(self):
        from pgmigrate.hooks.kafka_connect import KafkaConnectHook

        return KafkaConnectHook(self.kafka_connect_conn_id).get_conn()

    def bootstrap(self) -> str:
        from pgmigrate.hooks.kafka_cluster import KafkaClusterHook

        return KafkaClusterHook(self.kafka_conn_id).get_conn()

    def switch(self):
        from pgmigrate.hooks.pgbouncer import PgBouncerHook

        return PgBouncerHook(self.pgbouncer_conn_id).get_switch()

    pause_task_id = "pause_writes"

    def pause_started(self, context: Any) -> float:
        paused = context["ti"].xcom_pull(task_ids=self.pause_task_id) or {}
        return float(paused.get("paused_at") or time.time())

    def watchdog_handle(self, context: Any):
        """The watchdog `pause_writes` armed (None if the pause never started)."""
        from pgmigrate.pause_watchdog import WatchdogHandle

        paused = context["ti"].xcom_pull(task_ids=self.pause_task_id) or {}
        return WatchdogHandle.from_dict(paused["watchdog"]) if paused.get("watchdog") else None

    def switch_paused_route(self, context: Any, m: Migration, to: PgEndpoint, refusal: str) -> float:
        """Disarm the watchdog, point the paused database at `to`, resume; returns the pause length. If the
        watchdog already fired, clients wrote to the old side since the pause: refuse (`refusal` says why)."""
        from pgmigrate.pause_watchdog import disarm

        handle = self.watchdog_handle(context)
        if handle is None or not disarm(handle):
            raise AirflowFailException(refusal)
        switch = self.switch()
        switch.lock_timeout = max(0.5, self.pause_started(context) + m.run.max_pause_seconds - time.time() - 0.5)
        try:
            switch.point_to(m.database, to.host, to.port, to.dbname)
        finally:
            switch.resume(m.database)
        return time.time() - self.pause_started(context)

    def log_pause(self, context: Any, what: str) -> float:
        seconds = time.time() - self.pause_started(context)
        self.log.info("%s; writes paused for %.1fs so far", what, seconds)
        return seconds


def _address(endpoint: PgEndpoint) -> str:
    return f"{endpoint.host}:{endpoint.port}/{endpoint.dbname}"


class CutoverChecklistOperator(CutoverOperator):
    def execute(self, context: Any) -> dict:
        from pgmigrate.connector_status import assess_connectors
        from pgmigrate.cutover_checklist import evaluate_checklist, format_checklist
        from pgmigrate.lag import read_lag

        m = self.migration(context)
        reading = read_lag(m.source, m.target, m.names, self.bootstrap())
        connect = self.connect()
        statuses = {n: connect.get_status(n) if connect.exists(n) else None
                    for n in (m.names.source_connector, m.names.sink_connector)}  # fmt: skip
        connectors_state, connectors_detail = assess_connectors(statuses)
        dead_letters = self.dead_letter_check(m)
        try:
            route = self.switch().current_route(m.database)
            route_text = f"{route.host}:{route.port}/{route.dbname}"
        except Exception as exc:
            self.log.warning("PgBouncer: %s", exc)
            route_text = None
        items = evaluate_checklist(
            m.state,
            reading.end_to_end_seconds,
            reading.native_seconds,
            reading.native_expected,
            m.params.max_lag_seconds,
            connectors_state,
            connectors_detail,
            route_text,
            _address(m.source),
            dead_letters,
        )
        self.log.info("pre-cutover checklist for %s:\n%s", m.params.migration_id, format_checklist(items))
        failed = [i for i in items if not i.ok]
        if failed:
            raise AirflowFailException(
                "cutover refused: "
                + "; ".join(f"{i.name}: {i.detail}" for i in failed)
                + ". Fix these (scripts/migration status shows the details), then trigger pg_cutover again."
            )
        return {"checklist": [i.__dict__ for i in items]}

    def dead_letter_check(self, m: Migration) -> tuple[bool, str]:
        """Unacknowledged records in the forward sink's DLQ refuse the cutover (an unreadable DLQ too)."""
        from pgmigrate.dead_letters import checklist_detail, read_backlog

        try:
            backlog = read_backlog(self.bootstrap(), m.store.endpoint, m.names)
        except Exception as exc:
            self.log.warning("dead letter topic %s: %s", m.names.dead_letter_topic, exc)
            backlog = None
        return checklist_detail(m.params.migration_id, backlog)


class PrepareReverseOperator(CutoverOperator):
    """Before the pause: what reverse replication needs that captures nothing yet (its own tables,
    publications), so the pause only creates the slots."""

    def execute(self, context: Any) -> dict:
        from pgmigrate.native_replication import split_by_channel
        from pgmigrate.reverse_replication import prepare_reverse

        m = self.migration(context)
        keyed, native = split_by_channel(m.tables)
        prepare_reverse(m.source, m.target, m.names, [t.ref for t in keyed], [t.ref for t in native])
        return {"publication": m.names.reversed().publication}


class BackupSourceOperator(CutoverOperator):
    """pg_dump of the source (directory format, parallel) plus the connector configs, before anything changes."""

    def execute(self, context: Any) -> dict:
        from pgmigrate.cutover_backup import backup_source

        m = self.migration(context)
        if not m.run.backup:
            raise AirflowSkipException("backup=false: no backup of the source taken")
        connect = self.connect()
        configs = {n: connect.get_config(n) for n in (m.names.source_connector, m.names.sink_connector)
                   if connect.exists(n)}  # fmt: skip
        result = backup_source(m.source, m.params.migration_id, configs)
        m.event("backup_taken", f"source backed up to {result['path']} in {result['seconds']:.0f}s", **result)
        return result


class PauseWritesOperator(CutoverOperator):
    paused_phase = "cutover_paused"

    def execute(self, context: Any) -> dict:
        from pgmigrate.hooks.pgbouncer import PgBouncerHook
        from pgmigrate.pause_watchdog import arm

        m = self.migration(context)
        switch = self.switch()
        deadline = time.time() + m.run.max_pause_seconds
        # The watchdog first: whatever happens from here on, the pause ends by the deadline.
        hook = PgBouncerHook(self.pgbouncer_conn_id)
        watchdog = arm(hook.get_conn(), m.database, m.run.max_pause_seconds, hook.watchdog_dir()).as_dict()
        # An explicit route keeps the database listed (and its pause visible) while it has no clients.
        switch.pin_route(m.database)
        paused_at = time.time()
        switch.pause(m.database, timeout_seconds=max(1.0, m.run.max_pause_seconds / 2))
        m.store.upsert(m.params.migration_id, phase=self.paused_phase)
        m.event(self.paused_phase, f"PgBouncer paused {m.database}: client writes wait (deadline "
                f"{m.run.max_pause_seconds:g}s)", paused_at=paused_at)  # fmt: skip
        return {"paused_at": paused_at, "deadline": deadline, "watchdog": watchdog}


class DrainOperator(CutoverOperator):
    inside_pause = True

    def execute(self, context: Any) -> dict:
        from pgmigrate.drain import wait_drained

        m = self.migration(context)
        budget = self.pause_started(context) + m.run.max_pause_seconds - time.time()
        result = wait_drained(m.source, m.target, m.names, self.bootstrap(), timeout=max(0.5, budget - 1))
        self.log_pause(context, f"drained: every change up to {result.point_lsn} is on the target")
        return result.as_dict()


class FinalValidateOperator(CutoverOperator):
    inside_pause = True

    def execute(self, context: Any) -> dict:
        from pgmigrate.checksums import compare_at_rest

        m = self.migration(context)
        results = compare_at_rest(m.source, m.target, [t.ref for t in m.tables])
        differing = [r for r in results if not r["ok"]]
        for r in results:
            self.log.info("%-40s source %10d target %10d %s", r["table"], r["source_rows"], r["target_rows"],
                          "ok" if r["ok"] else "DIFFERS")  # fmt: skip
        self.log_pause(context, f"final validation: {len(results) - len(differing)}/{len(results)} tables identical")
        if differing:
            raise AirflowFailException(
                f"final validation: {len(differing)} tables differ with writes paused: "
                + ", ".join(r["table"] for r in differing)
                + ". Cutover aborted; clients stay on the source."
            )
        if m.run.dry_run:
            self._end_dry_run(context, m)
        return {"tables": results}

    def _end_dry_run(self, context: Any, m: Migration) -> None:
        from pgmigrate.pause_watchdog import disarm

        self.switch().resume(m.database)
        handle = self.watchdog_handle(context)
        if handle is not None:
            disarm(handle)
        seconds = time.time() - self.pause_started(context)
        m.store.upsert(m.params.migration_id, phase="streaming")
        m.event("cutover_dry_run", f"dry run: writes paused {seconds:.1f}s, drained and validated; resumed on the "
                "source", pause_seconds=seconds)  # fmt: skip
        raise AirflowSkipException(f"dry_run: stopped after final_validate; pause was {seconds:.1f}s")


class SyncSequencesOperator(CutoverOperator):
    inside_pause = True

    def execute(self, context: Any) -> dict:
        from pgmigrate.reverse_replication import set_identity_generation
        from pgmigrate.sequences import sync_sequences

        m = self.migration(context)
        synced = sync_sequences(m.source, m.target, m.params.schemas)
        always = set_identity_generation(m.target, m.state.get("identity_columns") or [], always=True)
        self.log_pause(context, f"sequences: {len(synced)} set past the source; {always} identity columns ALWAYS again")
        return {"sequences": synced, "identity_always": always}


class StartReverseReplicationOperator(CutoverOperator):
    """Inside the pause: forward connectors stopped, reverse slots created (from here on every target
    write is kept for rollback). The reverse connectors are deployed after the switch, outside the pause:
    Connect validates a config by connecting to the database, which costs seconds clients would wait."""

    inside_pause = True


    def execute(self, context: Any) -> dict:
        from pgmigrate.native_replication import split_by_channel
        from pgmigrate.reverse_replication import create_reverse_slots, set_identity_generation, stop_pipeline

        m = self.migration(context)
        stopped = stop_pipeline(self.connect(), m.target, m.names)
        keyed, native = split_by_channel(m.tables)
        create_reverse_slots(m.source, m.target, m.names, [t.ref for t in keyed], [t.ref for t in native])
        set_identity_generation(m.source, m.state.get("identity_columns") or [], always=False)
        self.log_pause(context, f"forward connectors stopped ({', '.join(stopped)}); reverse slot "
                       f"{m.names.reversed().slot} holds every target change from now on")  # fmt: skip
        return {"stopped": stopped, "reverse_slot": m.names.reversed().slot}


class DeployReverseConnectorsOperator(CutoverOperator):
    """After the switch: the reverse connectors start from the slot created in the pause, so nothing
    written on the target since is missed; wait until both run."""

    def execute(self, context: Any) -> dict:
        from pgmigrate.hooks.kafka_connect import KafkaConnectHook
        from pgmigrate.native_replication import split_by_channel
        from pgmigrate.reverse_replication import deploy_reverse_connectors

        m = self.migration(context)
        connect = self.connect()
        keyed, _ = split_by_channel(m.tables)
        deployed = deploy_reverse_connectors(
            connect,
            KafkaConnectHook(self.kafka_connect_conn_id).secrets_dir(),
            m.source,
            m.target,
            m.names,
            [t.ref for t in keyed],
            list(m.params.schemas),
        )
        for name in deployed:
            connect.wait_for_state(name, "RUNNING", timeout=120)
        m.event("reverse_replication", f"reverse replication running: {', '.join(deployed)}")
        return {"reverse": list(deployed)}


class SwitchRouteOperator(CutoverOperator):
    inside_pause = True

    def execute(self, context: Any) -> dict:
        m = self.migration(context)
        # If the watchdog already resumed, clients wrote to the source after the final validation, and
        # switching now would leave those writes behind.
        seconds = self.switch_paused_route(
            context,
            m,
            m.target,
            f"the pause watchdog resumed {m.database} at max_pause_seconds={m.run.max_pause_seconds:g} before "
            "the switch: clients kept writing to the source. Cutover aborted; rerun pg_cutover (consider a "
            "larger max_pause_seconds).",
        )
        m.store.upsert(m.params.migration_id, phase="cut_over")
        m.event("cut_over", f"PgBouncer routes {m.database} to the target {_address(m.target)}; writes were paused "
                f"{seconds:.2f}s", pause_seconds=seconds)  # fmt: skip
        return {"pause_seconds": seconds}


class VerifyCutoverOperator(CutoverOperator):
    def execute(self, context: Any) -> dict:
        from pgmigrate.cutover_verify import verify_route

        m = self.migration(context)
        result = verify_route(self.switch(), m.database, m.source, m.target, self.pgbouncer_client_endpoint(m))
        self.log.info("verify: %s", result)
        if not result["ok"]:
            raise AirflowFailException(f"cutover verification failed: {result['problems']}. Writes go through "
                                       "PgBouncer; if they must go back to the source, run pg_rollback.")  # fmt: skip
        m.event("cutover_verified", "a write through PgBouncer landed on the target; no server connections "
                "to the source", **result)  # fmt: skip
        return result

    def pgbouncer_client_endpoint(self, m: Migration) -> PgEndpoint:
        """How applications connect: PgBouncer's address with the source connection's credentials."""
        from pgmigrate.hooks.pgbouncer import PgBouncerHook

        admin = PgBouncerHook(self.pgbouncer_conn_id).get_conn()
        return PgEndpoint(admin.host, admin.port, m.database, m.source.user, m.source.password)


class ValidateForeignKeysOperator(CutoverOperator):
    """After the switch: foreign keys left NOT VALID while rows streamed in (a child before its parent) are
    validated now that the target holds everything; the application keeps writing meanwhile."""

    def execute(self, context: Any) -> dict:
        from pgmigrate.post_data import validate_pending_foreign_keys

        m = self.migration(context)
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


class AbortCutoverOperator(CutoverOperator):
    """Runs when any step between the pause and the switch failed: clients back on the source, forward
    pipeline running again, reverse pipeline removed, pause ended. Rerun-safe."""

    def execute(self, context: Any) -> dict:
        from pgmigrate.pause_watchdog import disarm
        from pgmigrate.reverse_replication import remove_reverse_replication, resume_pipeline, set_identity_generation

        m = self.migration(context)
        switch = self.switch()
        route = switch.current_route(m.database)
        if (route.host, route.port, route.dbname) == (m.target.host, m.target.port, m.target.dbname):
            switch.resume(m.database)
            m.event("cutover_failed", "a step after the switch failed: clients are on the target, resumed; "
                    "check the failed task, then run pg_rollback if needed")  # fmt: skip
            raise AirflowFailException("clients are already on the target; not undoing the switch (use pg_rollback)")
        # Clients first: end the pause, then undo the rest. Until the forward connectors resume, source writes
        # wait in the forward slot; the reverse slot captures nothing (its connectors start only after a switch).
        switch.resume(m.database)
        seconds = time.time() - self.pause_started(context)
        handle = self.watchdog_handle(context)
        if handle is not None:
            if not disarm(handle):  # it fired: the pause ended at its deadline, not now
                seconds = min(seconds, handle.deadline - self.pause_started(context))
                self.log.warning("the pause watchdog had already resumed %s at max_pause_seconds", m.database)
        identity = m.state.get("identity_columns") or []
        problems: list[str] = []
        resumed: list[str] = []
        steps = [
            ("remove the reverse pipeline",
             lambda: remove_reverse_replication(self.connect(), self.bootstrap(), m.source, m.target, m.names)),
            ("restore identity columns", lambda: set_identity_generation(m.source, identity, always=True)),
            # The forward sink inserts explicit ids into the target.
            ("identity BY DEFAULT on the target", lambda: set_identity_generation(m.target, identity, always=False)),
            ("resume the forward pipeline",
             lambda: resumed.extend(resume_pipeline(self.connect(), m.target, m.names))),
        ]  # fmt: skip
        for what, step in steps:
            try:
                step()
            except Exception as exc:  # best effort: each step is independent, the next one still runs
                self.log.error("abort: could not %s: %s", what, exc)
                problems.append(f"could not {what} ({str(exc).splitlines()[0][:200]})")
        m.store.upsert(m.params.migration_id, phase="streaming", last_error="; ".join(problems) or None)
        m.event("cutover_aborted", f"cutover aborted, clients stay on the source; writes were paused {seconds:.2f}s; "
                f"forward connectors resumed: {', '.join(resumed) or 'none'}"
                + (f"; still to do: {'; '.join(problems)}" if problems else ""),
                pause_seconds=seconds, problems=problems)  # fmt: skip
        if problems:
            raise AirflowFailException(
                f"cutover aborted and clients are back on the source, but: {'; '.join(problems)}. Once Kafka Connect "
                f"answers, run pg_migration_restart (scripts/migration restart --migration-id {m.params.migration_id})."
            )
        return {"pause_seconds": seconds, "resumed": resumed}
