"""Airflow hooks: Airflow connections turned into the clients the plain modules take: a `PgEndpoint`
(`migration_db`), Kafka Connect's REST client (`kafka_connect`), the Kafka cluster (`kafka_cluster`) and PgBouncer's
admin console (`pgbouncer`). Used by the operators, sensors and triggers of every DAG.
"""
