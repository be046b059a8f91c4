"""`pg_migration_schema_sync`: bring the target along with DDL run on the source during a migration."""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import DAG, Param, chain

from pgmigrate.core.naming import MIGRATION_ID_PATTERN
from pgmigrate.operators.migration_run_lease import migration_run_lease
from pgmigrate.operators.pg_migration_schema_sync import (
    ApplySchemaChangesOperator,
    PlanSchemaSyncOperator,
    PublishAndRestartOperator,
    RequestTableSnapshotOperator,
    ValidateSyncedTablesOperator,
)
from pgmigrate.sensors.resync_complete import ResyncCompleteSensor

with DAG(
    dag_id="pg_migration_schema_sync",
    schedule=None,
    catchup=False,
    tags=["migration", "runbook"],
    default_args={"retries": 1, "retry_delay": timedelta(seconds=10)},
    params={"migration_id": Param(type="string", pattern=MIGRATION_ID_PATTERN, description="The migration to sync")},
    doc_md="""
### Schema sync: DDL on the source, applied on the target while streaming continues

Logical decoding carries no DDL; the monitor raises a P1 `schema_mismatch` naming each difference.

| task | what it does |
|---|---|
| `plan` | compares both schemas; **non-additive** changes (drop, rename, type change, …) halt the migration |
| | (connectors paused, positions kept) and fail with the statements to run on the target and how to resume |
| `apply` | new tables made as `copy_schema` + `apply_post_data` do; new columns (same type, default, NOT NULL), |
| | indexes (`CONCURRENTLY IF NOT EXISTS`), constraints (FKs `NOT VALID`), sequences, defaults |
| `restart` | publication set to the migration's tables (a new table joins it); connector configs rewritten |
| | where they differ (the source's table list); the sink restarted if it FAILED on the new column |
| `request_resync`, `wait_resync` | incremental snapshot of the new tables (and of tables whose new column |
| | has a per-row default such as `now()`) |
| `validate_tables` | no drift left; the touched tables compared row by row |

The sink keeps `schema.evolution=none`: it never alters the target (its own evolution would guess types from
Kafka records and drop defaults and indexes). Rerun-safe: a rerun plans from the drift now, so after a success
it does nothing. CLI: `scripts/migration schema-sync --migration-id <id>`.
""",
):
    plan = PlanSchemaSyncOperator(task_id="plan")
    request = RequestTableSnapshotOperator(task_id="request_resync", plan=plan.output)
    claim, release = migration_run_lease()
    chain(
        claim,
        plan,
        ApplySchemaChangesOperator(task_id="apply"),
        PublishAndRestartOperator(task_id="restart"),
        request,
        ResyncCompleteSensor(
            task_id="wait_resync", request=request.output, deferrable=True, poll_interval=2, timeout=6 * 3600
        ),
        ValidateSyncedTablesOperator(task_id="validate_tables", plan=plan.output),
        release,
    )
