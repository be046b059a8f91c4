"""`pg_migration_monitor`: every minute, the alert rules over every streaming migration, one mapped task each
(issues #6, #16)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import Param, dag, task

DOC = """
### Migration monitor: alerts while a migration streams

Every minute, for each migration in `caught_up`, `streaming` or `cut_over` (the reverse pipeline after
cutover), reads Kafka Connect, Kafka, both databases and the state DB, and raises or resolves alerts.

| task | what it does |
|---|---|
| `monitored_migrations` | the ids to monitor (`migration_ids`, or all in those phases); ended ones' alerts resolved |
| `evaluate` | **one mapped task per migration** (named by its id): reads, reconciles its alerts, sends them |
| `collect_halts` | once every `evaluate` ended (failed ones too): sends what is still pending, gathers the halts |
| `halt` | one `pg_migration_halt` run per data-loss alert raised this run; skipped when there is none |

A slow or unreadable migration delays or fails only its own `evaluate` task (retried once, 2 min
timeout): the others' alerts go out meanwhile; the halts wait for the slowest `evaluate` (at most a try
and its retry, about 4 min). A failed `evaluate` leaves that migration's alerts as
they were this run; the run itself stays green, so look for red `evaluate` map indexes (and the
`collect_halts` log: "N of M migration(s) could not be monitored"). When `monitored_migrations`
itself fails (state DB down), `collect_halts` fails too and the run is red.

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
to take is retried on the next run. `migration_ids` limits a manual run to some migrations; clearing
one failed `evaluate` map index (and `collect_halts`) re-checks just that migration.
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
    def monitored_migrations(params: dict | None = None) -> list[str]:
        """The ids to monitor now (`alerts.monitor.monitored_ids`); resolves the open alerts of ended migrations."""
        import logging

        from pgmigrate.alerts.monitor import monitored_ids
        from pgmigrate.notifications.migration_alerts import control_endpoint

        only = set((params or {}).get("migration_ids") or [])
        ids = monitored_ids(control_endpoint(), only)
        logging.getLogger("pg_migration_monitor").info(
            "monitoring %d migration(s), one evaluate task each: %s%s",
            len(ids),
            ", ".join(ids) or "none",
            f" (migration_ids param: {', '.join(sorted(only))})" if only else "",
        )
        return ids

    # 2 minutes, not the default 3: a timed-out try and its retry end before dagrun_timeout (5), so
    # collect_halts still runs for the other migrations.
    @task(map_index_template="{{ task.op_kwargs['migration_id'] }}", execution_timeout=timedelta(minutes=2))
    def evaluate(migration_id: str) -> list[dict]:
        """Reconcile one migration's alerts and deliver its messages (`alerts.monitor.monitor_one`); returns the
        pg_migration_halt conf of a data-loss alert raised just now ([] or one). A migration that cannot be
        monitored fails this mapped task only (retried once); the other migrations' tasks run on."""
        import logging

        from pgmigrate.alerts.monitor import deliver, monitor_one
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
        control = control_endpoint()
        channels = alert_channels()
        log.info("%s: alert channels: %s", migration_id, ", ".join(c.name for c in channels))
        try:
            kafka = KafkaClusterHook("kafka_default").get_conn()
        except Exception as exc:
            log.warning("no Kafka cluster connection (%s): the sink's consumer lag is not read", exc)
            kafka = None
        try:
            halt = monitor_one(
                control,
                migration_id,
                KafkaConnectHook("kafka_connect", timeout=5, retries=2).get_conn(),
                kafka,
                channels,
                kafka_log_dirs("kafka_default"),
                endpoint_for=lambda conn_id: MigrationDatabaseHook(conn_id).get_conn(),
                thresholds_for=thresholds_for,
            )
        except Exception:
            log.exception("%s: monitoring failed this run; the other migrations are still checked", migration_id)
            raise
        log.info("%s: messages sent: %s", migration_id, deliver(control, channels, migration_id) or "none")
        return [halt] if halt else []

    @task(trigger_rule="all_done")
    def collect_halts(results: list[list[dict]], ids: list[str] | None) -> list[dict]:
        """Runs once every evaluate task ended, failed ones too: delivers what is still pending (messages of
        ended migrations, of failed evaluate tasks, of DAG failure notifiers) and returns every halt conf."""
        import logging

        from pgmigrate.alerts.monitor import deliver
        from pgmigrate.notifications.migration_alerts import alert_channels, control_endpoint

        log = logging.getLogger("pg_migration_monitor")
        log.info("messages sent: %s", deliver(control_endpoint(), alert_channels()) or "none")
        if ids is None:
            raise RuntimeError("the migrations to monitor could not be listed: see monitored_migrations' log")
        results = list(results)  # failed evaluate tasks pushed no result
        if len(results) < len(ids):
            log.error(
                "%d of %d migration(s) could not be monitored this run (failed evaluate tasks, named by "
                "migration id in the grid): their alerts were neither raised nor resolved",
                len(ids) - len(results),
                len(ids),
            )
        halts = [conf for result in results for conf in result]
        log.info("pg_migration_halt to trigger: %s", ", ".join(h["migration_id"] for h in halts) or "none")
        return halts

    ids = monitored_migrations()
    halts = collect_halts(evaluate.expand(migration_id=ids), ids)
    TriggerDagRunOperator.partial(task_id="halt", trigger_dag_id="pg_migration_halt").expand(conf=halts)


pg_migration_monitor()
