"""Bad input: each run fails in `preflight` with a message that names the problem and the fix, and
leaves no connector, slot or publication behind."""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

import psycopg
import pytest
from harness import (
    SOURCE_PORT,
    TARGET_PORT,
    airflow_api,
    conninfo,
    endpoint,
    run_dag,
    task_log,
)

from devtools.databases import drop_database, recreate_database
from devtools.local_stack import connect_client
from pgmigrate.cli.airflow_api import AirflowApiError, put_postgres_connection

REPO = Path(__file__).resolve().parents[2]
PG_BIN = Path("/usr/lib/postgresql/15/bin")
REPLICA_PORT = 5439


@pytest.fixture(scope="module")
def bad_input_env():
    api = airflow_api()
    recreate_database(endpoint(SOURCE_PORT, "bad_src"))
    recreate_database(endpoint(TARGET_PORT, "bad_dst"))
    with psycopg.connect(conninfo(SOURCE_PORT, "bad_src"), autocommit=True) as conn:
        conn.execute("CREATE TABLE items (id int PRIMARY KEY, v text); CREATE TABLE keyless (a int, b text);")
    put_postgres_connection(api, "bad_source", endpoint(SOURCE_PORT, "bad_src"))
    put_postgres_connection(api, "bad_target", endpoint(TARGET_PORT, "bad_dst"))
    put_postgres_connection(api, "bad_password", endpoint(SOURCE_PORT, "bad_src", password="wrong-password"))
    replica = start_wal_level_replica_cluster()
    put_postgres_connection(api, "replica_source", endpoint(REPLICA_PORT, "postgres"))
    yield api
    stop_cluster(replica)
    drop_database(endpoint(SOURCE_PORT, "bad_src"))
    drop_database(endpoint(TARGET_PORT, "bad_dst"))


def start_wal_level_replica_cluster() -> Path:
    """A real PostgreSQL with wal_level=replica: the misconfiguration preflight must catch."""
    data = REPO / ".stack" / f"test-replica-{uuid.uuid4().hex[:6]}"
    data.mkdir(parents=True)
    subprocess.run(["chown", "postgres", str(data)], check=True)
    pwfile = data.parent / f"{data.name}.pw"
    pwfile.write_text("postgres\n")
    pwfile.chmod(0o644)
    as_postgres = ["runuser", "-u", "postgres", "--"]
    subprocess.run(
        [
            *as_postgres,
            str(PG_BIN / "initdb"),
            "-D",
            str(data / "pg"),
            "-U",
            "postgres",
            f"--pwfile={pwfile}",
            "--auth-host=scram-sha-256",
            "--auth-local=peer",
        ],
        check=True,
        capture_output=True,
    )
    pwfile.unlink()
    subprocess.run(
        [
            *as_postgres,
            str(PG_BIN / "pg_ctl"),
            "-D",
            str(data / "pg"),
            "-w",
            "-l",
            str(data / "pg.log"),
            "-o",
            f"-p {REPLICA_PORT} -c wal_level=replica -c listen_addresses=127.0.0.1 -c unix_socket_directories=''",
            "start",
        ],
        check=True,
        capture_output=True,
    )
    return data


def stop_cluster(data: Path) -> None:
    subprocess.run(
        ["runuser", "-u", "postgres", "--", str(PG_BIN / "pg_ctl"), "-D", str(data / "pg"), "-m", "immediate", "stop"],
        check=False,
        capture_output=True,
    )
    subprocess.run(["rm", "-rf", str(data)], check=False)


def test_invalid_migration_id_is_refused_by_the_trigger_form(bad_input_env):
    with pytest.raises(AirflowApiError) as err:
        bad_input_env.trigger_dag("pg_migration", conf={"migration_id": "Bad ID!"})
    assert "migration_id" in str(err.value)


CASES = {
    "missing-conn": ({"source_conn_id": "no_such_connection"}, ["no_such_connection", "does not exist"]),
    "wrong-password": ({"source_conn_id": "bad_password"}, ["password authentication failed", "bad_password"]),
    "unknown-table": ({"tables": ["public.items", "public.nope"]}, ["public.nope"]),
    "keyless-table": ({}, ["keyless", "primary key", "REPLICA IDENTITY FULL"]),
    "wal-replica": ({"source_conn_id": "replica_source"}, ["wal_level", "ALTER SYSTEM SET wal_level = logical"]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_fails_in_preflight_with_the_fix(bad_input_env, case):
    overrides, expected = CASES[case]
    migration_id = f"bad-{case}"
    conf = {"migration_id": migration_id, "source_conn_id": "bad_source", "target_conn_id": "bad_target", **overrides}
    run_id, run, states = run_dag(bad_input_env, conf, timeout=300)
    assert run["state"] == "failed"
    assert states["preflight"] == "failed", states
    log = task_log(bad_input_env, run_id, "preflight")
    for text in expected:
        assert text.lower() in log.lower(), f"{text!r} not in the preflight log:\n{log[-3000:]}"
    # Nothing was created by the failed attempt.
    assert [c for c in connect_client().list_connectors() if migration_id in c] == []
    with psycopg.connect(conninfo(SOURCE_PORT, "bad_src"), autocommit=True) as conn:
        name = f"pgmigrate_{migration_id.replace('-', '_')}"
        assert conn.execute("SELECT 1 FROM pg_replication_slots WHERE slot_name = %s", (name,)).fetchone() is None
        assert conn.execute("SELECT 1 FROM pg_publication WHERE pubname = %s", (name,)).fetchone() is None
