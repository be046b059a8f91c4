"""`pg_migration_monitor`: every minute, the alert rules over every streaming migration (issue #6)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import Param, dag, task

DOC = """
### Migration monitor: alerts while a migration streams

Every minute, for each migration in `caught_up`, `streaming` or `cut_over` (the reverse pipeline after
cutover), reads Kafka Connect, Kafka, both databases and the state DB, and raises or resolves alerts:

| sev | condition | when |
|---|---|---|
| P0 | `connector_failed:<name>` | a live connector or task FAILED, or the connector is missing |
| P0 | `data_loss` | last validation differs and the pipeline is caught up: **`pg_migration_halt` is triggered** |
| P0 | `cutover_failed` | raised by `pg_cutover`'s failure callback; resolved here once cut over |
| P0 | `dead_letters` | the sink's DLQ holds unacknowledged records: `scripts/migration dlq` (resolved by `--ack`) |
| P1 | `lag_high` | every lag sample above `lag_seconds` (60) for `lag_window_seconds` (300) |
| P1 | `validation_mismatch` | last validation differs while the pipeline is behind |
| P1 | `schema_mismatch` | source and target schemas differ (DDL on the source): `scripts/migration schema-sync` |
| P2 | `kafka_disk` / `task_restarted:<name>` | a Kafka log dir > `kafka_disk_percent` (80) / a task restarting |
| P3 | `slow_query` | a query on the live source runs > `slow_query_seconds` (300) |

One message per condition when it starts and one "RESOLVED" when it clears (table `alert` in
`migration_control`; also in the migration's timeline, `scripts/migration status`). Channels: the
JSON-lines file `.stack/alerts/alerts.log` (or `$PGMIGRATE_ALERT_LOG`) always; the connections
`alerts_webhook` (Slack-compatible JSON) and `alerts_smtp` when they exist.

**Thresholds**: Airflow Variable `pgmigrate_alert_thresholds`, JSON, e.g.
`{"lag_seconds": 60, "lag_window_seconds": 300, "kafka_disk_percent": 80, "slow_query_seconds": 300,
"halt_on_data_loss": true, "migrations": {"shop-2026": {"lag_window_seconds": 600}}}`; per-migration keys
override the global ones. Kafka log dirs: extra `log_dirs` of `kafka_default` (local stack: found itself).

**Rerunning** is always safe: alerts are deduplicated in the state DB, and a message a channel failed
to take is retried on the next run. `migration_ids` limits a manual run to some migrations.
"""


@dag(
    dag_id="pg_migration_monitor",
    schedule="* * * * *",
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=timedelta(minutes=5),
    tags=["migration", "monitoring"],
    doc_md=DOC,
    params={
        "migration_ids": Param(
            [], type="array", items={"type": "string"}, description="Only these migrations (empty: every one)"
        ),
    },
    default_args={"retries": 1, "retry_delay": timedelta(seconds=5), "execution_timeout": timedelta(minutes=3)},
)
def pg_migration_monitor():
    @task
    def evaluate(params: dict | None = None) -> list[dict]:
        """Reconcile every monitored migration's alerts and deliver the messages (`alerts.monitor.monitor_all`);
        returns the pg_migration_halt confs for data-loss alerts raised just now."""
        import logging

        from pgmigrate.alerts.monitor import monitor_all
        from pgmigrate.hooks.kafka_cluster import KafkaClusterHook
        from pgmigrate.hooks.kafka_connect import KafkaConnectHook
        from pgmigrate.hooks.migration_db import MigrationDatabaseHook
        from pgmigrate.notifications.migration_alerts import (
            alert_channels,
            control_endpoint,
            kafka_log_dirs,
            thresholds_for,
        )

        log = logging.getLogger("pg_migration_monitor")
        channels = alert_channels()
        log.info("alert channels: %s", ", ".join(c.name for c in channels))
        try:
            kafka = KafkaClusterHook("kafka_default").get_conn()
        except Exception as exc:
            log.warning("no Kafka cluster connection (%s): the sink's consumer lag is not read", exc)
            kafka = None
        return monitor_all(
            control_endpoint(),
            KafkaConnectHook("kafka_connect", timeout=5, retries=2).get_conn(),
            kafka,
            channels,
            kafka_log_dirs("kafka_default"),
            endpoint_for=lambda conn_id: MigrationDatabaseHook(conn_id).get_conn(),
            thresholds_for=thresholds_for,
            only=set((params or {}).get("migration_ids") or []),
        )

    TriggerDagRunOperator.partial(task_id="halt", trigger_dag_id="pg_migration_halt").expand(conf=evaluate())


pg_migration_monitor()
