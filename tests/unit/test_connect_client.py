"""Unit tests of the Kafka Connect REST client, its secret masking and the Airflow hook.

The client talks HTTP to ``FakeConnect`` below: a FAKE Kafka Connect served by
``http.server`` on 127.0.0.1 with an ephemeral port. It mimics only the endpoints and error
shapes these tests need (``{"error_code", "message"}``, 409 during a "rebalance", offsets
only alterable when STOPPED); the real Connect is covered by
``tests/integration/test_kafka_connect_hook.py``.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import pytest

from pgmigrate.core.secret_masking import mask_config, redact_text
from pgmigrate.hooks.kafka_connect import other_worker_urls
from pgmigrate.kafka.connect_client import ConnectClient
from pgmigrate.kafka.connect_errors import ConnectConfigError, ConnectError, ConnectUnavailableError

pytestmark = pytest.mark.unit

PG_CLASS = "io.debezium.connector.postgresql.PostgresConnector"
CONFLICT = (409, {"error_code": 409, "message": "Cannot complete request momentarily due to stale configuration"})


class FakeConnect:
    """A fake Kafka Connect REST API (state in dicts), NOT the real thing."""

    def __init__(self) -> None:
        self.connectors: dict[str, dict[str, Any]] = {}
        self.requests: list[tuple[str, str]] = []
        self.scripted: dict[tuple[str, str], list[tuple[int, Any]]] = {}  # answered first, in order
        self.forced: dict[tuple[str, str], tuple[int, Any]] = {}  # (method, path) -> fixed answer
        self.status_lag = 0  # status reads that still show the state from before a stop
        self.delay = 0.0
        self.url = ""

    def handle(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        self.requests.append((method, path))
        time.sleep(self.delay)
        key = (method, path)
        if self.scripted.get(key):
            return self.scripted[key].pop(0)
        if key in self.forced:
            return self.forced[key]
        parts = path.strip("/").split("/")
        if path == "/":
            return 200, {"version": "fake-4.1", "commit": "fake", "kafka_cluster_id": "fake"}
        if parts[0] != "connectors" or len(parts) < 2:
            return 404, {"error_code": 404, "message": f"fake: no route {method} {path}"}
        name, action = parts[1], "/".join(parts[2:])
        connector = self.connectors.get(name)
        if method == "PUT" and action == "config":
            created = connector is None
            self.connectors[name] = {"config": {**body, "name": name}, "state": "RUNNING", "offsets": []}
            return (201 if created else 200), self._info(name)
        if connector is None:
            return 404, {"error_code": 404, "message": f"Connector {name} not found"}
        if method == "GET" and action == "":
            return 200, self._info(name)
        if method == "GET" and action == "config":
            return 200, connector["config"]
        if method == "GET" and action == "status":
            state = connector["state"]
            if self.status_lag > 0 and "previous_state" in connector:
                self.status_lag -= 1
                state = connector.get("previous_state", state)
            tasks = [] if state == "STOPPED" else [{"id": 0, "state": state, "worker_id": "fake:8083"}]
            return 200, {"name": name, "connector": {"state": state, "worker_id": "fake:8083"}, "tasks": tasks}
        if method == "PUT" and action == "stop":
            connector["previous_state"], connector["state"] = connector["state"], "STOPPED"
            return 204, None
        if method == "PATCH" and action == "offsets":
            if connector["state"] != "STOPPED":
                return 400, {"error_code": 400, "message": "Connectors must be in the STOPPED state"}
            connector["offsets"] = body["offsets"]
            return 200, {"message": "The offsets for this connector have been altered successfully"}
        if method == "DELETE" and action == "":
            del self.connectors[name]
            return 204, None
        return 404, {"error_code": 404, "message": f"fake: no route {method} {path}"}

    def _info(self, name: str) -> dict[str, Any]:
        config = self.connectors[name]["config"]
        return {"name": name, "config": config, "tasks": [{"connector": name, "task": 0}], "type": "source"}


@pytest.fixture
def fake_connect() -> Iterator[FakeConnect]:
    fake = FakeConnect()

    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length)) if length else None
            status, answer = fake.handle(self.command, urlsplit(self.path).path, body)
            payload = b"" if answer is None else json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_PUT = do_POST = do_PATCH = do_DELETE = _serve

        def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()


def client_for(fake: FakeConnect, **kwargs: Any) -> ConnectClient:
    return ConnectClient(fake.url, **{"timeout": 5.0, "retries": 4, "backoff": 0.01, **kwargs})


def closed_port_url() -> str:
    """A URL on which nothing listens: bind an ephemeral port, then release it."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def test_retries_on_409_then_succeeds(fake_connect: FakeConnect) -> None:
    fake_connect.scripted[("PUT", "/connectors/orders/config")] = [CONFLICT, CONFLICT]

    info = client_for(fake_connect).create_or_update("orders", {"connector.class": PG_CLASS})

    assert info["name"] == "orders"
    assert fake_connect.requests.count(("PUT", "/connectors/orders/config")) == 3


def test_retries_a_500_that_says_a_rebalance_is_expected(fake_connect: FakeConnect) -> None:
    """Real Connect 4.1 answers GET /connectors/{name} with 500 while a rebalance is pending."""
    client = client_for(fake_connect)
    client.create_or_update("orders", {"connector.class": PG_CLASS})
    expected = (500, {"error_code": 500, "message": "Request cannot be completed because a rebalance is expected"})
    fake_connect.scripted[("GET", "/connectors/orders")] = [expected]

    assert client.exists("orders")
    assert fake_connect.requests.count(("GET", "/connectors/orders")) == 2


def test_gives_up_on_409_after_the_retries(fake_connect: FakeConnect) -> None:
    fake_connect.scripted[("GET", "/connectors")] = [CONFLICT] * 10

    with pytest.raises(ConnectError) as err:
        client_for(fake_connect, retries=3).list_connectors()

    assert err.value.status_code == 409
    assert "rebalancing" in str(err.value)
    assert fake_connect.requests.count(("GET", "/connectors")) == 3


def test_unreachable_connect_names_the_url() -> None:
    url = closed_port_url()

    with pytest.raises(ConnectUnavailableError) as err:
        ConnectClient(url, timeout=1.0, retries=2, backoff=0.01).get_status("orders")

    assert url in str(err.value)
    assert "make stack-status" in str(err.value)


def test_a_hanging_connect_times_out_as_unavailable(fake_connect: FakeConnect) -> None:
    fake_connect.delay = 1.0

    with pytest.raises(ConnectUnavailableError, match="timeout 0.2s"):
        client_for(fake_connect, timeout=0.2, retries=2).server_info()


def test_error_quotes_connect_without_the_password(fake_connect: FakeConnect) -> None:
    echoed = "Connector config {database.password=hunter2-secret, x=y} contains no connector type"
    fake_connect.forced[("PUT", "/connectors/orders/config")] = (400, {"error_code": 400, "message": echoed})

    with pytest.raises(ConnectError) as err:
        client_for(fake_connect).create_or_update("orders", {"database.password": "hunter2-secret", "x": "y"})

    message = str(err.value)
    assert message.startswith("Kafka Connect PUT /connectors/orders/config for connector 'orders' failed: HTTP 400")
    assert "contains no connector type" in message
    assert "hunter2-secret" not in message and "hunter2-secret" not in (err.value.connect_message or "")
    assert (err.value.connector, err.value.status_code) == ("orders", 400)


def test_create_or_update_leaves_an_identical_config_alone(fake_connect: FakeConnect) -> None:
    client = client_for(fake_connect)
    config = {"connector.class": PG_CLASS, "tasks.max": 1, "include.schema.changes": False}

    client.create_or_update("orders", config)
    client.create_or_update("orders", config)
    client.create_or_update("orders", {**config, "tasks.max": 2})

    assert fake_connect.requests.count(("PUT", "/connectors/orders/config")) == 2
    assert fake_connect.connectors["orders"]["config"]["include.schema.changes"] == "false"


def test_validate_or_raise_names_every_bad_key(fake_connect: FakeConnect) -> None:
    path = f"/connector-plugins/{PG_CLASS}/config/validate"

    def value(name: str, errors: list[str]) -> dict[str, Any]:
        return {"definition": {"name": name}, "value": {"name": name, "value": None, "errors": errors}}

    fake_connect.forced[("PUT", path)] = (
        200,
        {
            "name": PG_CLASS,
            "error_count": 2,
            "groups": [],
            "configs": [
                value("snapshot.mode", ["The 'snapshot.mode' value is invalid: Value must be one of always, initial"]),
                value("database.hostname", ["The 'database.hostname' value is invalid: A value is required"]),
                value("topic.prefix", []),
            ],
        },
    )
    client = client_for(fake_connect)

    assert len(client.validate(PG_CLASS, {"snapshot.mode": "sometimes"})) == 2
    with pytest.raises(ConnectConfigError) as err:
        client.validate_or_raise(PG_CLASS, {"snapshot.mode": "sometimes"}, name="orders")

    assert "snapshot.mode: The 'snapshot.mode' value is invalid" in str(err.value)
    assert "database.hostname" in str(err.value) and "topic.prefix" not in str(err.value)
    assert err.value.errors[0].startswith("snapshot.mode: ")


def test_alter_offsets_stops_the_connector_first(fake_connect: FakeConnect, caplog: Any) -> None:
    client = client_for(fake_connect)
    client.create_or_update("orders", {"connector.class": PG_CLASS})
    fake_connect.status_lag = 1  # Connect reports STOPPED a moment after the stop request
    offsets = [{"partition": {"server": "orders"}, "offset": {"lsn": 12345}}]

    with caplog.at_level(logging.INFO, logger="pgmigrate.kafka.connect_client"):
        message = client.alter_offsets("orders", offsets, stop_timeout=10)

    calls = fake_connect.requests
    assert calls.index(("PUT", "/connectors/orders/stop")) < calls.index(("PATCH", "/connectors/orders/offsets"))
    assert "altered successfully" in message
    assert fake_connect.connectors["orders"]["offsets"] == offsets
    assert "is RUNNING; stopping it to alter its offsets" in caplog.text


def test_delete_of_a_missing_connector_returns_false(fake_connect: FakeConnect) -> None:
    assert client_for(fake_connect).delete("never-created") is False


def test_mask_config_hides_secrets_but_shows_file_references() -> None:
    config = {
        "database.password": "postgres",
        "database.user": "postgres",
        "connection.password": "${file:/work/main/.stack/secrets/postgres.properties:password}",
        "ssl.key": "-----BEGIN KEY-----",
        "sasl.jaas.config": "PlainLoginModule required username=a password=b;",
        "api.token": "t0k3n",
        "snapshot.mode": "initial",
    }

    masked = mask_config(config)

    assert masked["database.password"] == "***"
    assert masked["ssl.key"] == masked["sasl.jaas.config"] == masked["api.token"] == "***"
    assert masked["connection.password"] == config["connection.password"]
    assert masked["database.user"] == "postgres" and masked["snapshot.mode"] == "initial"
    assert config["database.password"] == "postgres"  # the original is untouched


def test_redact_text_removes_secret_values_from_messages() -> None:
    text = "bad config {database.password=s3cr3t-pw, file=${file:/p:password}}"

    assert redact_text(text, {"database.password": "s3cr3t-pw"}) == (
        "bad config {database.password=***, file=${file:/p:password}}"
    )


# -- the Airflow hook -----------------------------------------------------------------


def test_hook_builds_its_client_from_an_env_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    from pgmigrate.hooks.kafka_connect import KafkaConnectHook

    monkeypatch.setenv("AIRFLOW_CONN_KAFKA_CONNECT", "http://127.0.0.1:8083")

    client = KafkaConnectHook().get_conn()

    assert client.base_url == "http://127.0.0.1:8083"
    assert client.auth is None


def test_hook_reads_auth_and_timeout_from_a_json_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    from pgmigrate.hooks.kafka_connect import KafkaConnectHook

    conn = {
        "conn_type": "http",
        "host": "connect.internal",
        "port": 8443,
        "schema": "https",
        "login": "ops",
        "password": "connect-secret",
        "extra": {"timeout": 3, "retries": 2},
    }
    monkeypatch.setenv("AIRFLOW_CONN_CONNECT_PROD", json.dumps(conn))

    client = KafkaConnectHook(kafka_connect_conn_id="connect_prod").get_conn()

    assert client.base_url == "https://connect.internal:8443"
    assert client.auth == ("ops", "connect-secret")
    assert (client.timeout, client.retries) == (3.0, 2)


@pytest.mark.parametrize(
    ("host", "port", "schema", "conn_type", "expected"),
    [
        ("127.0.0.1", 8083, "", "http", "http://127.0.0.1:8083"),
        ("127.0.0.1", 8083, "http", "http", "http://127.0.0.1:8083"),
        ("connect", 443, None, "https", "https://connect:443"),
        ("http://connect:8083/", None, "", "http", "http://connect:8083"),
        ("http://connect", 8083, "", "http", "http://connect:8083"),
    ],
)
def test_connection_base_url(host: str, port: int | None, schema: str | None, conn_type: str, expected: str) -> None:
    from pgmigrate.hooks.kafka_connect import connection_base_url

    assert connection_base_url(host, port, schema, conn_type) == expected


def test_hook_test_connection(fake_connect: FakeConnect) -> None:
    from pgmigrate.hooks.kafka_connect import KafkaConnectHook

    ok, message = KafkaConnectHook(base_url=fake_connect.url).test_connection()
    assert ok and "fake-4.1" in message

    url = closed_port_url()
    ok, message = KafkaConnectHook(base_url=url, timeout=1.0, retries=1).test_connection()
    assert not ok and url in message


def test_a_worker_that_does_not_answer_hands_the_request_to_the_next_one(fake_connect: FakeConnect) -> None:
    """A Connect group without a load balancer: the other workers' URLs (`other_urls`) take over, and the client
    stays on the one that answered."""
    down = closed_port_url()
    client = ConnectClient(down, timeout=1.0, retries=3, backoff=0.01, other_urls=[fake_connect.url])

    assert client.server_info()["version"] == "fake-4.1"
    assert client.base_url == fake_connect.url.rstrip("/")
    client.server_info()
    assert fake_connect.requests.count(("GET", "/")) == 2


def test_the_other_worker_urls_must_be_urls() -> None:
    assert other_worker_urls("http://c1:8083, http://c2:8083") == ["http://c1:8083", "http://c2:8083"]
    assert other_worker_urls(["http://c2:8083"]) == ["http://c2:8083"] and other_worker_urls("") == []
    with pytest.raises(ValueError, match="other_urls"):
        other_worker_urls("c2:8083")
