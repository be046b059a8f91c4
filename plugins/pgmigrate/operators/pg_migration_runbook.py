"""Runbook operations as tasks: halt, restart, teardown. Thin: the logic is in `pipeline_ops`,
`teardown` and `reverse_replication`."""

from __future__ import annotations

from typing import Any

from airflow.sdk.exceptions import AirflowFailException

from pgmigrate.core.params import OperationParams, ResyncParams
from pgmigrate.operators.cutover_base import CutoverStepOperator, Migration
from pgmigrate.stream.pipeline_ops import Direction

# After cutover the live pipeline is the reverse one (target -> source).
_REVERSE_PHASES = ("cut_over", "rolling_back")


class OperationOperator(CutoverStepOperator):
    params_class = OperationParams

    def live_directions(self, m: Migration) -> list[Direction]:
        forward = Direction(m.names, m.source, m.target)
        reverse = Direction(m.names.reversed(), m.target, m.source)
        return [reverse] if m.state["phase"] in _REVERSE_PHASES else [forward]


class HaltMigrationOperator(OperationOperator):
    """P0 "data loss detected": stop applying anything, keep every position, record why."""

    def execute(self, context: Any) -> dict:
        from pgmigrate.stream.pipeline_ops import halt

        m = self.migration(context)
        if not m.run.reason:
            raise AirflowFailException("reason is required: say why the migration is halted (it goes in the timeline)")
        connect = self.connect()
        paused = [name for d in self.live_directions(m) for name in halt(connect, d)]
        m.store.upsert(m.params.migration_id, last_error=f"halted: {m.run.reason}")
        m.event(
            "halted",
            f"halted ({m.run.reason}): connectors paused {paused}; slots and offsets kept. "
            "Resume with pg_migration_restart.",
            paused=paused,
        )
        return {"paused": paused}


class RestartMigrationOperator(OperationOperator):
    def execute(self, context: Any) -> dict:
        from pgmigrate.hooks.kafka_connect import KafkaConnectHook
        from pgmigrate.kafka.connector_configs import stored_generated_columns
        from pgmigrate.kafka.key_partitioning import KeyHashPartitioning
        from pgmigrate.stream.native_replication import split_by_channel
        from pgmigrate.stream.pipeline_ops import desired_configs, restart

        m = self.migration(context)
        connect = self.connect()
        secrets = KafkaConnectHook(self.kafka_connect_conn_id).connector_secrets()
        keyed, _ = split_by_channel(m.tables)
        actions = []
        for direction in self.live_directions(m):
            desired = desired_configs(
                direction,
                [t.ref for t in keyed],
                list(m.params.schemas),
                m.params.snapshot_method,
                secrets,
                m.params.dead_letter,
                stored_generated_columns(keyed),
                topics=self.topic_settings(),
                partitioning=KeyHashPartitioning.of(keyed, m.params.change_topic_partitions),
            )
            actions += restart(connect, desired)
        m.event("restarted", "; ".join(actions) or "connectors already RUNNING", actions=actions)
        return {"actions": actions}


class TeardownMigrationOperator(OperationOperator):
    """After a finished migration: everything it created on the servers and in Kafka, removed, so the
    source (and, after cutover, the target) stops keeping WAL for it."""

    def execute(self, context: Any) -> dict:
        from pgmigrate.cutover.fence import lift_fences
        from pgmigrate.cutover.reverse import remove_reverse_replication, set_identity_generation
        from pgmigrate.stream.teardown import teardown_migration

        m = self.migration(context)
        phase = m.state["phase"]
        if phase in ("streaming", "cutover_paused", "rolling_back") and not m.run.force:
            raise AirflowFailException(
                f"migration {m.params.migration_id} is {phase!r}: tearing it down now stops replication to a "
                "database clients may still need. Cut over (or roll back) first, or set force=true."
            )
        connect, kafka = self.connect(), self.kafka_cluster()
        reverse = remove_reverse_replication(connect, kafka, m.source, m.target, m.names)
        forward = teardown_migration(connect, kafka, m.source, m.names, target=m.target)
        set_identity_generation(m.source, m.state.get("identity_columns") or [], always=True)
        lifted = lift_fences(m.state.get("fences") or {}, {"source": m.source, "target": m.target})
        m.store.upsert(m.params.migration_id, phase="torn_down", fences={})
        m.event(
            "torn_down",
            f"teardown: forward {forward}, reverse {reverse}; read-only fences lifted: {lifted or 'none'}",
            forward=forward,
            reverse=reverse,
        )
        return {"forward": forward, "reverse": reverse}


class RequestResyncOperator(OperationOperator):
    """Empty the target's copies of the tables and signal Debezium's incremental snapshot of them."""

    params_class = ResyncParams

    def execute(self, context: Any) -> dict:
        from pgmigrate.core.catalog import TableRef
        from pgmigrate.stream.native_replication import needs_native_channel
        from pgmigrate.stream.resync import request_resync

        m = self.migration(context)
        if m.state["phase"] not in ("streaming", "caught_up", "post_data_applied"):
            raise AirflowFailException(
                f"migration {m.params.migration_id} is {m.state['phase']!r}: resync copies source -> target while "
                "the forward pipeline streams (before cutover)."
            )
        wanted = [TableRef(s, n) for s, n in m.run.tables]
        known = {t.ref: t for t in m.tables}
        unknown = [t.qualified for t in wanted if t not in known]
        if unknown:
            raise AirflowFailException(
                f"not tables of this migration: {', '.join(unknown)} (scripts/migration status --migration-id "
                f"{m.params.migration_id} lists them)."
            )
        native = [t for t in wanted if needs_native_channel(known[t])]
        keyed = [t for t in wanted if t not in native]
        if keyed:
            # The incremental snapshot runs in the source connector: a halted (paused) pipeline would never do it.
            connect, name = self.connect(), m.names.source_connector
            state = connect.state_or_missing(name)
            if state != "RUNNING":
                raise AirflowFailException(
                    f"{name} is {state}, so it cannot re-read tables. If the migration was halted, find out why "
                    f"(scripts/migration status --migration-id {m.params.migration_id}), then run "
                    "pg_migration_restart and this resync again."
                )
        result = request_resync(m.source, m.target, m.names, keyed, native)
        result["target_conn_id"] = m.params.target_conn_id
        m.event(
            "resync_requested",
            f"resync of {', '.join(t.qualified for t in wanted)}: target copies emptied, "
            f"incremental snapshot signalled ({result['signal_id'] or 'none'}), subscription re-copying: "
            f"{', '.join(result['native_tables']) or 'none'}",
            **result,
        )
        return result


class ValidateTablesOperator(OperationOperator):
    """Compare just the resynced tables (key ranges, re-checking rows in flight), as `validate` does."""

    params_class = ResyncParams

    def execute(self, context: Any) -> list[dict]:
        from pgmigrate.core.catalog import TableRef
        from pgmigrate.validate.row_diff import diff_tables, format_diff

        m = self.migration(context)
        wanted = {TableRef(s, n) for s, n in m.run.tables}
        diffs = diff_tables(m.source, m.target, [t for t in m.tables if t.ref in wanted])
        self.log.info("validation of the resynced tables:\n%s", format_diff(diffs))
        if not all(d.ok for d in diffs):
            raise AirflowFailException(f"resynced tables still differ: {format_diff([d for d in diffs if not d.ok])}")
        m.event("resynced", f"resync validated: {', '.join(d.table.qualified for d in diffs)} identical")
        return [d.as_dict() for d in diffs]
