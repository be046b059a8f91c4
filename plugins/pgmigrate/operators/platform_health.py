"""Checks that every part a migration depends on answers, for the `platform_health` DAG.

Plain functions over hooks: a failure names the part, the connection id and what to do.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)

DEBEZIUM_PLUGIN_CLASSES = (
    "io.debezium.connector.postgresql.PostgresConnector",
    "io.debezium.connector.jdbc.JdbcSinkConnector",
)


def missing_connect_plugins(plugins: list[dict[str, Any]]) -> list[str]:
    """Debezium classes a migration needs that Connect's `GET /connector-plugins` does not list."""
    listed = {plugin.get("class") for plugin in plugins}
    return [cls for cls in DEBEZIUM_PLUGIN_CLASSES if cls not in listed]


def check_postgres(conn_id: str) -> dict[str, Any]:
    """Connect through the Airflow connection and report the server's version and wal_level."""
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    hook = PostgresHook(postgres_conn_id=conn_id)
    try:
        version, wal_level = hook.get_first("SELECT current_setting('server_version'), current_setting('wal_level')")
    except Exception as exc:
        raise RuntimeError(
            f"PostgreSQL connection {conn_id!r} is not reachable: {exc}. "
            "Check the connection in Admin > Connections, or run `make stack-status`."
        ) from exc
    log.info("%s: PostgreSQL %s, wal_level=%s", conn_id, version, wal_level)
    return {"conn_id": conn_id, "version": version, "wal_level": wal_level}


def check_kafka_connect(conn_id: str) -> dict[str, Any]:
    """Ask Kafka Connect for its plugins; both Debezium connectors must be installed."""
    from pgmigrate.hooks.kafka_connect import KafkaConnectHook

    plugins = KafkaConnectHook(kafka_connect_conn_id=conn_id).get_conn().list_plugins()
    missing = missing_connect_plugins(plugins)
    if missing:
        raise RuntimeError(
            f"Kafka Connect ({conn_id!r}) lacks the plugins {missing}. "
            "Run `make install` (it unpacks the Debezium archives into .stack/lib/connect-plugins), "
            "then restart Connect with `make stack-down stack-up`."
        )
    versions = {p["class"]: p.get("version") for p in plugins if p.get("class") in DEBEZIUM_PLUGIN_CLASSES}
    log.info("%s: Debezium plugins %s", conn_id, versions)
    return {"conn_id": conn_id, "plugins": versions}
