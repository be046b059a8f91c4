"""A `snapshot` task killed in the middle of the initial load, then cleared and rerun: the migration
still ends identical, with one slot and one pair of connectors."""

from __future__ import annotations

import time

import psycopg
import pytest
from harness import (
    SOURCE_PORT,
    TARGET_PORT,
    ConcurrentWriter,
    airflow_api,
    conninfo,
    endpoint,
    fail_active_runs,
    forget_migration,
    task_states,
    wait_until_identical,
)

from pgmigrate.airflow_api import put_postgres_connection
from pgmigrate.connect_client import ConnectClient
from pgmigrate.databases import drop_database, recreate_database
from pgmigrate.endpoints import PgEndpoint
from pgmigrate.naming import MigrationNames
from pgmigrate.teardown import teardown_migration

MIGRATION_ID = "e2e-rerun"
CONNECT = ConnectClient("http://127.0.0.1:8083")


@pytest.fixture
def rerun_databases():
    api = airflow_api()
    fail_active_runs(api, MIGRATION_ID)
    for migration_id in (MIGRATION_ID,):
        forget_migration(migration_id)
    recreate_database(endpoint(SOURCE_PORT, "rerun_src"))
    recreate_database(endpoint(TARGET_PORT, "rerun_dst"))
    with psycopg.connect(conninfo(SOURCE_PORT, "rerun_src"), autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE events (id bigint PRIMARY KEY, kind int NOT NULL, payload text NOT NULL);"
            "INSERT INTO events SELECT g, g % 7, repeat(md5(g::text), 4) FROM generate_series(1, 1500000) g;"
            "CREATE TABLE counters (name text PRIMARY KEY, value bigint NOT NULL);"
            "INSERT INTO counters SELECT 'c' || g, 0 FROM generate_series(1, 50) g;"
        )
    put_postgres_connection(api, "rerun_source", endpoint(SOURCE_PORT, "rerun_src"))
    put_postgres_connection(api, "rerun_target", endpoint(TARGET_PORT, "rerun_dst"))
    yield api
    teardown_migration(
        CONNECT,
        "127.0.0.1:9092",
        PgEndpoint("127.0.0.1", SOURCE_PORT, "rerun_src", "postgres", "postgres"),
        MigrationNames(MIGRATION_ID),
    )
    drop_database(endpoint(SOURCE_PORT, "rerun_src"))
    drop_database(endpoint(TARGET_PORT, "rerun_dst"))


def changes(i: int) -> list[tuple[str, tuple]]:
    return [
        ("INSERT INTO events VALUES (%s, %s, 'live')", (2_000_000 + i, i % 7)),
        ("UPDATE events SET kind = kind + 100 WHERE id = %s", (1 + (i * 7919) % 1_500_000,)),
        ("UPDATE counters SET value = value + 1 WHERE name = %s", (f"c{1 + i % 50}",)),
    ]


def wait_for(predicate, timeout: float, what: str, poll: float = 0.3):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def test_snapshot_killed_midway_then_rerun_is_identical(rerun_databases):
    api = rerun_databases
    api.request("PATCH", "/dags/pg_migration", json={"is_paused": False})
    fail_active_runs(api, MIGRATION_ID)
    writer = ConcurrentWriter("rerun_src", changes, rate=20).start()
    try:
        run_id = api.trigger_dag(
            "pg_migration",
            conf={
                "migration_id": MIGRATION_ID,
                "source_conn_id": "rerun_source",
                "target_conn_id": "rerun_target",
                "copy_parallelism": 1,
            },
        )
        wait_for(lambda: task_states(api, run_id).get("snapshot") == "running", 300, "snapshot to start")
        time.sleep(1.5)  # into the COPY
        api.request(
            "PATCH", f"/dags/pg_migration/dagRuns/{run_id}/taskInstances/snapshot", json={"new_state": "failed"}
        )
        wait_for(lambda: api.get_dag_run("pg_migration", run_id)["state"] == "failed", 120, "the run to fail")
        assert task_states(api, run_id)["deploy_connectors"] in ("upstream_failed", None)

        api.request(
            "POST",
            "/dags/pg_migration/clearTaskInstances",
            json={
                "dag_run_id": run_id,
                "task_ids": ["snapshot"],
                "include_downstream": True,
                "dry_run": False,
                "only_failed": False,
            },
        )
        wait_for(lambda: api.get_dag_run("pg_migration", run_id)["state"] != "failed", 60, "the run to restart")
        run = api.wait_for_dag_run("pg_migration", run_id, timeout=900, poll_seconds=3)
    finally:
        writer.stop()
    assert run["state"] == "success", task_states(api, run_id)
    assert writer.errors == []

    assert wait_until_identical("rerun_src", "rerun_dst", ["public"]) == {}
    names = MigrationNames(MIGRATION_ID)
    with psycopg.connect(conninfo(SOURCE_PORT, "postgres"), autocommit=True) as conn:
        slots = conn.execute("SELECT slot_name FROM pg_replication_slots WHERE slot_name LIKE 'pgmigrate_e2e_rerun%'")
        assert slots.fetchall() == [(names.slot,)]
    connectors = sorted(c for c in CONNECT.list_connectors() if c.startswith(f"pgmigrate-{MIGRATION_ID}-"))
    assert connectors == [names.sink_connector, names.source_connector]
