"""What the migration's triggers read from Airflow connections without blocking the triggerer's event loop
(`aget_connection`): endpoints, Kafka's bootstrap servers and Kafka Connect's client."""

from __future__ import annotations

from typing import Any

from pgmigrate.core.endpoints import PgEndpoint
from pgmigrate.kafka.connect_client import ConnectClient


async def connection_for(conn_id: str) -> Any:
    from airflow.sdk import BaseHook

    return await BaseHook.aget_connection(conn_id)


async def endpoint_for(conn_id: str) -> PgEndpoint:
    from airflow.sdk import BaseHook

    return PgEndpoint.from_airflow_connection(await BaseHook.aget_connection(conn_id))


async def bootstrap_servers_for(conn_id: str | None) -> str | None:
    if not conn_id:
        return None
    from airflow.sdk import BaseHook

    conn = await BaseHook.aget_connection(conn_id)
    return conn.extra_dejson.get("bootstrap.servers")


async def connect_client_for(conn_id: str) -> ConnectClient:
    """Kafka Connect's REST client from its connection, built the way `KafkaConnectHook` builds it (auth too)."""
    from airflow.sdk import BaseHook

    from pgmigrate.hooks.kafka_connect import client_from_connection

    return client_from_connection(await BaseHook.aget_connection(conn_id))
