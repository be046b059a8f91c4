"""How the demo, the bench and the tests reach the local stack's Kafka Connect: its REST API asks for the user and
password that `make stack-up` gives it (scripts/stack.d/common.sh), as the `kafka_connect` Airflow connection does."""

from __future__ import annotations

import os
from pathlib import Path

from pgmigrate.kafka.connect_client import ConnectClient

CONNECT_URL = "http://127.0.0.1:8083"
CONNECT2_URL = "http://127.0.0.1:8084"  # the cluster profile's second worker
CONNECT_AUTH = ("pgmigrate", "connect-local")
STATE_DIR = Path(os.environ.get("STACK_STATE_DIR", Path(__file__).resolve().parents[1] / ".stack"))


def stack_profile() -> str:
    """The running local stack's profile (`single` or `cluster`), as `make stack-up` recorded it."""
    profile = STATE_DIR / "profile"
    return profile.read_text().strip() if profile.exists() else "single"


def connect_client(timeout: float = 10.0, retries: int = 5) -> ConnectClient:
    """The local stack's Connect REST client, authenticated; on the cluster profile it falls over to the second
    worker when one does not answer."""
    other_urls = [CONNECT2_URL] if stack_profile() == "cluster" else []
    return ConnectClient(CONNECT_URL, timeout=timeout, retries=retries, auth=CONNECT_AUTH, other_urls=other_urls)
