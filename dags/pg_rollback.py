"""`pg_rollback`: clients back to the source after a cutover, losing no write made on the target."""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import Param, chain, dag

from pgmigrate.core.naming import MIGRATION_ID_PATTERN
from pgmigrate.core.params import DEFAULT_PGBOUNCER_CONN_IDS
from pgmigrate.operators.migration_run_lease import migration_run_lease
from pgmigrate.operators.pg_rollback import (
    AbortRollbackOperator,
    ResumeForwardOperator,
    RollbackCheckOperator,
    RollbackOperator,
    RollbackReportOperator,
)
from pgmigrate.sensors.pause_guard import PauseGuardSensor

DOC = """
### Rollback: clients back to the source

After `pg_cutover`, reverse replication (target → source) keeps the source current. `rollback` is the
cutover's critical section the other way, in one process: pause every PgBouncer → fence the target →
drain reverse replication by positions → verify the rows changed since the cutover (or its post-validation)
→ sequences back → stop reverse capture → switch every PgBouncer to the source → lift the source's fence →
resume. `pause_guard` ends the pause at `max_pause_seconds` if `rollback` cannot. Then
`resume_forward_replication` removes the reverse pipeline and resumes the forward one (the migration is
`streaming` again: ready for another cutover), and a report is written (markdown; path in the
`rollback_report` log and the timeline).

`check` deploys the reverse connectors from the cutover's slots if they never started. `force=true` skips
the drain and verification when the target is gone: writes not yet replayed are lost (it says how many).
"""

PARAMS = {
    "migration_id": Param(type="string", pattern=MIGRATION_ID_PATTERN, description="The migration to roll back"),
    "reason": Param(type="string", minLength=1, description="Why (goes into the report)"),
    "force": Param(False, type="boolean", description="Skip the drain when the target is gone; may lose writes"),
    "max_pause_seconds": Param(10, type="number", minimum=1, maximum=300, description="Longest write pause"),
    "pgbouncer_conn_ids": Param(
        list(DEFAULT_PGBOUNCER_CONN_IDS),
        type="array",
        items={"type": "string"},
        minItems=1,
        description="Airflow connections of EVERY PgBouncer clients use; all are switched back together",
    ),
    "pgbouncer_database": Param("", type="string", description="PgBouncer database; empty = the source's name"),
    "allow_direct_sessions": Param(
        False, type="boolean", description="Roll back although sessions connect straight to the target"
    ),
}


@dag(
    dag_id="pg_rollback",
    schedule=None,
    catchup=False,
    params=PARAMS,
    tags=["migration", "cutover"],
    doc_md=DOC,
    default_args={"retries": 0},
)
def pg_rollback():
    check = RollbackCheckOperator(task_id="check")
    rollback = RollbackOperator(task_id="rollback")
    # Retries: a retried guard finds the lease ended and settles it again (harmless); see the trigger's note.
    guard = PauseGuardSensor(task_id="pause_guard", retries=2, retry_delay=timedelta(seconds=5))
    resume_forward = ResumeForwardOperator(task_id="resume_forward_replication", retries=1)
    report = RollbackReportOperator(
        task_id="rollback_report", checked=check.output, switched=rollback.output, resumed=resume_forward.output
    )
    abort = AbortRollbackOperator(task_id="abort_rollback", trigger_rule="one_failed")
    claim, release = migration_run_lease()
    chain(claim, check, [rollback, guard])
    chain(rollback, resume_forward, report)
    rollback >> abort
    [report, abort, guard] >> release


pg_rollback()
