"""Airflow hook for the Kafka Connect REST API.

The hook owns the Airflow connection (as ``HttpHook`` does for a base URL) and hands out a
:class:`~pgmigrate.kafka.connect_client.ConnectClient` (`get_conn()`); operators, sensors and triggers call the
client and never read connection fields themselves. The REST logic lives in the client, so it is tested
without Airflow.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from airflow.sdk import BaseHook
from airflow.sdk.log import mask_secret

from pgmigrate.kafka.connect_client import ConnectClient
from pgmigrate.kafka.connect_errors import ConnectError
from pgmigrate.kafka.connect_secrets import ConnectorSecrets


class KafkaConnectHook(BaseHook):
    """Talk to Kafka Connect through the Airflow connection ``kafka_connect_conn_id``.

    The connection is of type ``http``: host and port (the host may also be a full URL),
    ``schema`` as the URL scheme (``http`` by default, as for ``HttpHook``), login/password
    for basic auth if Connect requires it, and optionally ``{"timeout": 10, "retries": 5}``
    in extra.

    :param kafka_connect_conn_id: the Airflow connection to use.
    :param base_url: use this URL instead of a connection (scripts, tests).
    :param auth: with ``base_url``: the (user, password) of Connect's REST basic authentication.
    :param timeout: seconds per request; overrides the connection's extra.
    :param retries: attempts per request; overrides the connection's extra.
    """

    conn_name_attr = "kafka_connect_conn_id"
    default_conn_name = "kafka_connect"
    conn_type = "http"
    hook_name = "Kafka Connect"

    def __init__(
        self,
        kafka_connect_conn_id: str = default_conn_name,
        base_url: str | None = None,
        timeout: float | None = None,
        retries: int | None = None,
        auth: tuple[str, str] | None = None,
    ) -> None:
        super().__init__()
        self.kafka_connect_conn_id = kafka_connect_conn_id
        self.base_url = base_url
        self.auth = auth
        self.timeout = timeout
        self.retries = retries
        self._client: ConnectClient | None = None

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        return {
            "hidden_fields": [],
            "relabeling": {"host": "Connect host or URL", "schema": "Scheme (http/https)"},
            "placeholders": {"host": "127.0.0.1", "port": "8083", "extra": '{"timeout": 10, "retries": 5}'},
        }

    def get_conn(self) -> ConnectClient:
        """Build (once) the REST client from ``base_url`` or the Airflow connection."""
        if self._client is None:
            self._client = self._build_client()
        return self._client

    def _build_client(self) -> ConnectClient:
        if self.base_url:
            return ConnectClient(self.base_url, timeout=self.timeout or 10.0, retries=self.retries or 5, auth=self.auth)
        return client_from_connection(self.get_connection(self.kafka_connect_conn_id), self.timeout, self.retries)

    def connector_secrets(self) -> ConnectorSecrets:
        """How the Connect workers get the connectors' passwords (the connection's extra: `worker_secrets_dir`, or
        `secrets_dir`; `kafka.connect_secrets`), so configs hold references, not passwords."""
        extra = self.get_connection(self.kafka_connect_conn_id).extra_dejson
        return ConnectorSecrets.from_extra(extra, self.kafka_connect_conn_id)

    def test_connection(self) -> tuple[bool, str]:
        """Used by the UI's Test button and ``airflow connections test``."""
        try:
            client = self.get_conn()
            info = client.server_info()
        except (ConnectError, ValueError) as exc:
            return False, str(exc)
        return True, f"Kafka Connect {info.get('version', '?')} reachable at {client.base_url}"


def client_from_connection(conn: Any, timeout: float | None = None, retries: int | None = None) -> ConnectClient:
    """The REST client for an Airflow connection's fields (the hook and the triggers build it the same way)."""
    extra = conn.extra_dejson
    auth = None
    if conn.password:
        mask_secret(conn.password)
    if conn.login:
        auth = (conn.login, conn.password or "")
    return ConnectClient(
        connection_base_url(conn.host, conn.port, conn.schema, conn.conn_type),
        timeout=timeout or float(extra.get("timeout", 10.0)),
        retries=retries or int(extra.get("retries", 5)),
        auth=auth,
        other_urls=other_worker_urls(extra.get(OTHER_URLS_KEY)),
    )


# The extra key listing the group's other workers' REST URLs (comma-separated, or a JSON list): a worker that does not
# answer is not the end of the platform's reach into Connect where no load balancer fronts the group.
OTHER_URLS_KEY = "other_urls"


def other_worker_urls(value: Any) -> list[str]:
    if not value:
        return []
    items = value if isinstance(value, list) else str(value).split(",")
    urls = [str(item).strip() for item in items if str(item).strip()]
    bad = [u for u in urls if "://" not in u]
    if bad:
        raise ValueError(
            f"`{OTHER_URLS_KEY}` in the Kafka Connect connection's extra must be full URLs such as "
            f"http://connect-2:8083, got {bad}"
        )
    return urls


def connection_base_url(host: str | None, port: int | None, schema: str | None, conn_type: str | None) -> str:
    """The Connect URL from connection fields, the way ``HttpHook`` reads them.

    ``host`` may be a full URL (``http://connect:8083``); otherwise ``schema`` is the scheme,
    or ``https`` when the connection came from an ``https://…`` URI (conn_type ``https``).
    """
    if not host:
        raise ValueError("The Kafka Connect connection has no host; set it to e.g. 127.0.0.1 (port 8083)")
    if "://" in host:
        url = host.rstrip("/")
        parts = urlsplit(url)
        return f"{url}:{port}" if port and parts.port is None and not parts.path else url
    scheme = schema or ("https" if conn_type == "https" else "http")
    return f"{scheme}://{host}:{port}" if port else f"{scheme}://{host}"
