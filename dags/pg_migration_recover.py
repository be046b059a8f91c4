"""`pg_migration_recover`: rebuild the target's consistency after Kafka lost its data (runbook DAG).

`scripts/migration recover --migration-id ID` triggers it and follows it.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import DAG, Param, chain

from pgmigrate.core.naming import MIGRATION_ID_PATTERN
from pgmigrate.operators.migration_run_lease import migration_run_lease
from pgmigrate.operators.pg_migration_recover import (
    RedeployConnectorsOperator,
    RemoveLostDeletesOperator,
    RequestRecoverySnapshotOperator,
    ValidateRecoveryOperator,
)
from pgmigrate.sensors.resync_complete import ResyncCompleteSensor

with DAG(
    dag_id="pg_migration_recover",
    schedule=None,
    catchup=False,
    tags=["migration", "runbook"],
    default_args={"retries": 1, "retry_delay": timedelta(seconds=10)},
    params={"migration_id": Param(type="string", pattern=MIGRATION_ID_PATTERN, description="The migration to recover")},
    doc_md="""
### Recover: Kafka lost its data (broker storage wiped or replaced)

The changes the slot had already confirmed are gone from Kafka, and so are Kafka Connect's configs and
offsets (every connector disappeared). Bring Kafka and Connect up first (`make stack-up`), then:

1. `redeploy_connectors`: recreated from the migration's configs with the same slot (never a second one); the
   source connector has no offsets and streams from the slot's `confirmed_flush_lsn`; topics are created again.
2. `request_resync`: incremental snapshot of every Debezium table (the target is not emptied: the sink upserts
   each row at its current value) and the keyless tables copied again by their subscription.
3. `wait_resync`: until both are done.
4. `remove_lost_deletes`: row diff; rows on the target that the source no longer has (lost deletes) are
   deleted by key, after the source is read once more so a key inserted again meanwhile is kept.
5. `validate`: row diff of every table, identical or the task fails naming tables and keys.

Rerun-safe: rerun the whole DAG after any failure. Progress is in each task's log and the migration's timeline.
""",
):
    request = RequestRecoverySnapshotOperator(task_id="request_resync")
    claim, release = migration_run_lease()
    chain(
        claim,
        RedeployConnectorsOperator(task_id="redeploy_connectors"),
        request,
        ResyncCompleteSensor(task_id="wait_resync", request=request.output, deferrable=True, timeout=6 * 3600),
        RemoveLostDeletesOperator(task_id="remove_lost_deletes"),
        ValidateRecoveryOperator(task_id="validate"),
        release,
    )
