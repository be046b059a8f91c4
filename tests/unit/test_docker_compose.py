"""Static checks of docker-compose.yml: the Docker stack must keep the local stack's topology.

No Docker engine is needed: the compose file, Dockerfiles and pom are parsed, not run. The local-script
stack (make stack-up) is what CI runs; these tests stop the compose file from drifting away from it
(ports, versions, Connect settings, connection ids).
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "docker-compose.yml"
DOCKER_DIR = REPO / "include" / "docker"
POM = REPO / "include" / "stack" / "pom.xml"
CONNECT_DOCKERFILE = DOCKER_DIR / "connect.Dockerfile"
AIRFLOW_DOCKERFILE = DOCKER_DIR / "airflow.Dockerfile"
CONNECT_PROPERTIES = DOCKER_DIR / "connect-distributed.properties"
LOCAL_CONNECT_PROPERTIES = REPO / "include" / "stack" / "connect-distributed.properties"
LOCAL_CONNECTIONS = REPO / "include" / "stack" / "airflow-connections.json"
REQUIREMENTS = REPO / "requirements.txt"

# The fixed local interface: the same host ports as scripts/stack.d/common.sh.
EXPECTED_HOST_PORTS = {
    "source-db": {5433},
    "target-db": {5434},
    "control-db": {5435},
    "kafka": {9092},
    "connect": {8083},
    "pgbouncer": {6432},
    "pgbouncer2": {6433},
    "airflow-api-server": {8080},
}
POSTGRES_SERVICES = ("source-db", "target-db", "control-db")
AIRFLOW_SERVICES = (
    "airflow-init",
    "airflow-api-server",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
)
SECRETS_MOUNT_TARGET = "/opt/secrets/postgres.properties"


@pytest.fixture(scope="module")
def compose() -> dict:
    with COMPOSE.open() as f:
        return yaml.safe_load(f)


@pytest.fixture(scope="module")
def services(compose: dict) -> dict:
    return compose["services"]


@pytest.fixture(scope="module")
def pom_properties() -> dict[str, str]:
    root = ET.parse(POM).getroot()
    ns = {"m": "http://maven.apache.org/POM/4.0.0"}
    props = root.find("m:properties", ns)
    assert props is not None, "include/stack/pom.xml has no <properties>"
    return {child.tag.split("}", 1)[1]: (child.text or "").strip() for child in props}


def _host_ports(service: dict) -> set[int]:
    """Host ports published by a service, for short ("[ip:]host:container") and long port syntax."""
    ports: set[int] = set()
    for entry in service.get("ports", []):
        if isinstance(entry, dict):
            ports.add(int(entry["published"]))
            continue
        parts = str(entry).split(":")
        assert len(parts) >= 2, f"port {entry!r} publishes no fixed host port"
        ports.add(int(parts[-2]))
    return ports


def _container_port(entry: str | dict) -> int:
    if isinstance(entry, dict):
        return int(entry["target"])
    return int(str(entry).split(":")[-1].split("/")[0])


def _env(service: dict) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {key: str(value) for key, value in env.items()}


def _dockerfile_arg_default(dockerfile: Path, name: str) -> str:
    match = re.search(rf"^ARG\s+{name}=(\S+)\s*$", dockerfile.read_text(), re.MULTILINE)
    assert match, f"{dockerfile.name} declares no ARG {name} with a default"
    return match.group(1)


def _properties(path: Path) -> dict[str, str]:
    props = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith(("#", "!")) and "=" in line:
            key, value = line.split("=", 1)
            props[key.strip()] = value.strip()
    return props


def _requirement_pin(package: str) -> str:
    match = re.search(rf"^{re.escape(package)}==(\S+)", REQUIREMENTS.read_text(), re.MULTILINE)
    assert match, f"requirements.txt does not pin {package}"
    return match.group(1)


@pytest.mark.unit
def test_required_services_exist(services: dict) -> None:
    required = set(EXPECTED_HOST_PORTS) | set(AIRFLOW_SERVICES)
    missing = required - set(services)
    assert not missing, f"docker-compose.yml lacks services: {sorted(missing)}"


@pytest.mark.unit
def test_host_ports_match_the_local_stack(services: dict) -> None:
    published = {name: _host_ports(svc) for name, svc in services.items() if _host_ports(svc)}
    assert published == EXPECTED_HOST_PORTS


@pytest.mark.unit
@pytest.mark.parametrize("name", POSTGRES_SERVICES)
def test_postgres_services_use_pg15_with_logical_decoding(services: dict, name: str) -> None:
    service = services[name]
    assert service["image"] == "postgres:15"
    command = service["command"]
    args = command if isinstance(command, list) else command.split()
    settings = {args[i + 1] for i, arg in enumerate(args[:-1]) if arg == "-c"}
    assert "wal_level=logical" in settings
    assert {"max_replication_slots=20", "max_wal_senders=20", "listen_addresses=*"} <= settings
    assert [_container_port(p) for p in service["ports"]] == [5432]
    assert _env(service)["POSTGRES_PASSWORD"] == "postgres"
    assert "pg_isready" in " ".join(service["healthcheck"]["test"])


@pytest.mark.unit
def test_databases_are_created(services: dict) -> None:
    assert _env(services["source-db"])["POSTGRES_DB"] == "shop"
    assert _env(services["target-db"])["POSTGRES_DB"] == "shop"
    mounts = services["control-db"]["volumes"]
    init = [m for m in mounts if str(m).split(":")[1].startswith("/docker-entrypoint-initdb.d/")]
    assert len(init) == 1, "control-db must mount one init script in /docker-entrypoint-initdb.d"
    script = (REPO / str(init[0]).split(":")[0]).read_text()
    created = set(re.findall(r"CREATE DATABASE\s+\"?(\w+)\"?", script, re.IGNORECASE))
    assert created == {"airflow", "migration_control"}


@pytest.mark.unit
def test_kafka_version_matches_the_pom(services: dict, pom_properties: dict[str, str]) -> None:
    assert pom_properties["kafka.version"] == "4.1.1"
    assert services["kafka"]["image"] == f"apache/kafka:{pom_properties['kafka.version']}"
    kafka_build_arg = services["connect"]["build"].get("args", {}).get("KAFKA_VERSION")
    assert kafka_build_arg in (None, pom_properties["kafka.version"])
    assert _dockerfile_arg_default(CONNECT_DOCKERFILE, "KAFKA_VERSION") == pom_properties["kafka.version"]


@pytest.mark.unit
def test_kafka_is_single_node_kraft_with_two_plaintext_listeners(services: dict) -> None:
    env = _env(services["kafka"])
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert env["KAFKA_NODE_ID"] == "1"
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"].startswith("1@")
    advertised = set(env["KAFKA_ADVERTISED_LISTENERS"].split(","))
    assert advertised == {"PLAINTEXT://kafka:29092", "PLAINTEXT_HOST://127.0.0.1:9092"}
    for key in (
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR",
        "KAFKA_SHARE_COORDINATOR_STATE_TOPIC_REPLICATION_FACTOR",
    ):
        assert env[key] == "1", key
    # A KRaft cluster id is a base64url-encoded UUID: 22 characters.
    assert re.fullmatch(r"[A-Za-z0-9_-]{22}", env["CLUSTER_ID"])


@pytest.mark.unit
def test_debezium_versions_match_the_pom(services: dict, pom_properties: dict[str, str]) -> None:
    for side in ("source", "sink"):
        pom_version = pom_properties[f"debezium.{side}.version"]
        arg = f"DEBEZIUM_{side.upper()}_VERSION"
        assert _dockerfile_arg_default(CONNECT_DOCKERFILE, arg) == pom_version
        assert services["connect"]["build"].get("args", {}).get(arg) in (None, pom_version)
        # The build ARG must reach Maven, or the pom's own default would silently win.
        assert f'-Ddebezium.{side}.version="${{{arg}}}"' in CONNECT_DOCKERFILE.read_text()
    assert pom_properties["debezium.source.version"] == "3.7.0.Final"
    dockerfile = CONNECT_DOCKERFILE.read_text()
    assert "COPY include/stack/pom.xml" in dockerfile
    assert "FROM apache/kafka:${KAFKA_VERSION}" in dockerfile


@pytest.mark.unit
def test_airflow_image_matches_the_requirements_pin(compose: dict, services: dict) -> None:
    pin = _requirement_pin("apache-airflow")
    common = compose["x-airflow-common"]
    base = common["build"]["args"]["AIRFLOW_IMAGE"]
    assert re.fullmatch(rf"apache/airflow:{re.escape(pin)}-python3\.\d+", base), base
    assert _dockerfile_arg_default(AIRFLOW_DOCKERFILE, "AIRFLOW_IMAGE") == base
    assert "requirements.txt" in AIRFLOW_DOCKERFILE.read_text()
    for name in AIRFLOW_SERVICES:
        assert services[name]["image"] == common["image"], name
        assert common["image"].split(":", 1)[1].startswith(f"{pin}-"), common["image"]


@pytest.mark.unit
def test_connect_mounts_secrets_and_uses_the_file_config_provider(services: dict) -> None:
    mounts = [str(m) for m in services["connect"]["volumes"]]
    secret = [m for m in mounts if m.split(":")[1] == SECRETS_MOUNT_TARGET]
    assert len(secret) == 1, f"connect must mount {SECRETS_MOUNT_TARGET}"
    host_path = REPO / secret[0].split(":")[0]
    assert _properties(host_path).get("password") == "postgres"

    props = _properties(CONNECT_PROPERTIES)
    assert props["config.providers"] == "file,dir"  # dir: worker-resolved passwords (worker_secrets_dir)
    assert props["config.providers.file.class"] == "org.apache.kafka.common.config.provider.FileConfigProvider"
    assert props["plugin.path"] == "/opt/connect-plugins"
    assert props["listeners"] == "http://0.0.0.0:8083"
    assert props["bootstrap.servers"] == "kafka:29092"
    assert "kafka:29092" in _env(services["kafka"])["KAFKA_ADVERTISED_LISTENERS"]


@pytest.mark.unit
def test_connect_worker_settings_match_the_local_stack() -> None:
    docker = _properties(CONNECT_PROPERTIES)
    # The local template as scripts/stack.d/kafka.sh renders it for the single profile (compose runs one broker).
    local = {k: v.replace("@REPLICATION@", "1") for k, v in _properties(LOCAL_CONNECT_PROPERTIES).items()}
    # Everything but addresses and paths must agree, or connectors behave differently per stack.
    shared = [
        "group.id",
        "key.converter",
        "value.converter",
        "key.converter.schemas.enable",
        "value.converter.schemas.enable",
        "offset.storage.topic",
        "config.storage.topic",
        "status.storage.topic",
        "connector.client.config.override.policy",
        "offset.storage.replication.factor",
        "config.storage.replication.factor",
        "status.storage.replication.factor",
        "config.providers",
        "config.providers.file.class",
        "config.providers.dir.class",
        "rest.extension.classes",
    ]
    assert {k: docker.get(k) for k in shared} == {k: local.get(k) for k in shared}
    assert docker["key.converter.schemas.enable"] == "true"
    assert docker["offset.storage.topic"] == "connect-offsets"
    # The file provider reads the secrets directory only, on both stacks.
    assert docker["config.providers.file.param.allowed.paths"] == "/opt/secrets"
    assert local["config.providers.file.param.allowed.paths"] == "@STATE@/secrets"
    assert docker["config.providers.dir.param.allowed.paths"] == "/opt/worker-secrets"
    assert local["config.providers.dir.param.allowed.paths"] == "@STATE@/worker-secrets"


@pytest.mark.unit
def test_airflow_connections_cover_the_local_stack_ids(compose: dict) -> None:
    env = {k: str(v) for k, v in compose["x-airflow-common"]["environment"].items()}
    conn_ids = {k.removeprefix("AIRFLOW_CONN_").lower() for k in env if k.startswith("AIRFLOW_CONN_")}
    local_ids = set(json.loads(LOCAL_CONNECTIONS.read_text()))
    assert conn_ids == local_ids
    assert env["AIRFLOW_CONN_MIGRATION_SOURCE"] == "postgres://postgres:postgres@source-db:5432/shop"
    assert env["AIRFLOW_CONN_MIGRATION_TARGET"] == "postgres://postgres:postgres@target-db:5432/shop"
    assert env["AIRFLOW_CONN_MIGRATION_CONTROL"].endswith("@control-db:5432/migration_control")
    assert env["AIRFLOW_CONN_KAFKA_CONNECT"] == "http://pgmigrate:connect-local@connect:8083"
    kafka = json.loads(env["AIRFLOW_CONN_KAFKA_DEFAULT"])
    assert kafka["conn_type"] == "kafka"
    assert kafka["extra"]["bootstrap.servers"] == "kafka:29092"
    assert env["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].endswith("@control-db:5432/airflow")


@pytest.mark.unit
def test_dependencies_wait_for_healthy_services(services: dict) -> None:
    for name, service in services.items():
        for dep, spec in service.get("depends_on", {}).items():
            assert dep in services, f"{name} depends on unknown service {dep}"
            condition = spec["condition"]
            if condition == "service_healthy":
                assert "healthcheck" in services[dep], f"{name} waits for {dep}, which has no healthcheck"
            else:
                assert (dep, condition) == ("airflow-init", "service_completed_successfully"), name
    assert services["connect"]["depends_on"]["kafka"]["condition"] == "service_healthy"
    assert "/connector-plugins" in " ".join(services["connect"]["healthcheck"]["test"])
    for name in AIRFLOW_SERVICES[1:]:
        deps = services[name]["depends_on"]
        assert deps["airflow-init"]["condition"] == "service_completed_successfully", name
        assert deps["control-db"]["condition"] == "service_healthy", name
