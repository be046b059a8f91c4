"""`pg_migration`: take a live PostgreSQL database to a target that streams every change, verified."""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import Param, chain, dag

from pgmigrate.core.naming import MIGRATION_ID_PATTERN
from pgmigrate.operators.migration_run_lease import migration_run_lease
from pgmigrate.operators.pg_migration import (
    ApplyPostDataOperator,
    CopySchemaOperator,
    DeployConnectorsOperator,
    PreflightOperator,
    SnapshotCopyOperator,
    ValidateMigrationOperator,
)
from pgmigrate.sensors.connectors_running import ConnectorsRunningSensor
from pgmigrate.sensors.replication_lag import ReplicationLagSensor
from pgmigrate.sensors.snapshot_complete import SnapshotCompleteSensor

DOC = """
### Zero-downtime migration: initial load, then streaming

Moves every table of `schemas` (or just `tables`) from `source_conn_id` to the empty database of
`target_conn_id` while the application keeps writing, and leaves the change stream running
(Debezium source → Kafka → JDBC sink) until cutover (`pg_cutover`).

| task | what it does |
|---|---|
| `claim_migration` | holds the migration for this run (one run per migration; other migrations run side by side) |
| `preflight` | connections, `wal_level`, slots, privileges, keys, types, empty target; each failure says the fix |
| `copy_schema` | types, tables and primary keys on the target (indexes and FKs come after the load) |
| `snapshot` | `copy` method: slot with exported snapshot, parallel COPY under it (no-op for `debezium`) |
| `deploy_connectors` | Debezium source on the migration's slot + JDBC sink, validated by Connect |
| `wait_connectors_running` | both connectors RUNNING (fails at once on FAILED, with Connect's trace) |
| `wait_snapshot` | `debezium` method: the connector's snapshot complete and applied; progress per table |
| `apply_post_data` | secondary indexes, FKs, triggers, constraints |
| `wait_caught_up` | end-to-end lag (heartbeat) below `max_lag_seconds` |
| `validate` | row counts and checksums equal on both sides, while writes continue |
| `release_migration` | teardown: lets the migration go, whatever became of the other tasks |

**Rerunning.** Every task is safe to rerun after a failure or a kill: clear the failed task (UI: *Clear*,
or `scripts/airflow tasks clear pg_migration -t <task> …`). Rerunning `snapshot` starts the initial load
over cleanly (connectors, offsets and topics of the earlier attempt removed, target tables truncated,
slot recreated). State lives in the `migration_control` database (`scripts/migration status`).
"""

PARAMS = {
    "migration_id": Param(
        type="string",
        pattern=MIGRATION_ID_PATTERN,
        description="Names the connectors, topics, replication slot and publication. Lower-case, digits, _ or -.",
    ),
    "source_conn_id": Param("migration_source", type="string", description="Airflow connection of the source"),
    "target_conn_id": Param(
        "migration_target", type="string", description="Airflow connection of the existing, empty target database"
    ),
    "schemas": Param(["public"], type="array", items={"type": "string"}, minItems=1, description="Schemas to migrate"),
    "tables": Param(
        [],
        type="array",
        items={"type": "string", "pattern": r"^.+\..+$"},
        description="Optional subset as schema.table; empty = every table in `schemas`",
    ),
    "max_lag_seconds": Param(5, type="number", exclusiveMinimum=0, description="Catch-up threshold (seconds)"),
    "snapshot_method": Param(
        "copy",
        type="string",
        enum=["copy", "debezium"],
        description="copy: parallel COPY under the slot's exported snapshot (fast); debezium: the connector's own "
        "snapshot through Kafka",
    ),
    "replica_identity_full_for_no_pk": Param(
        False, type="boolean", description="Apply REPLICA IDENTITY FULL to source tables without a primary key"
    ),
    "set_logged_for_unlogged": Param(
        False,
        type="boolean",
        description="Apply ALTER TABLE … SET LOGGED to unlogged source tables (logical decoding cannot see them); "
        "rewrites each under an ACCESS EXCLUSIVE lock",
    ),
    "keep_ownership": Param(
        True,
        type="boolean",
        description="Give the target's objects their source owners (the roles must exist there, and the target role "
        "must be a superuser or a member of each); false: the target role owns them. Grants are copied either way",
    ),
    "copy_parallelism": Param(4, type="integer", minimum=1, maximum=32, description="Parallel COPY workers"),
    "change_topic_partitions": Param(
        1,
        type="integer",
        minimum=1,
        maximum=64,
        description="Partitions of each table's change topic, applied by as many sink tasks side by side. 1 (default): "
        "one task in the source's order. More: each table whose primary key is integer, text or uuid is spread by "
        "key hash (each row's changes stay in order; TRUNCATE is carried out per partition); other tables stay in "
        "partition 0",
    ),
    "dead_letter": Param(
        False,
        type="boolean",
        description="false (default): a record the sink cannot write FAILs it (P0). true: such records go to the "
        "migration's dead letter topic and the sink goes on (a row the target rejects: moved there by the next "
        "monitor run); still a P0 alert that blocks cutover until `scripts/migration dlq` resyncs and "
        "acknowledges them",
    ),
    "subscriber_passfile": Param(
        "",
        type="string",
        description="Optional: a libpq password file (mode 0600, owned by the server's OS user) at this path on the "
        "source's and the target's own hosts, holding the other server's password. PostgreSQL subscriptions (keyless "
        "and timetz tables; reverse replication after the cutover) then name it and hold no password; empty: the "
        "password is in the subscription's conninfo (pg_subscription, superuser dumps)",
    ),
}


@dag(
    dag_id="pg_migration",
    schedule=None,
    catchup=False,
    params=PARAMS,
    tags=["migration"],
    doc_md=DOC,
    default_args={
        "retries": 2,
        "retry_delay": timedelta(seconds=20),
        "retry_exponential_backoff": True,
        "max_retry_delay": timedelta(minutes=5),
    },
)
def pg_migration():
    preflight = PreflightOperator(task_id="preflight")
    copy_schema = CopySchemaOperator(task_id="copy_schema")
    # A retry starts the load over cleanly, so it need not wait: after a lost worker it comes at once.
    snapshot = SnapshotCopyOperator(task_id="snapshot", retries=1, retry_delay=timedelta(seconds=5))
    deploy = DeployConnectorsOperator(task_id="deploy_connectors")
    connectors_running = ConnectorsRunningSensor(
        task_id="wait_connectors_running", deferrable=True, poll_interval=3, timeout=600
    )
    wait_snapshot = SnapshotCompleteSensor(task_id="wait_snapshot", deferrable=True)
    post_data = ApplyPostDataOperator(task_id="apply_post_data")
    caught_up = ReplicationLagSensor(task_id="wait_caught_up", deferrable=True, poll_interval=3, timeout=3600)
    validate = ValidateMigrationOperator(task_id="validate")
    # One run per migration at a time (the lease); other migrations' runs go side by side.
    claim, release = migration_run_lease()
    chain(
        claim,
        preflight,
        copy_schema,
        snapshot,
        deploy,
        connectors_running,
        wait_snapshot,
        post_data,
        caught_up,
        validate,
        release,
    )


pg_migration()
