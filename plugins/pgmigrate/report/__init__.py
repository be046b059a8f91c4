"""Reports: the migration report (`migration_report`, HTML and markdown, from `report_data`, with
`throughput_chart`) and the rollback report for the incident ticket (`rollback_report`).

Used by `pg_cutover`, `pg_rollback` and `scripts/migration report`.
"""
