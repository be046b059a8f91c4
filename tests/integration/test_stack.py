"""The local stack: every part real, answering on its fixed port; up is idempotent; down leaves
nothing behind. Runs against the stack that `make test` started."""

from __future__ import annotations

import json
import os
import re
import subprocess
import uuid
from pathlib import Path

import psycopg2
import pytest
import requests
from confluent_kafka.admin import AdminClient, NewTopic

from devtools.local_stack import CONNECT_AUTH, CONNECT_URL
from pgmigrate.cli.airflow_api import AirflowApiClient

REPO = Path(__file__).resolve().parents[2]
STACK = str(REPO / "scripts" / "stack.sh")
PG_PORTS = {"source": 5433, "target": 5434, "control": 5435}
# PgBouncer instances: name (state directory, pid file and log name) -> (port, max_client_conn).
PGBOUNCERS = {"pgbouncer": (6432, 500), "pgbouncer2": (6433, 100)}


def pg_connect(port: int, dbname: str = "postgres", password: str = "postgres"):
    return psycopg2.connect(
        host="127.0.0.1", port=port, user="postgres", password=password, dbname=dbname, connect_timeout=5
    )


def test_stack_up_again_starts_nothing():
    result = subprocess.run([STACK, "up"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "starting" not in result.stdout and "initdb" not in result.stdout, result.stdout
    assert "stack up in" in result.stdout


def test_status_shows_every_part_up_with_memory(stack):
    parts = [
        "postgres-source",
        "postgres-target",
        "postgres-control",
        "kafka",
        "kafka-connect",
        "pgbouncer",
        "pgbouncer2",
        "airflow-api-server",
        "airflow-scheduler",
        "airflow-dag-processor",
        "airflow-triggerer",
    ]
    for part in parts:
        line = next((ln for ln in stack.splitlines() if ln.split()[:1] == [part]), None)
        assert line is not None, f"{part} missing from status:\n{stack}"
        fields = line.split()
        assert fields[1] == "up", line
        assert int(fields[-2]) > 0, f"no resident memory reported: {line}"
    total = re.search(r"^TOTAL\s+(\d+) MiB", stack, re.M)
    assert total and int(total.group(1)) > 0, stack


@pytest.mark.parametrize("name,port", sorted(PG_PORTS.items()))
def test_postgres_clusters_are_logical_and_password_protected(name, port):
    with pg_connect(port) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT current_setting('wal_level'), current_setting('max_replication_slots')::int, "
            "current_setting('max_wal_senders')::int, current_setting('server_version_num')::int"
        )
        wal_level, slots, senders, version = cur.fetchone()
    assert wal_level == "logical"
    assert slots >= 10 and senders >= 10
    assert version // 10000 == 15
    with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
        pg_connect(port, password="not-the-password")


def test_databases_created_for_connections():
    for port, dbname in [(5433, "shop"), (5434, "shop"), (5435, "airflow"), (5435, "migration_control")]:
        with pg_connect(port, dbname) as conn, conn.cursor() as cur:
            cur.execute("SELECT current_database()")
            assert cur.fetchone()[0] == dbname


def test_kafka_broker_is_kraft_and_accepts_topics():
    admin = AdminClient({"bootstrap.servers": "127.0.0.1:9092"})
    topic = f"stack-test-{uuid.uuid4().hex[:8]}"
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])[topic].result(timeout=30)
    try:
        metadata = admin.list_topics(timeout=10)
        assert topic in metadata.topics
        assert [b.port for b in metadata.brokers.values()] == [9092]
        # KRaft: the controller quorum is described by the broker itself; there is no ZooKeeper.
        quorum = admin.describe_cluster().result(timeout=10)
        assert quorum.controller is not None
    finally:
        admin.delete_topics([topic])[topic].result(timeout=30)
    meta = (REPO / ".stack" / "kafka" / "data" / "meta.properties").read_text()
    assert "cluster.id" in meta and "node.id=1" in meta


def test_connect_lists_both_debezium_plugins_at_pinned_version():
    plugins = requests.get(f"{CONNECT_URL}/connector-plugins", auth=CONNECT_AUTH, timeout=10).json()
    versions = {p["class"]: p["version"] for p in plugins}
    assert versions.get("io.debezium.connector.postgresql.PostgresConnector") == "3.7.0.Final"
    assert versions.get("io.debezium.connector.jdbc.JdbcSinkConnector") == "3.6.0.Final"
    root = requests.get(f"{CONNECT_URL}/", auth=CONNECT_AUTH, timeout=10).json()
    assert root["version"] == "4.1.1"


def test_connect_refuses_a_rest_call_without_its_credentials():
    """Connect's REST API deploys connectors and reads their configs: basic authentication on every call."""
    assert requests.get(f"{CONNECT_URL}/connectors", timeout=10).status_code == 401
    assert requests.get(f"{CONNECT_URL}/connectors", auth=("pgmigrate", "wrong"), timeout=10).status_code == 401
    assert requests.get(f"{CONNECT_URL}/connectors", auth=CONNECT_AUTH, timeout=10).status_code == 200


def _admin_show(port: int, what: str) -> list[dict]:
    admin = psycopg2.connect(host="127.0.0.1", port=port, user="postgres", password="postgres", dbname="pgbouncer")
    admin.autocommit = True
    try:
        with admin.cursor() as cur:
            cur.execute(f"SHOW {what}")
            columns = [d[0] for d in cur.description]
            return [dict(zip(columns, row, strict=False)) for row in cur.fetchall()]
    finally:
        admin.close()


@pytest.mark.parametrize("name", sorted(PGBOUNCERS))
def test_pgbouncer_routes_every_database_to_source(name):
    port, max_client_conn = PGBOUNCERS[name]
    conn = psycopg2.connect(host="127.0.0.1", port=port, user="postgres", password="postgres", dbname="shop")
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT inet_server_port(), current_database()")
            assert cur.fetchone() == (5433, "shop")
    finally:
        conn.close()
    shop = next(r for r in _admin_show(port, "DATABASES") if r["name"] == "shop")
    assert shop["port"] == 5433
    # Each instance has its own state: rendered ini including its own routes file, pid file, log.
    state = REPO / ".stack"
    config = {r["key"]: r["value"] for r in _admin_show(port, "CONFIG")}
    assert config["listen_port"] == str(port)
    assert config["max_client_conn"] == str(max_client_conn)
    assert config["pool_mode"] == "transaction"
    assert config["auth_type"] == "scram-sha-256"
    assert config["logfile"] == str(state / "logs" / f"{name}.log")
    assert f"%include {state / name / 'routes.ini'}" in (state / name / "pgbouncer.ini").read_text()
    assert (state / name / "routes.ini").is_file()
    pid = int((state / "pids" / f"{name}.pid").read_text().split()[0])
    assert running(pid)
    assert Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[-2] == str(state / name / "pgbouncer.ini").encode()


def test_airflow_health_login_and_connections():
    health = requests.get("http://127.0.0.1:8080/api/v2/monitor/health", timeout=10).json()
    for component in ("metadatabase", "scheduler", "triggerer", "dag_processor"):
        assert health[component]["status"] == "healthy", health
    api = AirflowApiClient("http://127.0.0.1:8080", "admin", "admin")
    for conn_id, conn_type in [
        ("migration_source", "postgres"),
        ("migration_target", "postgres"),
        ("migration_control", "postgres"),
        ("kafka_connect", "http"),
        ("kafka_default", "kafka"),
        ("pgbouncer_admin", "postgres"),
        ("pgbouncer_admin_2", "postgres"),
    ]:
        assert api.request("GET", f"/connections/{conn_id}")["conn_type"] == conn_type
    for conn_id, port, name in [("pgbouncer_admin", 6432, "pgbouncer"), ("pgbouncer_admin_2", 6433, "pgbouncer2")]:
        conn = api.request("GET", f"/connections/{conn_id}")
        assert (conn["host"], conn["port"], conn["schema"]) == ("127.0.0.1", port, "pgbouncer")
        assert json.loads(conn["extra"])["routes_file"] == str(REPO / ".stack" / name / "routes.ini")
    denied = requests.post("http://127.0.0.1:8080/auth/token", json={"username": "admin", "password": "x"}, timeout=10)
    assert denied.status_code == 401


def test_airflow_cli_wrapper_reports_no_import_errors():
    result = subprocess.run(
        [str(REPO / "scripts" / "airflow"), "dags", "list-import-errors", "-o", "json"],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1] or "[]") == [], result.stdout


def test_platform_health_dag_runs_on_the_scheduler():
    api = AirflowApiClient("http://127.0.0.1:8080", "admin", "admin")
    # The DAG processor may not have parsed the file yet right after a fresh start.
    api.request("PATCH", "/dags/platform_health", json={"is_paused": False})
    run_id = api.trigger_dag("platform_health")
    run = api.wait_for_dag_run("platform_health", run_id, timeout=300)
    states = {(t["task_id"], t.get("map_index")): t["state"] for t in api.task_instances("platform_health", run_id)}
    assert run["state"] == "success", states
    assert len(states) == 4 and set(states.values()) == {"success"}


def test_failed_start_prints_log_tail_and_fix(tmp_path_factory):
    """A second stack in another state dir collides on port 5433: it must say so and exit non-zero."""
    state = REPO / ".stack" / f"collision-test-{uuid.uuid4().hex[:6]}"
    env = dict(os.environ, STACK_STATE_DIR=str(state), STACK_READY_TIMEOUT="20")
    try:
        result = subprocess.run([STACK, "up"], capture_output=True, text=True, timeout=180, env=env)
    finally:
        subprocess.run(["rm", "-rf", str(state)], check=False)
    assert result.returncode != 0
    assert "last 50 lines" in result.stderr
    assert "5433" in result.stderr


@pytest.mark.stack_teardown
def test_stack_down_leaves_no_project_process():
    pid_files = list((REPO / ".stack" / "pids").glob("*.pid"))
    pids = [int(p.read_text().split()[0]) for p in pid_files]
    for data in PG_PORTS:
        pidfile = REPO / ".stack" / "pg" / data / "postmaster.pid"
        pids.append(int(pidfile.read_text().split()[0]))
    assert pids, "the stack recorded no pids"

    result = subprocess.run([STACK, "down"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr

    alive = [pid for pid in pids if running(pid)]
    assert alive == [], f"still running after stack down: {alive}"
    leftovers = project_processes()
    assert leftovers == [], f"project processes left behind: {leftovers}"


def running(pid: int) -> bool:
    """Alive and not a zombie (an exited daemon whose parent, e.g. a sandbox's PID 1, never reaps it)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "State:\tZ" not in status


def project_processes() -> list[str]:
    """Processes (other than this test run's own ancestry) that run from or for this repo's stack."""
    marker = str(REPO / ".stack").encode()
    mine = set()
    pid = os.getpid()
    while pid > 1:
        mine.add(pid)
        pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) in mine or not running(int(proc.name)):
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
            environ = (proc / "environ").read_bytes()
        except OSError:
            continue
        if marker in cmdline or marker in environ:
            command = cmdline.replace(b"\0", b" ").decode(errors="replace")[:120]
            found.append(f"{proc.name}: {command}")
    return found
