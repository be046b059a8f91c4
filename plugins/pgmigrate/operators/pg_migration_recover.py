"""`pg_migration_recover` tasks: rebuild the target's consistency after Kafka lost its data. Thin: the steps
and why they come in this order are in `pgmigrate.recovery.kafka_loss_recovery`."""

from __future__ import annotations

from typing import Any

from airflow.sdk.exceptions import AirflowFailException

from pgmigrate.operators.cutover_base import Migration
from pgmigrate.operators.pg_migration_runbook import OperationOperator, RestartMigrationOperator

# The forward pipeline only: after cutover the live pipeline runs the other way and the target is the primary.
_RECOVERABLE_PHASES = ("streaming", "caught_up", "post_data_applied")


def _forward_migration(operator: OperationOperator, context: Any) -> Migration:
    m = operator.migration(context)
    if m.state["phase"] not in _RECOVERABLE_PHASES:
        raise AirflowFailException(
            f"migration {m.params.migration_id} is {m.state['phase']!r}: recover rebuilds the target from the source "
            f"while the forward pipeline streams (phases {', '.join(_RECOVERABLE_PHASES)}). After cutover, redeploy "
            "the reverse pipeline with pg_migration_restart and compare with scripts/migration compare."
        )
    return m


class RedeployConnectorsOperator(RestartMigrationOperator):
    """Step 1: connectors back (recreated from the migration's configs), the slot checked to be the only one."""

    def execute(self, context: Any) -> dict:
        from pgmigrate.recovery.kafka_loss_recovery import slot_position

        m = _forward_migration(self, context)
        before = slot_position(m.source, m.names)
        if before["count"] == 0:
            self.log.warning(
                "slot %s is missing: the recreated source connector creates it at the current WAL position; the "
                "snapshot and the delete pass below still bring every row back",
                m.names.slot,
            )
        else:
            self.log.info(
                "slot %s kept at confirmed_flush_lsn %s: a source connector without offsets streams from there",
                m.names.slot,
                before["confirmed_flush_lsn"],
            )
        m.event(
            "recover_started",
            f"Kafka loss recovery: redeploying connectors; slot {m.names.slot} at "
            f"{before['confirmed_flush_lsn'] or 'missing'}",
            slot=before,
        )
        result = super().execute(context)  # restart: recreate missing, resume, restart failed; waits for RUNNING
        after = slot_position(m.source, m.names)
        if after["count"] != 1:
            raise AirflowFailException(
                f"expected exactly one slot {m.names.slot} on the source after redeploying, found {after['count']}: "
                "check pg_replication_slots and the source connector's slot.name."
            )
        return {**result, "slot": after}


class RequestRecoverySnapshotOperator(OperationOperator):
    """Step 2: an incremental snapshot of every Debezium table (target kept as is), native tables copied again."""

    def execute(self, context: Any) -> dict:
        from pgmigrate.recovery.kafka_loss_recovery import plan_recovery
        from pgmigrate.stream.native_replication import split_by_channel
        from pgmigrate.stream.resync import resync_native_tables, signal_incremental_snapshot

        m = _forward_migration(self, context)
        keyed, native = split_by_channel(m.tables)
        plan = plan_recovery(keyed, native)
        connect, name = self.connect(), m.names.source_connector
        state = connect.state_or_missing(name)
        if keyed and state != "RUNNING":
            raise AirflowFailException(
                f"{name} is {state}: the incremental snapshot runs in it. Rerun pg_migration_recover (its first task "
                "redeploys the connectors) once Kafka and Kafka Connect are up (scripts/stack.sh status)."
            )
        if native:
            resync_native_tables(m.source, m.target, m.names, [t.ref for t in native])
        signal_id, lsn = (
            signal_incremental_snapshot(m.source, m.names, [t.ref for t in keyed]) if keyed else (None, None)
        )
        self.log.info(
            "recover: incremental snapshot %s of %d tables (%s); native channel copies %d again (%s)",
            signal_id,
            len(plan.snapshot),
            ", ".join(plan.snapshot),
            len(plan.native),
            ", ".join(plan.native) or "none",
        )
        result = {
            "signal_id": signal_id,
            "signal_lsn": lsn,
            "native_tables": plan.native,
            "target_conn_id": m.params.target_conn_id,
        }
        m.event(
            "recover_snapshot_requested",
            f"recovery snapshot {signal_id or 'none'} of {len(plan.snapshot)} "
            f"tables; native channel re-copies {', '.join(plan.native) or 'none'}",
            **result,
        )
        return result


class RemoveLostDeletesOperator(OperationOperator):
    """Step 4: rows on the target that the source no longer has (their deletes were lost with Kafka)."""

    def execute(self, context: Any) -> list[dict]:
        from pgmigrate.recovery.kafka_loss_recovery import remove_lost_deletes
        from pgmigrate.stream.native_replication import split_by_channel
        from pgmigrate.validate.row_diff import connect_canonical

        m = _forward_migration(self, context)
        keyed, native = split_by_channel(m.tables)
        results = []
        with connect_canonical(m.source) as src, connect_canonical(m.target) as dst:
            for n, table in enumerate(keyed, 1):
                results.append(remove_lost_deletes(src, dst, table))
                self.log.info(
                    "remove_lost_deletes: %d/%d tables done (%s: %d deleted)",
                    n,
                    len(keyed),
                    table.ref.qualified,
                    results[-1]["deleted"],
                )
        deleted = sum(r["deleted"] for r in results)
        per_table = ", ".join(f"{r['table']} {r['deleted']}" for r in results if r["deleted"]) or "none"
        m.event(
            "recover_deletes_removed",
            f"recovery: {deleted} rows deleted on the source were removed from the "
            f"target ({per_table}); {len(native)} keyless tables were copied again by their subscription",
            tables=results,
        )
        return results


class ValidateRecoveryOperator(OperationOperator):
    """Step 5: every table identical (row diff, re-checking rows in flight), or fail naming tables and keys."""

    def execute(self, context: Any) -> list[dict]:
        from pgmigrate.validate.row_diff import diff_tables, format_diff

        m = _forward_migration(self, context)
        diffs = diff_tables(m.source, m.target, m.tables)
        self.log.info("recovery validation:\n%s", format_diff(diffs))
        bad = [d for d in diffs if not d.ok]
        if bad:
            m.event(
                "recover_failed",
                f"recovery validation: {len(bad)} tables still differ",
                tables=[d.as_dict() for d in bad],
            )
            raise AirflowFailException(
                f"after recovery {len(bad)} of {len(diffs)} tables still differ: {format_diff(bad)}. Rerun "
                f"pg_migration_recover (scripts/migration recover --migration-id {m.params.migration_id}); if the same "
                "keys stay, resync those tables (scripts/migration resync)."
            )
        m.event(
            "recovered",
            f"Kafka loss recovery complete: {len(diffs)} tables identical",
            tables=[d.table.qualified for d in diffs],
        )
        return [d.as_dict() for d in diffs]
