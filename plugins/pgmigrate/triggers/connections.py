"""What the migration's triggers read from Airflow connections and Kafka Connect, without blocking the
triggerer's event loop: connections through `aget_connection`, Connect through httpx's async client."""

from __future__ import annotations

from typing import Any

import httpx

from pgmigrate.core.endpoints import PgEndpoint


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


async def connect_base_url_for(conn_id: str) -> str:
    """Kafka Connect's URL from its connection, read the way `KafkaConnectHook` reads it."""
    from airflow.sdk import BaseHook

    from pgmigrate.hooks.kafka_connect import connection_base_url

    conn = await BaseHook.aget_connection(conn_id)
    return connection_base_url(conn.host, conn.port, conn.schema, conn.conn_type).rstrip("/")


async def connector_statuses(client: httpx.AsyncClient, names: list[str]) -> dict[str, dict[str, Any] | None]:
    """`GET /connectors/{name}/status` of each connector; None for one that does not exist."""
    statuses: dict[str, dict[str, Any] | None] = {}
    for name in names:
        response = await client.get(f"/connectors/{name}/status")
        if response.status_code == 404:
            statuses[name] = None
            continue
        response.raise_for_status()
        statuses[name] = response.json()
    return statuses
