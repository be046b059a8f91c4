"""Kafka and Kafka Connect: the REST client (`connect_client`) and its errors (`connect_errors`), reading connector
statuses (`connector_status`), the Debezium source and JDBC sink configurations of a migration (`connector_configs`)
and the passwords file they read (`connect_secrets`); the Kafka client configuration of the cluster, from its whole
connection (`client_config`), how the migration's topics are created (`topic_settings`) and the topics the platform
makes itself (`topic_admin`).

Used by `pg_migration` (deploy), `pg_cutover`/`pg_rollback` (stop, reverse), the runbook and monitor DAGs.
"""
