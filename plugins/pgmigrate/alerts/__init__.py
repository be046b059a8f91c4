"""Alerts of a streaming migration: the rules and their dedupe in the control database (`rules`), where messages
go (`channels`: file, webhook, SMTP), and one monitor pass over a migration (`monitor`).

Used by `pg_migration_monitor`; the Airflow side (notifier, thresholds) is `pgmigrate.notifications`.
"""
