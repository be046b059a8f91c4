"""How the demo, the bench and the tests reach the local stack's Kafka Connect: its REST API asks for the user and
password that `make stack-up` gives it (scripts/stack.d/common.sh), as the `kafka_connect` Airflow connection does."""

from __future__ import annotations

from pgmigrate.kafka.connect_client import ConnectClient

CONNECT_URL = "http://127.0.0.1:8083"
CONNECT_AUTH = ("pgmigrate", "connect-local")


def connect_client(timeout: float = 10.0, retries: int = 5) -> ConnectClient:
    """The local stack's Connect REST client, authenticated."""
    return ConnectClient(CONNECT_URL, timeout=timeout, retries=retries, auth=CONNECT_AUTH)
