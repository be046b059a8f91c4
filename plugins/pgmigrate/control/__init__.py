"""The control database (`migration_control`): every SQL statement on its tables. The migration state record,
its timeline and samples (`state.MigrationStateStore`), the alerts (`alert_store.AlertStore`),
the cutover's write pause (`pause_lease.LeaseStore`),
their shared connection and row helpers (`store.ControlStore`) and the schema of every control table
(`control_schema.sql`, a package resource created by `ensure_schema`).

Every DAG writes its progress here; `scripts/migration` and the report read it.
"""
