"""Airflow triggers, run by the triggerer for the deferrable sensors of the same name (`pgmigrate.sensors`: the
waits of `pg_migration`, the runbook, schema sync and recover DAGs, and `pause_guard` of `pg_cutover` and
`pg_rollback`). One base (`base`): `serialize()` and the poll loop over the same status function the sensor's
`poke()` calls; they read Airflow connections and Kafka Connect without blocking the event loop (`connections`).
"""
