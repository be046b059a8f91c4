"""Airflow operators, one module per DAG (`dags/X.py` uses `operators/X.py`), each task a thin wrapper over the
phase package that holds its logic:

- `pg_migration`             - preflight, copy_schema, snapshot, deploy_connectors, apply_post_data, validate;
- `pg_cutover`, `pg_rollback` - the cutover and its undo (`pgmigrate.cutover`), on `cutover_base`;
- `pg_validate`              - the weekly schema, row and GE validation (`pgmigrate.validate`);
- `pg_migration_runbook`     - halt, restart, resync, teardown (`pgmigrate.stream`);
- `pg_migration_schema_sync` - drift plan and sync (`pgmigrate.schema`);
- `pg_migration_recover`     - Kafka-loss recovery (`pgmigrate.recovery`);
- `platform_health`          - every part answers;
- `base`                     - what every migration task shares.
"""
