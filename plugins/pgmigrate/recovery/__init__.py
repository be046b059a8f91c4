"""Recovery from what streaming could not do: Kafka lost its data (`kafka_loss_recovery`), and dead letters,
the changes the sink could not write (`dead_letters`: backlog and acknowledgement; `dead_letter_quarantine`:
rows the target rejects; `dead_letter_resync`: re-reading exactly those keys).

Used by `pg_migration_recover`, `pg_migration_monitor` and `scripts/migration dead-letters`.
"""
