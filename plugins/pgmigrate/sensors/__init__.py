"""Airflow sensors, deferrable (`base`): each pokes once, then defers to its trigger in `pgmigrate.triggers`.
`connectors_running`, `snapshot_complete` and `replication_lag` wait in `pg_migration`; `resync_complete` in the
runbook, schema sync and recover DAGs; `pause_guard` beside the critical section of `pg_cutover` and `pg_rollback`.
"""
