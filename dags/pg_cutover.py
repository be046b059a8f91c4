"""`pg_cutover`: switch clients from the source to the target with zero failed writes."""

from __future__ import annotations

from airflow.sdk import Param, chain, dag

from pgmigrate.naming import MIGRATION_ID_PATTERN
from pgmigrate.notifications import MigrationAlertNotifier
from pgmigrate.operators.cutover import (
    AbortCutoverOperator,
    BackupSourceOperator,
    CutoverChecklistOperator,
    DeployReverseConnectorsOperator,
    DrainOperator,
    FinalValidateOperator,
    PauseWritesOperator,
    PrepareReverseOperator,
    StartReverseReplicationOperator,
    SwitchRouteOperator,
    SyncSequencesOperator,
    ValidateForeignKeysOperator,
    VerifyCutoverOperator,
)

DOC = """
### Cutover: clients move from the source to the target through PgBouncer

Applications connect to PgBouncer; this DAG pauses the database there (in-flight transactions finish,
new ones wait), drains the change stream, validates with writes at rest, syncs sequences, starts
reverse replication (target → source, for `pg_rollback`), switches PgBouncer's route to the target and
resumes. Clients see a pause, never an error.

| task | what it does |
|---|---|
| `checklist` | streaming, lag under threshold, last validation passed, connectors RUNNING, route = source |
| `backup_source` | `pg_dump -Fd -j2` of the source + connector configs (skipped with `backup=false`) |
| `prepare_reverse_replication` | reverse publications and tables on the target (they capture nothing yet) |
| `pause_writes` | arms a watchdog that resumes at `max_pause_seconds` whatever happens, then `PAUSE` |
| `drain` | every change up to the pause is on the target (heartbeat + sink offsets + subscription LSN) |
| `final_validate` | counts + checksums of every table, writes at rest; any difference aborts |
| `sync_sequences` | target sequences past the source's (+ gap); identity columns ALWAYS again |
| `start_reverse_replication` | forward connectors stopped (slot kept); reverse slots on the target keep every change |
| `switch_route` | PgBouncer routes the database to the target, `RELOAD`, `RESUME` |
| `deploy_reverse_connectors` | after the pause: reverse connectors (target → source) start from that slot |
| `verify` | a write through PgBouncer lands on the target; no server connection to the source |
| `validate_foreign_keys` | foreign keys left NOT VALID while rows streamed in are validated (no write blocked) |
| `abort_cutover` | only if `pause_writes` … `switch_route` failed: all undone, clients on the source, resumed |

`dry_run=true` rehearses: pause, drain, final validation, resume on the source; nothing switches.
The pause length is stored in the migration's timeline (`scripts/migration status`).
"""

PARAMS = {
    "migration_id": Param(type="string", pattern=MIGRATION_ID_PATTERN, description="The migration to cut over"),
    "backup": Param(True, type="boolean", description="pg_dump the source before cutting over"),
    "max_pause_seconds": Param(
        10, type="number", minimum=1, maximum=300, description="Writes are never paused longer than this"
    ),
    "pgbouncer_database": Param(
        "", type="string", description="PgBouncer database to switch; empty = the source connection's database"
    ),
    "dry_run": Param(False, type="boolean", description="Pause, drain, validate, resume on the source; no switch"),
}


@dag(
    dag_id="pg_cutover",
    schedule=None,
    catchup=False,
    max_active_runs=1,
    params=PARAMS,
    tags=["migration", "cutover"],
    doc_md=DOC,
    # Inside the pause a retry would only lengthen it: failures abort instead.
    default_args={"retries": 0},
    # P0 "cutover failed" through the alert channels, once until a cutover succeeds (pgmigrate.alerts).
    on_failure_callback=MigrationAlertNotifier(severity="P0", condition="cutover_failed"),
)
def pg_cutover():
    checklist = CutoverChecklistOperator(task_id="checklist")
    backup = BackupSourceOperator(task_id="backup_source", retries=1)
    prepare = PrepareReverseOperator(task_id="prepare_reverse_replication", trigger_rule="none_failed", retries=1)
    pause = PauseWritesOperator(task_id="pause_writes")
    drain = DrainOperator(task_id="drain")
    final_validate = FinalValidateOperator(task_id="final_validate")
    sequences = SyncSequencesOperator(task_id="sync_sequences")
    reverse = StartReverseReplicationOperator(task_id="start_reverse_replication")
    switch = SwitchRouteOperator(task_id="switch_route")
    reverse_connectors = DeployReverseConnectorsOperator(task_id="deploy_reverse_connectors", retries=2)
    verify = VerifyCutoverOperator(task_id="verify")
    foreign_keys = ValidateForeignKeysOperator(task_id="validate_foreign_keys", retries=1)
    abort = AbortCutoverOperator(task_id="abort_cutover", trigger_rule="one_failed")
    chain(checklist, backup, prepare, pause, drain, final_validate, sequences, reverse, switch)
    chain(switch, reverse_connectors, verify, foreign_keys)
    [pause, drain, final_validate, sequences, reverse, switch] >> abort


pg_cutover()
