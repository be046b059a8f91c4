"""Kafka Connect: the REST client (`connect_client`) and its errors (`connect_errors`), reading connector statuses
(`connector_status`), the Debezium source and JDBC sink configurations of a migration (`connector_configs`) and the
passwords file they read (`connect_secrets`).

Used by `pg_migration` (deploy), `pg_cutover`/`pg_rollback` (stop, reverse), the runbook and monitor DAGs.
"""
