"""What the migration's triggers read from Airflow connections without blocking the triggerer's event loop
(`aget_connection`): endpoints, the Kafka cluster's client configuration and Kafka Connect's client."""

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


async def kafka_cluster_for(conn_id: str | None) -> dict[str, Any] | None:
    """The Kafka client configuration of the cluster connection, as `KafkaClusterHook.get_conn()` reads it."""
    if not conn_id:
        return None
    from airflow.sdk import BaseHook

    from pgmigrate.kafka.client_config import client_config_from_extra

    conn = await BaseHook.aget_connection(conn_id)
    return client_config_from_extra(conn.extra_dejson, conn_id)


async def connect_client_for(conn_id: str) -> ConnectClient:
    """Kafka Connect's REST client from its connection, built the way `KafkaConnectHook` builds it (auth too)."""
    from airflow.sdk import BaseHook

    from pgmigrate.hooks.kafka_connect import client_from_connection

    return client_from_connection(await BaseHook.aget_connection(conn_id))
