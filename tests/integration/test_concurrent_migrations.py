"""Several migrations at once (issue 16): two databases load and stream side by side, through the scheduler,
triggerer and real connectors; a second run of one of them is refused while the first holds it; then one cuts
over while the other keeps streaming. Each ends identical by the independent comparison, one slot each.

par-b runs with change topics of 4 partitions and 4 sink tasks (kafka.key_partitioning), under writes that change
primary keys (integer and uuid, one keeping a unique column's value) and TRUNCATE a table now and then.
"""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path

import psycopg
import pytest
from harness import (
    BOOTSTRAP,
    CONTROL,
    SOURCE_PORT,
    TARGET_PORT,
    ConcurrentWriter,
    airflow_api,
    conninfo,
    endpoint,
    task_log,
    task_states,
    tear_down_migration,
    wait_until_identical,
)

from devtools.databases import drop_database, recreate_database
from devtools.local_stack import connect_client
from pgmigrate.cli.airflow_api import put_postgres_connection
from pgmigrate.control.run_lease import RunLeaseStore
from pgmigrate.control.state import MigrationStateStore
from pgmigrate.core.endpoints import PgEndpoint
from pgmigrate.core.naming import MigrationNames
from pgmigrate.cutover.routing.switch import PgBouncerRouteSwitch
from pgmigrate.stream.lag import read_sink_offsets

STATE_DIR = Path(__file__).resolve().parents[2] / ".stack"
MIGRATIONS = {"par-a": ("par_a_src", "par_a_dst"), "par-b": ("par_b_src", "par_b_dst")}
CONNECT = connect_client()
PGBOUNCERS = [
    PgBouncerRouteSwitch(
        PgEndpoint("127.0.0.1", port, "pgbouncer", "postgres", "postgres"), STATE_DIR / folder / "routes.ini"
    )
    for port, folder in ((6432, "pgbouncer"), (6433, "pgbouncer2"))
]

SCHEMA = """
CREATE TABLE accounts (id int PRIMARY KEY, balance bigint NOT NULL, note text);
INSERT INTO accounts SELECT g, 0, repeat('n', 200) FROM generate_series(1, 60000) g;
CREATE TABLE orders (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                     account int NOT NULL REFERENCES accounts (id), amount int);
INSERT INTO orders (account, amount) SELECT g % 1000 + 1, g FROM generate_series(1, 60000) g;
CREATE TABLE events (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), code text NOT NULL UNIQUE, payload int);
INSERT INTO events (code, payload) SELECT 'seed-' || g, g FROM generate_series(1, 5000) g;
"""
PARTITIONS = {"par-b": 4}


def changes(i: int) -> list[tuple[str, tuple]]:
    """One writer transaction: an update, an insert, now and then a delete and a primary-key change (of an account
    no order references)."""
    statements = [
        ("UPDATE accounts SET balance = balance + 1 WHERE id = %s", (1 + i % 1000,)),
        ("INSERT INTO orders (account, amount) VALUES (%s, %s)", (1 + i % 1000, i)),
    ]
    if i % 7 == 0:
        statements += [
            ("DELETE FROM orders WHERE id = (SELECT min(id) FROM orders)", ()),
            ("UPDATE accounts SET id = id + 1000000 WHERE id = %s", (50_000 + i,)),
        ]
    return statements


def changes_with_truncate(i: int) -> list[tuple[str, tuple]]:
    """`changes`, plus an event per transaction, now and then a uuid key change that keeps the row's unique `code`
    (its insert lands in another partition than its delete), and every 60th an emptied `events`."""
    statements = [*changes(i), ("INSERT INTO events (code, payload) VALUES (%s, %s)", (f"w-{i}", i))]
    if i % 40 == 0:
        statements.append(
            ("UPDATE events SET id = gen_random_uuid() WHERE id = (SELECT id FROM events ORDER BY code LIMIT 1)", ())
        )
    if i % 60 == 0:
        statements.append(("TRUNCATE events", ()))
    return statements


WRITES = {"par-a": changes, "par-b": changes_with_truncate}


def _reset() -> None:
    for migration_id, (source_db, target_db) in MIGRATIONS.items():
        for switch in PGBOUNCERS:
            switch.resume(source_db)
            switch.remove_route(source_db)
        tear_down_migration(migration_id, source_db, target_db)


@pytest.fixture
def two_databases():
    api = airflow_api()
    api.request("PATCH", "/dags/pg_migration", json={"is_paused": False})
    api.request("PATCH", "/dags/pg_cutover", json={"is_paused": False})
    _reset()
    for migration_id, (source_db, target_db) in MIGRATIONS.items():
        recreate_database(endpoint(SOURCE_PORT, source_db))
        recreate_database(endpoint(TARGET_PORT, target_db))
        with psycopg.connect(conninfo(SOURCE_PORT, source_db), autocommit=True) as conn:
            conn.execute(SCHEMA)
        put_postgres_connection(api, f"{migration_id}_source", endpoint(SOURCE_PORT, source_db))
        put_postgres_connection(api, f"{migration_id}_target", endpoint(TARGET_PORT, target_db))
    yield api
    _reset()
    for source_db, target_db in MIGRATIONS.values():
        drop_database(endpoint(SOURCE_PORT, source_db))
        drop_database(endpoint(TARGET_PORT, target_db))


def _when(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def test_two_migrations_load_and_stream_at_once_then_one_cuts_over_while_the_other_streams(two_databases):
    api = two_databases
    writers = {m: ConcurrentWriter(src, WRITES[m], rate=10).start() for m, (src, _) in MIGRATIONS.items()}
    try:
        runs = {
            m: api.trigger_dag(
                "pg_migration",
                conf={
                    "migration_id": m,
                    "source_conn_id": f"{m}_source",
                    "target_conn_id": f"{m}_target",
                    "change_topic_partitions": PARTITIONS.get(m, 1),
                },
            )
            for m in MIGRATIONS
        }
        # A second run of a migration that is being run (once the first holds it): refused, naming the holder.
        deadline = time.monotonic() + 120
        while (holder := RunLeaseStore(CONTROL).holder("par-a")) is None or holder.run_id != runs["par-a"]:
            assert time.monotonic() < deadline, f"par-a's first run never claimed it: {holder}"
            time.sleep(0.5)
        duplicate = api.trigger_dag(
            "pg_migration",
            conf={"migration_id": "par-a", "source_conn_id": "par-a_source", "target_conn_id": "par-a_target"},
        )
        duplicate_run = api.wait_for_dag_run("pg_migration", duplicate, timeout=300, poll_seconds=2)
        ended = {m: api.wait_for_dag_run("pg_migration", r, timeout=600, poll_seconds=3) for m, r in runs.items()}
        for m, run in ended.items():
            assert run["state"] == "success", f"{m}: {task_states(api, runs[m])}"
        duplicate_states = task_states(api, duplicate)
        assert duplicate_run["state"] == "failed" and duplicate_states["claim_migration"] == "failed", duplicate_states
        assert duplicate_states["preflight"] == "upstream_failed", duplicate_states
        refusal = task_log(api, duplicate, "claim_migration")
        assert f"held by pg_migration run {runs['par-a']}" in refusal, refusal[-2000:]
        # Side by side: each run started before the other one ended (one at a time, the second would start after).
        a, b = ended["par-a"], ended["par-b"]
        assert _when(a["start_date"]) < _when(b["end_date"]) and _when(b["start_date"]) < _when(a["end_date"]), (a, b)
        for m in MIGRATIONS:
            assert RunLeaseStore(CONTROL).holder(m) is None, f"{m}: its run's teardown releases the lease"

        # par-a cuts over (its own writer stopped: outside PgBouncer it would abort the cutover) while par-b streams.
        writers["par-a"].stop()
        cutover = api.trigger_dag("pg_cutover", conf={"migration_id": "par-a", "backup": False})
        cut = api.wait_for_dag_run("pg_cutover", cutover, timeout=400, poll_seconds=2)
        assert cut["state"] == "success", task_states(api, cutover, "pg_cutover")
        assert MigrationStateStore(CONTROL).get("par-a")["phase"] == "cut_over"
        assert MigrationStateStore(CONTROL).get("par-b")["phase"] == "streaming"
        committed_during_cutover = writers["par-b"].committed
    finally:
        for writer in writers.values():
            writer.stop()
    assert all(not w.errors for w in writers.values()), {m: w.errors[:3] for m, w in writers.items()}
    assert committed_during_cutover > 50, "par-b's writer must have written throughout"
    assert writers["par-b"].committed >= 120, "par-b's writer must have truncated `events` at least twice"
    for m, (source_db, target_db) in MIGRATIONS.items():
        diff = wait_until_identical(source_db, target_db, ["public"])
        assert diff == {}, f"{m}: source and target differ: {diff}"
    names_b = MigrationNames("par-b")
    for name in (names_b.source_connector, names_b.sink_connector):
        CONNECT.wait_for_state(name, "RUNNING", timeout=60)
    # par-b's changes went through 4 partitions per table and 4 sink tasks: every partition of each spread table's
    # topic holds records (events: each TRUNCATE is in all four), and the sink committed each to its end.
    assert len(CONNECT.get_status(names_b.sink_connector)["tasks"]) == 4
    topics = [f"{names_b.topic_prefix}.public.{table}" for table in ("accounts", "orders", "events")]
    deadline = time.monotonic() + 60
    while True:
        ends, committed = read_sink_offsets(BOOTSTRAP, names_b)
        spread = {topic: {p: end for (t, p), end in ends.items() if t == topic} for topic in topics}
        behind = {tp: end for tp, end in ends.items() if tp[0] in topics and committed.get(tp) != end}
        if not behind or time.monotonic() > deadline:
            break
        time.sleep(1)
    for topic, partitions in spread.items():
        assert sorted(partitions) == [0, 1, 2, 3] and all(end > 0 for end in partitions.values()), (topic, partitions)
    assert not behind, f"the sink's committed offsets did not reach these partitions' ends: {behind} ({committed})"
    with psycopg.connect(conninfo(SOURCE_PORT, "postgres"), autocommit=True) as conn:
        slots = conn.execute(
            "SELECT slot_name FROM pg_replication_slots WHERE slot_name LIKE 'pgmigrate\\_par\\_%' ORDER BY 1"
        ).fetchall()
    # One slot per migration on the source (par-a's stays for a rollback after its cutover).
    assert slots == [(MigrationNames("par-a").slot,), (names_b.slot,)], slots
