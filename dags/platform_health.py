"""`platform_health`: is every part a migration needs reachable from Airflow?"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import dag, task

DOC = """
### Platform health
Checks, through the same Airflow connections the migration DAGs use, that the source,
target and control databases answer and that Kafka Connect lists both Debezium plugins.
Run it after `make stack-up`, or before triggering `pg_migration` on a new environment.
A failed task names the connection and the fix; rerunning it is always safe (read-only).
"""


@dag(
    dag_id="platform_health",
    schedule=None,
    catchup=False,
    tags=["migration", "health"],
    doc_md=DOC,
    default_args={"retries": 2, "retry_delay": timedelta(seconds=10), "retry_exponential_backoff": True},
)
def platform_health():
    @task
    def check_postgres(conn_id: str) -> dict:
        from pgmigrate.operators.platform_health import check_postgres

        return check_postgres(conn_id)

    @task
    def check_kafka_connect() -> dict:
        from pgmigrate.operators.platform_health import check_kafka_connect

        return check_kafka_connect("kafka_connect")

    check_postgres.expand(conn_id=["migration_source", "migration_target", "migration_control"])
    check_kafka_connect()


platform_health()
