"""`pg_rollback`: clients back to the source after a cutover, losing no write made on the target."""

from __future__ import annotations

from airflow.sdk import Param, chain, dag

from pgmigrate.naming import MIGRATION_ID_PATTERN
from pgmigrate.operators.rollback import (
    AbortRollbackOperator,
    DrainReverseOperator,
    RollbackCheckOperator,
    RollbackPauseOperator,
    RollbackReportOperator,
    StopReverseOperator,
    SwitchBackOperator,
)

DOC = """
### Rollback: clients back to the source

After `pg_cutover`, reverse replication (target → source) keeps the source current. Rollback pauses the
database in PgBouncer, waits until every write made on the target is on the source, syncs sequences
back, switches PgBouncer to the source, resumes, stops reverse replication and writes a report
(markdown, path in the `rollback_report` log and the migration's timeline). Target: under 2 minutes.

`force=true` skips the drain (the target is gone): it says how many changes may be lost.
"""

PARAMS = {
    "migration_id": Param(type="string", pattern=MIGRATION_ID_PATTERN, description="The migration to roll back"),
    "reason": Param(type="string", minLength=1, description="Why (goes into the report)"),
    "force": Param(False, type="boolean", description="Skip the drain when the target is gone; may lose writes"),
    "max_pause_seconds": Param(30, type="number", minimum=1, maximum=300, description="Longest write pause"),
    "pgbouncer_database": Param("", type="string", description="PgBouncer database; empty = the source's name"),
}


@dag(
    dag_id="pg_rollback",
    schedule=None,
    catchup=False,
    max_active_runs=1,
    params=PARAMS,
    tags=["migration", "cutover"],
    doc_md=DOC,
    default_args={"retries": 0},
)
def pg_rollback():
    check = RollbackCheckOperator(task_id="check")
    pause = RollbackPauseOperator(task_id="pause_writes")
    drain = DrainReverseOperator(task_id="drain_reverse")
    switch_back = SwitchBackOperator(task_id="switch_back", trigger_rule="none_failed")
    stop = StopReverseOperator(task_id="stop_reverse_replication")
    report = RollbackReportOperator(task_id="rollback_report")
    abort = AbortRollbackOperator(task_id="abort_rollback", trigger_rule="one_failed")
    chain(check, pause, drain, switch_back, stop, report)
    [pause, drain, switch_back] >> abort


pg_rollback()
