"""`pg_migration_schema_sync` tasks: plan, apply, publish + restart, snapshot new tables, validate.
Thin: the decisions are in `schema_drift`, the database work in `schema_sync`."""

from __future__ import annotations

from typing import Any

from airflow.sdk.exceptions import AirflowFailException

from pgmigrate.operators.cutover_base import Migration
from pgmigrate.operators.pg_migration_runbook import OperationOperator, RestartMigrationOperator

# Schema sync acts on the forward pipeline before cutover (after it, DDL belongs on the new primary).
SYNC_PHASES = ("post_data_applied", "caught_up", "streaming")


def _require_forward(m: Migration) -> None:
    if m.state["phase"] not in SYNC_PHASES:
        raise AirflowFailException(
            f"migration {m.params.migration_id} is {m.state['phase']!r}: schema sync brings the target along with "
            f"DDL run on the source while the forward pipeline streams ({', '.join(SYNC_PHASES)})."
        )


class PlanSchemaSyncOperator(OperationOperator):
    """The drift now, classified. Non-additive drift halts the migration (connectors paused, positions kept)
    and fails with the statements to run on the target and how to resume."""

    def execute(self, context: Any) -> dict:
        from pgmigrate.schema.drift_plan import halt_message
        from pgmigrate.schema.schema_sync import plan_sync, published_tables
        from pgmigrate.stream.pipeline_ops import halt

        m = self.migration(context)
        _require_forward(m)
        published = published_tables(m.source, m.names.publication)
        plan = plan_sync(m.source, m.target, m.params, m.state["phase"], published)
        for change in plan.additive + plan.non_additive:
            self.log.info(
                "%s: %s %s",
                "additive" if change.additive else "NON-ADDITIVE",
                change.describe(),
                " ".join(change.statement_texts()),
            )
        self.log.info(
            "new tables (schema copy, publication, incremental snapshot): %s; tables to re-read: %s",
            ", ".join(t.qualified for t in plan.new_tables) or "none",
            ", ".join(t.qualified for t in plan.resync_tables) or "none",
        )
        if plan.non_additive:
            message = halt_message(m.params.migration_id, plan)
            try:
                paused = [name for d in self.live_directions(m) for name in halt(self.connect(), d)]
            except Exception as exc:  # the statements must reach the operator even if Connect is down
                how = f"scripts/migration halt --migration-id {m.params.migration_id} --reason 'schema drift'"
                raise AirflowFailException(f"{message}\nCOULD NOT HALT ({exc}): run {how}.") from exc
            m.store.upsert(m.params.migration_id, last_error=f"halted: non-additive schema drift: {message}"[:2000])
            m.event(
                "halted",
                f"halted (schema sync): connectors paused {paused}. {message}",
                paused=paused,
                statements=plan.operator_statements(),
            )
            raise AirflowFailException(message)
        if plan.empty:
            self.log.info("schemas match: nothing to sync")
        else:
            m.event(
                "schema_sync_planned",
                f"schema sync: {len(plan.additive)} additive change(s), new tables "
                f"{[t.qualified for t in plan.new_tables]}",
                plan=plan.as_dict(),
            )
        return plan.as_dict()


class ApplySchemaChangesOperator(OperationOperator):
    """New tables created as the schema copy does, additive changes applied on the target; new identity
    columns recorded (cutover sets them back to ALWAYS)."""

    def execute(self, context: Any) -> dict:
        from pgmigrate.schema.schema_sync import SchemaSyncError, sync_schema

        m = self.migration(context)
        _require_forward(m)
        try:
            result = sync_schema(m.source, m.target, m.params, m.state["phase"])
        except SchemaSyncError as exc:
            raise AirflowFailException(
                f"{exc}. Rerun pg_migration_schema_sync: it plans again from the drift "
                "now (and halts on a non-additive change)."
            ) from exc
        known = m.state.get("identity_columns") or []
        key = lambda c: (c["schema"], c["table"], c["column"])  # noqa: E731
        new = [c for c in result["identity_columns"] if key(c) not in {key(k) for k in known}]
        if new:
            m.store.upsert(m.params.migration_id, identity_columns=known + new)
        if result["applied"] or result["created"]:
            m.event(
                "schema_synced",
                f"schema sync applied {len(result['applied'])} statement(s), created "
                f"{len(result['created'])} object(s) on the target",
                **result,
            )
        return result


class PublishAndRestartOperator(RestartMigrationOperator):
    """The publication set to the migration's tables again (a new table joins it), then the runbook's
    restart: connector configs rewritten where they differ (the source's table include list), paused or
    failed connectors and tasks brought back to RUNNING (the sink that stopped on a new column)."""

    def execute(self, context: Any) -> dict:
        from pgmigrate.stream.native_replication import split_by_channel
        from pgmigrate.stream.pipeline_tables import own_tables
        from pgmigrate.stream.publication import ensure_publication

        m = self.migration(context)
        _require_forward(m)
        keyed, _ = split_by_channel(m.tables)
        change = ensure_publication(m.source, m.names.publication, [*(t.ref for t in keyed), *own_tables(m.names)])
        self.log.info("publication %s: %s", m.names.publication, change)
        return {"publication": change, **super().execute(context)}


class PlannedOperator(OperationOperator):
    """A task that acts on the sync plan: `plan` is the `plan` task's result (its XComArg, wired in the DAG)."""

    template_fields = ("plan",)

    def __init__(self, *, plan: Any = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.plan = plan


class RequestTableSnapshotOperator(PlannedOperator):
    """Incremental snapshot of the new tables (and of tables whose new column's default differs per row):
    the target copies emptied, Debezium re-reads them while streaming continues. Its result is what
    `ResyncCompleteSensor` waits for."""

    def execute(self, context: Any) -> dict:
        from pgmigrate.core.catalog import TableRef
        from pgmigrate.core.params import parse_table_name
        from pgmigrate.stream.resync import request_resync

        m = self.migration(context)
        plan = self.plan or {}
        tables = [TableRef(*parse_table_name(t)) for t in [*plan.get("new_tables", []), *plan.get("resync_tables", [])]]
        if not tables:
            self.log.info("no table to load")
            return {"signal_id": None, "signal_lsn": None, "native_tables": []}
        result = request_resync(m.source, m.target, m.names, sorted(set(tables)))
        m.event(
            "resync_requested",
            f"schema sync: incremental snapshot of {', '.join(t.qualified for t in tables)} "
            f"signalled ({result['signal_id']})",
            **result,
        )
        return result


class ValidateSyncedTablesOperator(PlannedOperator):
    """The touched tables compared row by row, and no drift left."""

    def execute(self, context: Any) -> dict:
        from pgmigrate.core.catalog import TableRef
        from pgmigrate.core.params import parse_table_name
        from pgmigrate.schema.schema_sync import read_drift
        from pgmigrate.validate.row_diff import diff_tables, format_diff

        m = self.migration(context)
        plan = self.plan or {}
        wanted = {TableRef(*parse_table_name(t)) for t in plan.get("touched_tables", [])}
        left = read_drift(m.source, m.target, m.params, m.state["phase"])
        if left:
            raise AirflowFailException(
                f"schemas still differ: {'; '.join(f'{d.kind} {d.object}' for d in left[:10])}"
                ". Rerun pg_migration_schema_sync."
            )
        tables = [t for t in m.tables if t.ref in wanted]
        diffs = diff_tables(m.source, m.target, tables) if tables else []
        self.log.info("validation of the synced tables:\n%s", format_diff(diffs) if diffs else "no table touched")
        if not all(d.ok for d in diffs):
            bad = [d for d in diffs if not d.ok]
            raise AirflowFailException(
                f"synced tables differ: {format_diff(bad)}. Copy them again: scripts/migration resync --migration-id "
                f"{m.params.migration_id} " + " ".join(f"--table {d.table.qualified}" for d in bad)
            )
        if diffs:
            m.event(
                "schema_sync_validated",
                f"schema sync validated: {', '.join(d.table.qualified for d in diffs)} identical",
            )
        return {"tables": [d.as_dict() for d in diffs]}
