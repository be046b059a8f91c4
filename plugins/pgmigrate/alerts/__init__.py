"""Alerts of a streaming migration: the rules (`rules`), all of them over one migration's readings (`evaluation`),
their dedupe in the control database (`store`), what a message says and where it is pending (`messages`), where
messages go (`channels`: file, webhook, SMTP), and one monitor pass over a migration (`monitor`).

Used by `pg_migration_monitor`; the Airflow side (notifier, thresholds) is `pgmigrate.notifications`.
"""
