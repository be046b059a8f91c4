"""The Airflow side of the alerts (laid out like a provider's `notifications/`): channels from Airflow connections,
thresholds from an Airflow Variable, and `MigrationAlertNotifier` for DAG and task failures.
"""
