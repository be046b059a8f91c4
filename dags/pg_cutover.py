"""`pg_cutover`: switch clients from the source to the target with zero failed writes."""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import Param, chain, dag

from pgmigrate.core.naming import MIGRATION_ID_PATTERN
from pgmigrate.core.params import DEFAULT_PGBOUNCER_CONN_IDS
from pgmigrate.notifications.migration_alerts import MigrationAlertNotifier
from pgmigrate.operators.migration_run_lease import migration_run_lease
from pgmigrate.operators.pg_cutover import (
    AbortCutoverOperator,
    BackupSourceOperator,
    CutoverChecklistOperator,
    CutoverOperator,
    DeployReverseConnectorsOperator,
    PostValidateOperator,
    PrepareReverseOperator,
    PreValidateOperator,
    RefreshMaterializedViewsOperator,
    ValidateForeignKeysOperator,
    VerifyCutoverOperator,
)
from pgmigrate.sensors.pause_guard import PauseGuardSensor

DOC = """
### Cutover: clients move from the source to the target through every PgBouncer

Applications connect to PgBouncer. One task, `cutover`, holds the whole client-write pause in one process:
pause every PgBouncer → fence the source → drain by positions → verify the rows changed since the last
check → sequences → stop the forward pipeline and create the reverse slots → switch every PgBouncer →
resume. Each step logs its duration and the pause so far. Clients see a pause (well under a second here),
never an error. Everything that can happen before or after the pause is a task of its own.

| task | what it does |
|---|---|
| `claim_migration` | holds the migration for this run: a rollback or a second cutover of it is refused meanwhile |
| `pre_validate` | full row-level diff while streaming; records the change-topic positions it covers |
| `checklist` | streaming, lag, recent pre-validation, connectors, dead letters, every PgBouncer, direct sessions |
| `backup_source` | `pg_dump -Fd -j2` of the source + connector configs (skipped with `backup=false`) |
| `prepare_reverse_replication` | reverse publications and tables on the target (they capture nothing yet) |
| `refresh_materialized_views` | REFRESH of the target's materialized views (costs their queries: before the pause) |
| `cutover` | pre-pause passes over the changed keys, then the critical section above |
| `pause_guard` | deferred beside `cutover`: ends the pause at `max_pause_seconds` if `cutover` cannot (killed, hung) |
| `deploy_reverse_connectors` | reverse connectors (target → source) start from the slots the pause created |
| `verify` | a write through every PgBouncer lands on the target; no server connection to the source |
| `validate_foreign_keys` | foreign keys left NOT VALID while rows streamed in are validated (no write blocked) |
| `post_validate` | full row diff again, target against source (P0 alert if it differs; rollback stays possible) |
| `abort_cutover` | only if `cutover` failed: forward pipeline resumed, reverse slots removed, identities back |
| `release_migration` | teardown: lets the migration go, whatever became of the other tasks |

**Rerun:** after an abort, fix the cause and trigger `pg_cutover` again (a new run). If you clear `cutover`
in this run, clear `pause_guard` with it: `cutover` does not pause without a guard watching.
`dry_run=true` rehearses: pause, fence, drain, verify, resume on the source; nothing switches.
The pause and each step's duration are in the `cutover` log and the migration's timeline.
"""

PARAMS = {
    "migration_id": Param(type="string", pattern=MIGRATION_ID_PATTERN, description="The migration to cut over"),
    "backup": Param(True, type="boolean", description="pg_dump the source before cutting over"),
    "max_pause_seconds": Param(
        10, type="number", minimum=1, maximum=300, description="Writes are never paused longer than this"
    ),
    "pgbouncer_conn_ids": Param(
        list(DEFAULT_PGBOUNCER_CONN_IDS),
        type="array",
        items={"type": "string"},
        minItems=1,
        description="Airflow connections of EVERY PgBouncer clients use (admin console); all are switched together",
    ),
    "pgbouncer_database": Param(
        "", type="string", description="PgBouncer database to switch; empty = the source connection's database"
    ),
    "allow_direct_sessions": Param(
        False,
        type="boolean",
        description="Cut over although sessions connect straight to the source (they are ended, their roles made "
        "read-only, and a write after the drain point aborts)",
    ),
    "max_validation_age_minutes": Param(
        60, type="number", minimum=1, description="checklist refuses a pre-validation older than this"
    ),
    "reuse_validation_minutes": Param(
        0,
        type="number",
        minimum=0,
        description="pre_validate reuses a passing validation younger than this (0 = always validate anew)",
    ),
    "precopy_passes": Param(
        8,
        type="integer",
        minimum=0,
        maximum=50,
        description="Passes over the keys changed since pre_validate, while streaming, to shrink what the pause "
        "verifies (0: the pause verifies every change since pre_validate)",
    ),
    "dry_run": Param(False, type="boolean", description="Pause, drain, verify, resume on the source; no switch"),
}


@dag(
    dag_id="pg_cutover",
    schedule=None,
    catchup=False,
    params=PARAMS,
    tags=["migration", "cutover"],
    doc_md=DOC,
    # Inside the pause a retry would only lengthen it: `cutover` aborts instead (a new run retries).
    default_args={"retries": 0},
    # P0 "cutover failed" through the alert channels, once until a cutover succeeds (pgmigrate.alerts.rules).
    on_failure_callback=MigrationAlertNotifier(severity="P0", condition="cutover_failed"),
)
def pg_cutover():
    pre_validate = PreValidateOperator(task_id="pre_validate", retries=1)
    checklist = CutoverChecklistOperator(task_id="checklist")
    backup = BackupSourceOperator(task_id="backup_source", retries=1)
    prepare = PrepareReverseOperator(task_id="prepare_reverse_replication", trigger_rule="none_failed", retries=1)
    refresh_views = RefreshMaterializedViewsOperator(task_id="refresh_materialized_views", retries=1)
    cutover = CutoverOperator(task_id="cutover")
    # Retries: a retried guard finds the lease ended and settles it again (harmless); see the trigger's note.
    guard = PauseGuardSensor(task_id="pause_guard", retries=2, retry_delay=timedelta(seconds=5))
    reverse_connectors = DeployReverseConnectorsOperator(task_id="deploy_reverse_connectors", retries=2)
    verify = VerifyCutoverOperator(task_id="verify")
    foreign_keys = ValidateForeignKeysOperator(task_id="validate_foreign_keys", retries=1)
    post_validate = PostValidateOperator(task_id="post_validate", retries=1)
    abort = AbortCutoverOperator(task_id="abort_cutover", trigger_rule="one_failed")
    claim, release = migration_run_lease()
    chain(claim, pre_validate, checklist, backup, prepare, refresh_views, [cutover, guard])
    chain(cutover, reverse_connectors, verify, foreign_keys, post_validate)
    cutover >> abort
    [post_validate, abort, guard] >> release


pg_cutover()
