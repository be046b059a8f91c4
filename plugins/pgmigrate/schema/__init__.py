"""The schema: pg_dump's TOC (`pg_dump_toc`), the pre-data copy (`schema_copy`) and what comes after the data
(`post_data`: indexes, constraints, `materialized_views`, `large_objects`, default grants), roles and grants
(`roles`), comparison (`schema_compare`), drift on a live source and the sync that follows it
(`schema_drift`, its plan in `drift_plan` and statements in `drift_statements`, `schema_sync`).

Used by `pg_migration` (copy_schema, apply_post_data), `pg_migration_schema_sync`, `pg_validate` and
`pg_cutover` (refresh_materialized_views). Both halves of the copy start from one dump's plan (`schema_plan`).
"""
