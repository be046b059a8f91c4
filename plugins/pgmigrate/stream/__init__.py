"""Streaming: the publication (`publication`) and the pipeline's own tables beside it (`pipeline_tables`,
`heartbeat`), the native channel for what Debezium cannot carry (`native_replication`), how far behind the
target is (`lag`, `throughput`), resync by incremental snapshot (`resync`), the runbook's halt/restart
(`pipeline_ops`), starting over (`pipeline_reset`) and removing everything (`teardown`).

Used by `pg_migration` (deploy, wait_caught_up), `pg_migration_runbook`, `pg_migration_monitor`, `pg_cutover`.
"""
