"""Alerts of a streaming migration: the rules (`rules`), all of them over one migration's readings (`evaluation`),
their dedupe and delivery over the control database's `alert` table (`lifecycle`; its SQL is
`pgmigrate.control.alert_store`), what a message says and where it is pending (`messages`), where messages go
(`channels`: file, webhook, SMTP), and one monitor pass over a migration (`monitor`).

Used by `pg_migration_monitor`; the Airflow side (notifier, thresholds) is `pgmigrate.notifications`.
"""
