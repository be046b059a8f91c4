"""The runbook's operations on a migration, one small DAG each: halt, restart, resync, teardown.

The same operations are in the on-call CLI (`scripts/migration halt|restart|resync|teardown`), which triggers
these DAGs and follows them, so everything done at 3 a.m. shows in the Airflow UI.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import DAG, Param, chain

from pgmigrate.core.naming import MIGRATION_ID_PATTERN
from pgmigrate.operators.migration_run_lease import migration_run_lease
from pgmigrate.operators.pg_migration_runbook import (
    HaltMigrationOperator,
    RequestResyncOperator,
    RestartMigrationOperator,
    TeardownMigrationOperator,
    ValidateTablesOperator,
)
from pgmigrate.sensors.resync_complete import ResyncCompleteSensor

MIGRATION_ID = Param(type="string", pattern=MIGRATION_ID_PATTERN, description="The migration to act on")
DEFAULT_ARGS = {"retries": 1, "retry_delay": timedelta(seconds=10)}

with DAG(
    dag_id="pg_migration_halt",
    schedule=None,
    catchup=False,
    tags=["migration", "runbook"],
    default_args=DEFAULT_ARGS,
    params={
        "migration_id": MIGRATION_ID,
        "reason": Param(type="string", minLength=1, description="Why (P0: data loss detected, …)"),
    },
    doc_md="""
### Halt: stop applying changes, keep every position

Pauses the live pipeline's connectors (forward, or reverse after cutover). Offsets and replication slots
stay, so nothing is lost: `pg_migration_restart` resumes exactly where it stopped. The reason is recorded
in the migration's timeline. Rerun-safe.
""",
):
    HaltMigrationOperator(task_id="halt")

with DAG(
    dag_id="pg_migration_restart",
    schedule=None,
    catchup=False,
    tags=["migration", "runbook"],
    default_args=DEFAULT_ARGS,
    params={"migration_id": MIGRATION_ID},
    doc_md="""
### Restart: bring the live pipeline back to RUNNING

Recreates a missing connector, rewrites a connector whose config differs from what the migration
deployed (a hand edit, a corrupt config), resumes paused or stopped ones, restarts failed tasks, and
waits until both connectors run. The slot name is fixed by the migration, so a recreated connector
reuses it: never a second slot. Rerun-safe.
""",
):
    RestartMigrationOperator(task_id="restart")

with DAG(
    dag_id="pg_migration_teardown",
    schedule=None,
    catchup=False,
    tags=["migration", "runbook"],
    default_args=DEFAULT_ARGS,
    params={
        "migration_id": MIGRATION_ID,
        "force": Param(False, type="boolean", description="Also tear down a migration that is still streaming"),
    },
    doc_md="""
### Teardown: remove everything the migration created

Connectors (forward and reverse) with their offsets, topics, replication slots (so neither server keeps
WAL for them), publications, the native channel's subscriptions and the heartbeat tables. Refuses a
migration that is still `streaming` unless `force=true`. Rerun-safe: what is gone is skipped.
""",
):
    TeardownMigrationOperator(task_id="teardown")

with DAG(
    dag_id="pg_migration_resync",
    schedule=None,
    catchup=False,
    tags=["migration", "runbook"],
    default_args=DEFAULT_ARGS,
    params={
        "migration_id": MIGRATION_ID,
        "tables": Param(
            [],
            type="array",
            minItems=1,
            items={"type": "string", "pattern": r"^.+\..+$"},
            description="Tables to copy again, as schema.table",
        ),
    },
    doc_md="""
### Resync: copy tables again while streaming continues

For a table whose target copy is damaged or suspect (before cutover). `request_resync` empties the
target's copy and asks Debezium for an incremental snapshot of it (a row in the source's signal table);
`wait_resync` waits until the connector finished it; `validate_tables` compares the tables (key ranges,
re-checking rows changed meanwhile). Streaming never stops. Tables without a primary key travel by
subscription: rerun `pg_migration`'s `snapshot` task for those.
""",
):
    request = RequestResyncOperator(task_id="request_resync")
    claim, release = migration_run_lease()
    chain(
        claim,
        request,
        ResyncCompleteSensor(task_id="wait_resync", request=request.output, deferrable=True, timeout=6 * 3600),
        ValidateTablesOperator(task_id="validate_tables"),
        release,
    )
