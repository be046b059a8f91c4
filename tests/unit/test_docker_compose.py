"""Static checks of docker-compose.yml: the Docker stack must keep the local stack's topology.

No Docker engine is needed: the compose file, Dockerfiles and pom are parsed, not run. The local-script
stack (make stack-up) is what CI runs; these tests stop the compose file from drifting away from it
(ports, versions, Connect settings, connection ids), in both of its topologies: the default (single node)
and the `cluster` profile with include/docker/cluster.env, each read the way compose reads it (the file's
${VAR:-default} variables resolved, only the profile's services kept).
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
LOCAL_KAFKA_PROPERTIES = REPO / "include" / "stack" / "kafka-server.properties"
STACK_COMMON = REPO / "scripts" / "stack.d" / "common.sh"
STACK_KAFKA = REPO / "scripts" / "stack.d" / "kafka.sh"
CLUSTER_ENV = DOCKER_DIR / "cluster.env"
CONNECT_RUN = DOCKER_DIR / "connect-run.sh"
REQUIREMENTS = REPO / "requirements.txt"


def _stack_ports() -> dict[str, int]:
    """The local stack's fixed interface: the NAME_PORT=1234 settings of scripts/stack.d/common.sh."""
    return {k: int(v) for k, v in re.findall(r"^(\w+_PORT)=(\d+)\s*$", STACK_COMMON.read_text(), re.MULTILINE)}


PORTS = _stack_ports()
# Host ports per compose service: the local stack's port for the same part (scripts/stack.d/common.sh).
EXPECTED_HOST_PORTS = {
    "source-db": {PORTS["SOURCE_PORT"]},
    "target-db": {PORTS["TARGET_PORT"]},
    "control-db": {PORTS["CONTROL_PORT"]},
    "kafka": {PORTS["KAFKA_PORT"]},
    "connect": {PORTS["CONNECT_PORT"]},
    "pgbouncer": {PORTS["PGBOUNCER_PORT"]},
    "pgbouncer2": {PORTS["PGBOUNCER2_PORT"]},
    "airflow-api-server": {PORTS["AIRFLOW_PORT"]},
}
# The cluster profile adds the local cluster profile's brokers, second Connect worker and Redis.
EXPECTED_CLUSTER_HOST_PORTS = EXPECTED_HOST_PORTS | {
    "kafka2": {PORTS["KAFKA2_PORT"]},
    "kafka3": {PORTS["KAFKA3_PORT"]},
    "connect2": {PORTS["CONNECT2_PORT"]},
    "redis": {PORTS["REDIS_PORT"]},
}
# Broker service -> (node id, KRaft controller port), as scripts/stack.d/kafka.sh's kafka_nodes.
CLUSTER_BROKERS = {
    "kafka": (1, PORTS["KAFKA_CONTROLLER_PORT"]),
    "kafka2": (2, PORTS["KAFKA2_CONTROLLER_PORT"]),
    "kafka3": (3, PORTS["KAFKA3_CONTROLLER_PORT"]),
}
CONNECT_WORKERS = ("connect",)
CLUSTER_CONNECT_WORKERS = ("connect", "connect2")
# Celery worker service -> the task-log port of the local cluster profile's worker of the same number.
CELERY_WORKERS = {
    "airflow-celery-worker1": PORTS["CELERY_WORKER1_LOG_PORT"],
    "airflow-celery-worker2": PORTS["CELERY_WORKER2_LOG_PORT"],
}
POSTGRES_SERVICES = ("source-db", "target-db", "control-db")
AIRFLOW_SERVICES = (
    "airflow-init",
    "airflow-api-server",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
)
SECRETS_VOLUME = "connect-secrets"
AIRFLOW_IMAGE_PREFIX = "pgmigration-airflow:"


def _interpolate(value, env: dict[str, str]):
    """Resolve compose's ${VAR}, ${VAR:-default} and ${VAR-default} with env, and $$ to $, in every string."""
    if isinstance(value, dict):
        return {key: _interpolate(item, env) for key, item in value.items()}
    if isinstance(value, list):
        return [_interpolate(item, env) for item in value]
    if not isinstance(value, str):
        return value

    def resolve(match: re.Match) -> str:
        if match.group(0) == "$$":
            return "$"
        name, op, default = match.group(1), match.group(2), match.group(3) or ""
        if op == ":-":
            return env.get(name) or default
        if op == "-":
            return env.get(name, default)
        return env.get(name, "")

    return re.sub(r"\$\$|\$\{(\w+)(?:(:?-)([^}]*))?\}", resolve, value)


def _env_file(path: Path) -> dict[str, str]:
    env = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, value = line.split("=", 1)
            env[key.strip()] = value.strip()
    return env


def _resolved(env: dict[str, str]) -> dict:
    """The compose file as compose runs it with env: variables resolved, only the active profiles' services."""
    with COMPOSE.open() as f:
        model = _interpolate(yaml.safe_load(f), env)
    profiles = set(filter(None, env.get("COMPOSE_PROFILES", "").split(",")))
    model["services"] = {
        name: svc
        for name, svc in model["services"].items()
        if not svc.get("profiles") or profiles & set(svc["profiles"])
    }
    return model


@pytest.fixture(scope="module")
def compose() -> dict:
    """The default topology: no profile, no variables set (every ${VAR:-default} takes its default)."""
    return _resolved({})


@pytest.fixture(scope="module")
def services(compose: dict) -> dict:
    return compose["services"]


@pytest.fixture(scope="module")
def cluster_env() -> dict[str, str]:
    return _env_file(CLUSTER_ENV)


@pytest.fixture(scope="module")
def cluster(cluster_env: dict[str, str]) -> dict:
    """The cluster topology: `docker compose --env-file include/docker/cluster.env --profile cluster`."""
    assert cluster_env["COMPOSE_PROFILES"] == "cluster"
    return _resolved(cluster_env)


@pytest.fixture(scope="module")
def cluster_services(cluster: dict) -> dict:
    return cluster["services"]


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


def _mounts(service: dict) -> dict[str, tuple[str, str]]:
    """A service's mounts (short syntax): target -> (source, mode)."""
    mounts = {}
    for entry in service.get("volumes", []):
        parts = str(entry).split(":")
        mounts[parts[1]] = (parts[0], parts[2] if len(parts) > 2 else "rw")
    return mounts


def _stack_replication() -> dict[str, dict[str, str]]:
    """Per local profile, what scripts/stack.d/kafka.sh renders for @REPLICATION@ and @MIN_INSYNC@."""
    text = STACK_KAFKA.read_text()
    values = {"single": {}, "cluster": {}}
    for function, placeholder in (("kafka_replication", "REPLICATION"), ("kafka_min_insync", "MIN_INSYNC")):
        match = re.search(rf"{function}\(\) \{{ if .*? then echo (\d+); else echo (\d+); fi; \}}", text)
        assert match, f"scripts/stack.d/kafka.sh has no one-line {function}"
        values["cluster"][placeholder], values["single"][placeholder] = match.group(1), match.group(2)
    return values


def _render_docker_connect(service: dict) -> dict[str, str]:
    """include/docker/connect-distributed.properties as connect-run.sh renders it for this worker."""
    env = _env(service)
    run = CONNECT_RUN.read_text()
    rendered = {}
    for key, value in _properties(CONNECT_PROPERTIES).items():
        for placeholder, variable in re.findall(r'-e "s#@(\w+)@#\$\{(\w+)\}#g"', run):
            value = value.replace(f"@{placeholder}@", env[variable])
        rendered[key] = value
    return rendered


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
def test_connect_uses_the_file_config_provider_on_the_secrets_directory(services: dict) -> None:
    props = _render_docker_connect(services["connect"])
    assert props["config.providers"] == "file,dir"  # dir: worker-resolved passwords (worker_secrets_dir)
    assert props["config.providers.file.class"] == "org.apache.kafka.common.config.provider.FileConfigProvider"
    assert props["config.providers.file.param.allowed.paths"] == "/opt/secrets"
    assert props["plugin.path"] == "/opt/connect-plugins"
    assert props["listeners"] == "http://0.0.0.0:8083"
    assert props["bootstrap.servers"] == "kafka:29092"
    assert "kafka:29092" in _env(services["kafka"])["KAFKA_ADVERTISED_LISTENERS"]
    # The image renders its template at start (connect-run.sh is the CMD), from the three variables compose sets.
    dockerfile = CONNECT_DOCKERFILE.read_text()
    assert 'CMD ["/opt/connect/connect-run.sh"]' in dockerfile
    assert "COPY include/docker/connect-distributed.properties /opt/connect/" in dockerfile
    assert "!include/docker/connect-run.sh" in (DOCKER_DIR / "connect.Dockerfile.dockerignore").read_text()
    assert "exec /opt/kafka/bin/connect-distributed.sh" in CONNECT_RUN.read_text()


@pytest.mark.unit
@pytest.mark.parametrize("profile", ["single", "cluster"])
def test_connect_worker_settings_match_the_local_stack(
    profile: str, services: dict, cluster_services: dict, cluster_env: dict[str, str]
) -> None:
    active = services if profile == "single" else cluster_services
    workers = CONNECT_WORKERS if profile == "single" else CLUSTER_CONNECT_WORKERS
    replication = _stack_replication()[profile]["REPLICATION"]
    # The local template as scripts/stack.d/kafka.sh renders it for the same profile.
    local = {k: v.replace("@REPLICATION@", replication) for k, v in _properties(LOCAL_CONNECT_PROPERTIES).items()}
    # Everything but addresses and paths must agree, or connectors behave differently per stack.
    shared = [
        "group.id",
        "scheduled.rebalance.max.delay.ms",
        "key.converter",
        "value.converter",
        "key.converter.schemas.enable",
        "value.converter.schemas.enable",
        "offset.storage.topic",
        "offset.storage.partitions",
        "config.storage.topic",
        "status.storage.topic",
        "offset.flush.interval.ms",
        "connector.client.config.override.policy",
        "offset.storage.replication.factor",
        "config.storage.replication.factor",
        "status.storage.replication.factor",
        "config.providers",
        "config.providers.file.class",
        "config.providers.dir.class",
        "rest.extension.classes",
    ]
    brokers = [name for name in active if name in CLUSTER_BROKERS]
    assert sorted(brokers) == (["kafka"] if profile == "single" else sorted(CLUSTER_BROKERS))
    for name in workers:
        docker = _render_docker_connect(active[name])
        assert {k: docker.get(k) for k in shared} == {k: local.get(k) for k in shared}, name
        assert "@" not in "".join(docker.values()), f"{name}: a placeholder is left unrendered"
        # Every broker's in-network listener, and the address the other workers forward REST calls to.
        assert set(docker["bootstrap.servers"].split(",")) == {f"{broker}:29092" for broker in brokers}, name
        assert docker["rest.advertised.host.name"] == name
        assert docker["rest.advertised.port"] == "8083"
    # The file provider reads the secrets directory only, on both stacks.
    assert local["config.providers.file.param.allowed.paths"] == "@STATE@/secrets"
    assert docker["config.providers.dir.param.allowed.paths"] == "/opt/worker-secrets"
    assert local["config.providers.dir.param.allowed.paths"] == "@STATE@/worker-secrets"
    assert {_properties(CONNECT_PROPERTIES)["group.id"]} == {local["group.id"]}


@pytest.mark.unit
@pytest.mark.parametrize("profile", ["single", "cluster"])
def test_secrets_volume_is_shared_by_airflow_and_every_connect_worker(
    profile: str, compose: dict, cluster: dict
) -> None:
    model = compose if profile == "single" else cluster
    active = model["services"]
    workers = CONNECT_WORKERS if profile == "single" else CLUSTER_CONNECT_WORKERS
    allowed = _properties(CONNECT_PROPERTIES)["config.providers.file.param.allowed.paths"]
    assert SECRETS_VOLUME in model["volumes"]
    # The deploy task writes each migration's password file into the kafka_connect connection's secrets_dir ...
    conn = json.loads(_env(active["airflow-scheduler"])["AIRFLOW_CONN_KAFKA_CONNECT"])
    assert conn["extra"]["secrets_dir"] == allowed
    # ... in whichever Airflow container runs the task (the scheduler on LocalExecutor, Celery workers on the
    # cluster; every Airflow container mounts it), read-write ...
    airflow = [name for name, svc in active.items() if svc.get("image", "").startswith(AIRFLOW_IMAGE_PREFIX)]
    task_runners = {"airflow-scheduler"} if profile == "single" else set(CELERY_WORKERS)
    assert task_runners <= set(airflow)
    for name in airflow:
        assert _mounts(active[name])[allowed] == (SECRETS_VOLUME, "rw"), name
    # ... and every worker resolves the ${file:...} reference at the same path, read-only. The file is 0600 and
    # owned by the task's uid, so the workers run as that uid.
    airflow_user = active["airflow-scheduler"]["user"]
    for name in workers:
        assert _mounts(active[name])[allowed] == (SECRETS_VOLUME, "ro"), name
        assert active[name]["user"] == airflow_user, name
        assert active[name]["depends_on"]["connect-secrets"]["condition"] == "service_completed_successfully"
    # connect-secrets (as root) hands the volume to that uid and seeds it, like connect_secrets() in kafka.sh.
    init = active["connect-secrets"]
    assert init["user"] == "0:0"
    assert _mounts(init)[allowed] == (SECRETS_VOLUME, "rw")
    assert _env(init)["SECRETS_OWNER"] == airflow_user
    seed_source, _ = _mounts(init)["/seed"]
    script = " ".join(init["command"])
    assert f'chown "$SECRETS_OWNER" {allowed} ' in script
    for seeded in ("postgres.properties", "connect-rest.password"):
        assert (REPO / seed_source / seeded).is_file(), seeded
        assert f"/seed/{seeded}" in script and f"{allowed}/{seeded}" in script, seeded
    assert _properties(REPO / seed_source / "postgres.properties").get("password") == "postgres"


@pytest.mark.unit
@pytest.mark.parametrize("profile", ["single", "cluster"])
def test_connect_rest_authentication_on_every_worker(profile: str, services: dict, cluster_services: dict) -> None:
    active = services if profile == "single" else cluster_services
    workers = CONNECT_WORKERS if profile == "single" else CLUSTER_CONNECT_WORKERS
    conn = json.loads(_env(active["airflow-scheduler"])["AIRFLOW_CONN_KAFKA_CONNECT"])
    local = json.loads(LOCAL_CONNECTIONS.read_text())["kafka_connect"]
    # The same login as the local stack (scripts/stack.d/common.sh's CONNECT_USER/CONNECT_PASSWORD).
    assert (conn["login"], conn["password"]) == (local["login"], local["password"])
    assert (conn["conn_type"], conn["host"], conn["port"]) == ("http", "connect", 8083)
    seed_source, _ = _mounts(active["connect-secrets"])["/seed"]
    for name in workers:
        worker = active[name]
        props = _render_docker_connect(worker)
        assert props["rest.extension.classes"] == (
            "org.apache.kafka.connect.rest.basic.auth.extension.BasicAuthSecurityRestExtension"
        )
        jaas_path = re.search(r"-Djava\.security\.auth\.login\.config=(\S+)", _env(worker)["KAFKA_OPTS"]).group(1)
        jaas_source, jaas_mode = _mounts(worker)[jaas_path]
        assert jaas_mode == "ro"
        jaas = (REPO / jaas_source).read_text()
        assert "PropertyFileLoginModule required" in jaas
        password_file = re.search(r'file="([^"]+)"', jaas).group(1)
        # The password file is in the secrets volume (seeded by connect-secrets) and holds the connection's login.
        directory, file_name = password_file.rsplit("/", 1)
        assert _mounts(worker)[directory][0] == SECRETS_VOLUME, name
        assert (REPO / seed_source / file_name).read_text().strip() == f"{conn['login']}: {conn['password']}"
        assert f"{conn['login']}:{conn['password']}" in " ".join(worker["healthcheck"]["test"]), name


@pytest.mark.unit
def test_airflow_connections_cover_the_local_stack_ids(compose: dict) -> None:
    env = {k: str(v) for k, v in compose["x-airflow-common"]["environment"].items()}
    conn_ids = {k.removeprefix("AIRFLOW_CONN_").lower() for k in env if k.startswith("AIRFLOW_CONN_")}
    local_ids = set(json.loads(LOCAL_CONNECTIONS.read_text()))
    assert conn_ids == local_ids
    assert env["AIRFLOW_CONN_MIGRATION_SOURCE"] == "postgres://postgres:postgres@source-db:5432/shop"
    assert env["AIRFLOW_CONN_MIGRATION_TARGET"] == "postgres://postgres:postgres@target-db:5432/shop"
    assert env["AIRFLOW_CONN_MIGRATION_CONTROL"].endswith("@control-db:5432/migration_control")
    kafka = json.loads(env["AIRFLOW_CONN_KAFKA_DEFAULT"])
    assert kafka["conn_type"] == "kafka"
    assert kafka["extra"] == {
        "bootstrap.servers": "kafka:29092",
        "topic.replication.factor": 1,
        "topic.min.insync.replicas": 1,
    }
    assert env["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].endswith("@control-db:5432/airflow")
    assert not [name for name, svc in compose["services"].items() if svc.get("profiles")]


@pytest.mark.unit
@pytest.mark.parametrize("profile", ["single", "cluster"])
def test_dependencies_wait_for_healthy_services(profile: str, services: dict, cluster_services: dict) -> None:
    active = services if profile == "single" else cluster_services
    for name, service in active.items():
        for dep, spec in service.get("depends_on", {}).items():
            # A service always running must not wait for one of a profile (compose rejects the default topology).
            assert dep in active, f"{name} depends on {dep}, which does not run in the {profile} topology"
            condition = spec["condition"]
            if condition == "service_healthy":
                assert "healthcheck" in active[dep], f"{name} waits for {dep}, which has no healthcheck"
            else:
                assert condition == "service_completed_successfully", name
                assert dep in ("airflow-init", "connect-secrets"), name
    for name in CONNECT_WORKERS if profile == "single" else CLUSTER_CONNECT_WORKERS:
        assert active[name]["depends_on"]["kafka"]["condition"] == "service_healthy"
        assert "/connector-plugins" in " ".join(active[name]["healthcheck"]["test"])
    airflow = [name for name in active if name.startswith("airflow-") and name != "airflow-init"]
    for name in airflow:
        deps = active[name]["depends_on"]
        assert deps["airflow-init"]["condition"] == "service_completed_successfully", name
        assert deps["control-db"]["condition"] == "service_healthy", name


@pytest.mark.unit
def test_cluster_profile_host_ports_match_the_local_cluster_profile(cluster_services: dict) -> None:
    published = {name: _host_ports(svc) for name, svc in cluster_services.items() if _host_ports(svc)}
    assert published == EXPECTED_CLUSTER_HOST_PORTS


@pytest.mark.unit
@pytest.mark.parametrize("profile", ["single", "cluster"])
def test_brokers_mirror_the_local_kafka_server_properties(profile: str, services: dict, cluster_services: dict) -> None:
    active = services if profile == "single" else cluster_services
    brokers = {name: CLUSTER_BROKERS[name] for name in active if name in CLUSTER_BROKERS}
    rendered = _stack_replication()[profile]
    expected_voters = {node: (name, controller) for name, (node, controller) in brokers.items()}
    template = _properties(LOCAL_KAFKA_PROPERTIES)
    for name, (node, controller) in brokers.items():
        env = _env(active[name])
        assert env["KAFKA_NODE_ID"] == str(node), name
        # The quorum is every broker of the topology, on the local stack's controller ports.
        voters = {}
        for voter in env["KAFKA_CONTROLLER_QUORUM_VOTERS"].split(","):
            node_id, address = voter.split("@")
            host, port = address.rsplit(":", 1)
            voters[int(node_id)] = (host, int(port))
        assert voters == expected_voters, name
        assert f"CONTROLLER://0.0.0.0:{controller}" in env["KAFKA_LISTENERS"].split(","), name
        advertised = set(env["KAFKA_ADVERTISED_LISTENERS"].split(","))
        assert advertised == {
            f"PLAINTEXT://{name}:29092",
            f"PLAINTEXT_HOST://127.0.0.1:{min(_host_ports(active[name]))}",
        }
        # Every setting of the local template, as the image's KAFKA_* variable, with the profile's replication.
        for key, value in template.items():
            variable = "KAFKA_" + key.upper().replace(".", "_")
            assert variable in env, f"{name} lacks {variable} ({key})"
            if key == "listener.security.protocol.map":
                # The host's listener comes on top: containers and the host reach a broker by different names.
                assert set(value.split(",")) <= set(env[variable].split(",")), name
            elif "@" not in value and key not in ("listeners", "advertised.listeners"):
                assert env[variable] == value, f"{name}: {variable}"
            elif value in ("@REPLICATION@", "@MIN_INSYNC@"):
                assert env[variable] == rendered[value.strip("@")], f"{name}: {variable}"
        assert env["CLUSTER_ID"] == _env(active["kafka"])["CLUSTER_ID"], name
        # Healthy only when the cluster has all of the topology's brokers (like kafka_ready in kafka.sh).
        health = " ".join(active[name]["healthcheck"]["test"])
        assert re.search(rf"-ge {len(brokers)}\b", health), name
    assert len(brokers) == (1 if profile == "single" else 3)


@pytest.mark.unit
def test_cluster_profile_runs_airflow_on_celery_with_two_workers(cluster_services: dict) -> None:
    common = _env(cluster_services["airflow-scheduler"])
    assert common["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    broker = re.fullmatch(r"redis://([\w-]+):(\d+)/0", common["AIRFLOW__CELERY__BROKER_URL"])
    assert broker and broker.group(1) == "redis" and int(broker.group(2)) == PORTS["REDIS_PORT"]
    assert common["AIRFLOW__CELERY__RESULT_BACKEND"].endswith("@control-db:5432/airflow")
    assert "healthcheck" in cluster_services["redis"]
    # kafka_default names all three brokers with the cluster's replication (3 and 2).
    kafka = json.loads(common["AIRFLOW_CONN_KAFKA_DEFAULT"])["extra"]
    replication = _stack_replication()["cluster"]
    assert set(kafka["bootstrap.servers"].split(",")) == {f"{name}:29092" for name in CLUSTER_BROKERS}
    assert kafka["topic.replication.factor"] == int(replication["REPLICATION"])
    assert kafka["topic.min.insync.replicas"] == int(replication["MIN_INSYNC"])
    for name, log_port in CELERY_WORKERS.items():
        worker = cluster_services[name]
        env = _env(worker)
        assert worker["command"][:2] == ["celery", "worker"], name
        assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor", name
        assert env["AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT"] == str(log_port), name
        # The api-server fetches task logs from the worker's hostname.
        assert worker["hostname"] == name
        for dep in ("redis", "connect", "connect2", "source-db", "target-db", "pgbouncer", "pgbouncer2"):
            assert worker["depends_on"][dep]["condition"] == "service_healthy", f"{name} -> {dep}"


@pytest.mark.unit
def test_cluster_only_services_stay_out_of_the_default_topology(services: dict, cluster_services: dict) -> None:
    extra = set(cluster_services) - set(services)
    assert extra == {"kafka2", "kafka3", "connect2", "redis", *CELERY_WORKERS}
    assert set(services) <= set(cluster_services)
