"""Airflow triggers, run by the triggerer for the deferrable sensors of the same name (`pgmigrate.sensors`); they
read Airflow connections and Kafka Connect without blocking the event loop (`connections`).
"""
