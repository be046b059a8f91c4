"""The control database (`migration_control`): the migration state record (`state.MigrationStateStore`) and the
schema of every control table (`control_schema.sql`, a package resource created by `ensure_schema`).

Every DAG writes its progress here; `scripts/migration` and the report read it.
"""
