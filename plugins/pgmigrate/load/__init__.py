"""The initial load: the replication slot with its exported snapshot (`replication_slot`), the `copy` method's
plan and parallel COPY under that snapshot (`copy_plan`, `snapshot_copy`, its figures in `copy_report`), and how
far the load got (`snapshot_progress`).

Used by `pg_migration` (snapshot, wait_snapshot).
"""
