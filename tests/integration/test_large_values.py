"""Values past Kafka's default 1 MB message size on the real stack (issue 14, item 3).

A 20 MiB text and a 4 MiB bytea in one row are inserted while streaming and then left unchanged by an update of
another column (the re-select puts them into the event again): both reach the target. A row whose change event is
past the pipeline's limit stops the source connector with a message naming its topic (table) and key, which is what
the P0 alert and `scripts/migration status` show: never a silent skip, never a bare RecordTooLargeException.
"""

from __future__ import annotations

import time

import psycopg
import pytest
from harness import (
    SOURCE_PORT,
    TARGET_PORT,
    airflow_api,
    conninfo,
    endpoint,
    run_dag,
    tear_down_migration,
)

from devtools.databases import drop_database, recreate_database
from devtools.local_stack import connect_client
from pgmigrate.cli.airflow_api import AirflowApiError, put_postgres_connection
from pgmigrate.core.naming import MigrationNames
from pgmigrate.kafka.connector_configs import MAX_CHANGE_EVENT_BYTES
from pgmigrate.kafka.connector_status import FAILED, assess_connector

pytestmark = pytest.mark.integration

MIGRATION_ID = "bigval-e2e"
SRC_DB, DST_DB = "bigval_src", "bigval_dst"
SOURCE_CONN, TARGET_CONN = "bigval_source", "bigval_target"
NAMES = MigrationNames(MIGRATION_ID)
CONNECT = connect_client()
MIB = 1024 * 1024

SCHEMA = """
CREATE TABLE blobs (id int PRIMARY KEY, n int NOT NULL DEFAULT 0, body text, data bytea);
INSERT INTO blobs (id, body) VALUES (1, 'small');
-- Incompressible: md5 digits, so the values stay this large in WAL, Kafka and on the target.
CREATE FUNCTION rnd_text(seed text, mib int) RETURNS text LANGUAGE sql AS
$$ SELECT string_agg(md5(seed || i::text), '') FROM generate_series(1, mib * 32768) i $$;
"""


def sql(port: int, db: str, statement: str, args: tuple = ()) -> list[tuple]:
    with psycopg.connect(conninfo(port, db), autocommit=True) as conn:
        cur = conn.execute(statement, args)
        return cur.fetchall() if cur.description else []


def wait_for(what: str, predicate, timeout: float = 180):
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(1)
    return value


@pytest.fixture(scope="module")
def migration():
    api = airflow_api()
    tear_down_migration(MIGRATION_ID, SRC_DB, DST_DB)
    recreate_database(endpoint(SOURCE_PORT, SRC_DB))
    recreate_database(endpoint(TARGET_PORT, DST_DB))
    sql(SOURCE_PORT, SRC_DB, SCHEMA)
    put_postgres_connection(api, SOURCE_CONN, endpoint(SOURCE_PORT, SRC_DB))
    put_postgres_connection(api, TARGET_CONN, endpoint(TARGET_PORT, DST_DB))
    try:
        run_id, run, states = run_dag(
            api, {"migration_id": MIGRATION_ID, "source_conn_id": SOURCE_CONN, "target_conn_id": TARGET_CONN}
        )
        assert run["state"] == "success", f"pg_migration {run_id}: {states}"
        yield api
    finally:
        tear_down_migration(MIGRATION_ID, SRC_DB, DST_DB)
        for conn_id in (SOURCE_CONN, TARGET_CONN):
            try:
                api.request("DELETE", f"/connections/{conn_id}")
            except AirflowApiError:
                pass
        drop_database(endpoint(SOURCE_PORT, SRC_DB))
        drop_database(endpoint(TARGET_PORT, DST_DB))


def fingerprint(port: int, db: str, key: int) -> list[tuple]:
    return sql(port, db, "SELECT n, length(body), md5(body), length(data), md5(data) FROM blobs WHERE id = %s", (key,))


def test_a_20_mib_row_is_carried_on_insert_and_on_an_update_that_leaves_it_unchanged(migration):
    sql(
        SOURCE_PORT,
        SRC_DB,
        "INSERT INTO blobs (id, body, data) VALUES (2, rnd_text('b', 20), decode(rnd_text('d', 8), 'hex'))",
    )
    sql(SOURCE_PORT, SRC_DB, "UPDATE blobs SET n = n + 1 WHERE id = 2")  # body and data: unchanged TOAST
    source = fingerprint(SOURCE_PORT, SRC_DB, 2)
    assert source[0][0] == 1 and source[0][1] == 20 * MIB and source[0][3] == 4 * MIB, source
    wait_for("the 20 MiB row on the target", lambda: fingerprint(TARGET_PORT, DST_DB, 2) == source)
    status = CONNECT.get_status(NAMES.source_connector)
    assert {t["state"] for t in status["tasks"]} == {"RUNNING"}, status


def test_a_row_past_the_limit_stops_the_source_naming_table_and_key(migration):
    mib = MAX_CHANGE_EVENT_BYTES // MIB + 4
    sql(SOURCE_PORT, SRC_DB, "INSERT INTO blobs (id, body) VALUES (3, rnd_text('x', %s))", (mib,))
    state, line = wait_for(
        "the source task to fail",
        lambda: (a := assess_connector(NAMES.source_connector, CONNECT.get_status(NAMES.source_connector)))[0] == FAILED
        and a,
    )
    # The line the P0 alert and `scripts/migration status` show.
    assert f"{NAMES.topic_prefix}.public.blobs" in line and "Struct{id=3}" in line, line
    assert f"{MAX_CHANGE_EVENT_BYTES:,}-byte limit" in line, line
    assert sql(TARGET_PORT, DST_DB, "SELECT count(*) FROM blobs WHERE id = 3") == [(0,)]
