"""End to end on the real stack: `pg_migration` moves a database covering the fidelity list while a
writer keeps changing it, through the scheduler, triggerer and real connectors; then an independent
comparison (this file's, not the product's validator) finds source and target identical.
"""

from __future__ import annotations

import re
from pathlib import Path

import psycopg
import pytest
from every_type import create_every_type_tables, every_type_changes
from harness import (
    CONTROL,
    SOURCE_PORT,
    SUBSCRIBER_PASSFILE,
    TARGET_PORT,
    ConcurrentWriter,
    airflow_api,
    conninfo,
    endpoint,
    fail_active_runs,
    forget_migration,
    run_dag,
    task_log,
    task_states,
    wait_until_identical,
)

from devtools.databases import drop_database, recreate_database
from devtools.local_stack import connect_client
from pgmigrate.cli.airflow_api import put_postgres_connection
from pgmigrate.control.state import MigrationStateStore
from pgmigrate.core.endpoints import PgEndpoint
from pgmigrate.core.naming import MigrationNames
from pgmigrate.schema.large_objects import compare_large_objects
from pgmigrate.stream.teardown import teardown_migration

SQL = Path(__file__).parent / "sql"
SCHEMAS = ["public", "sales", "Ventes Été", "Été"]
CONNECT = connect_client()


def fidelity_changes(i: int) -> list[tuple[str, tuple]]:
    """One writer transaction: inserts, updates (TOAST-untouched, PK change, partition move), deletes."""
    n = 10_000 + i
    statements = [
        (
            "INSERT INTO public.types_num VALUES (%s, %s, %s, %s::numeric::money, %s, %s)",
            (n, f"{i}.0123456789", f"{i}e-5", i, i / 3, i / 7),
        ),
        ("UPDATE public.types_num SET n38 = n38 + 1, nu = 'NaN' WHERE id = %s", (1 + i % 200,)),
        (
            "INSERT INTO public.types_time VALUES (%s, now(), now(), now(), current_date, localtime, '10:11:12+00', "
            "make_interval(months => %s, secs => %s))",
            (n, i % 13, i * 0.25),
        ),
        (
            "INSERT INTO public.types_misc (id, tx, jb, e, ip, by) VALUES (%s, %s, %s, 'ok', '192.168.0.1', %s)",
            (n, f"w{i} ✓", '{"live": true}', bytes([i % 256, 0, 255])),
        ),
        ("UPDATE public.types_misc SET jb = jb || '{\"upd\": 1}', e = 'happy' WHERE id = %s", (1 + i % 200,)),
        ("UPDATE public.types_array SET ia = ia || %s, ta = array_append(ta, NULL) WHERE id = %s", (i, 1 + i % 200)),
        ("INSERT INTO public.ident (v) VALUES (%s)", (f"live {i}",)),
        ('UPDATE public."Order Items" SET "CamelCase" = %s WHERE "OrderId" = %s', (f"upd {i}", i % 100)),
        ("INSERT INTO sales.orders VALUES ('EU', %s, 'cust1', %s)", (n, i)),
        ("UPDATE sales.customers SET name = %s WHERE code = 'c1'", (f"renamed {i}",)),
        ("UPDATE public.measurements SET v = v + 1 WHERE id = %s", (1 + i % 400,)),
        # Out-of-line text, bytea, arrays, hstore and a bit string left unchanged: the change carries placeholders.
        ("UPDATE public.toasty SET counter = counter + 1 WHERE id = %s", (1 + i % 20,)),
        # Keyless: more duplicates, then exactly one copy changed and one deleted (ctid picks one row).
        ("INSERT INTO public.audit_log VALUES (current_date, 'writer', 'tick', %s)", (f'{{"n": {i % 3}}}',)),
    ]
    if i % 5 == 0:
        statements += [
            ("DELETE FROM public.types_misc WHERE id = %s", (10_000 + i - 3,)),
            ('DELETE FROM public."Order Items" WHERE "OrderId" = %s AND "select" = 0', (i % 100,)),
            # A primary-key change and a row moving between partitions.
            (
                "UPDATE sales.orders SET order_no = order_no + 1000000 WHERE region = 'EU' AND order_no = %s",
                (10_000 + i - 5,),
            ),
            (
                "UPDATE public.measurements SET logdate = '2026-04-15' WHERE id = %s AND logdate < '2026-04-01'",
                (i % 400,),
            ),
            ("UPDATE public.toasty SET big = public.rnd_text(%s, 1000) WHERE id = %s", (f"new{i}", 1 + i % 20)),
            ("UPDATE public.toasty SET tags = tags[2:] WHERE id = %s", (1 + i % 20,)),
            # Odd names (a few changes only: a table changed every transaction is always in flight for validate).
            ('INSERT INTO "Ventes Été"."Lignes spéciales" VALUES (%s, %s, %s)', (n, f"écrit {i}", i)),
            ('UPDATE "Ventes Été"."Lignes spéciales" SET "Qté max" = %s WHERE "N° ligne" = %s', (i, 1 + i % 50)),
            ('INSERT INTO "Été"."Lignes_spéciales°" VALUES (%s, %s, %s)', (n, f"écrit {i}", i)),
            ('UPDATE "Été"."Lignes_spéciales°" SET "Qté max" = %s WHERE "N° ligne" = %s', (i, 1 + i % 50)),
            (
                'UPDATE "Ventes Été"."Commandes ""VIP""" SET total = total + 1, "Remise ""%%""" = %s WHERE id = %s',
                (i % 50, 1 + i % 20),
            ),
            ('UPDATE public."ToastyNotés" SET seen = seen + 1 WHERE "Note Id" = %s', (1 + i % 20,)),
            # A row that is gone before its change is re-selected: the change is dropped, the delete applies.
            (
                "INSERT INTO public.toasty (id, big, bigb, counter, embedding, tags) "
                "SELECT %s, big, bigb, 0, embedding, tags FROM public.toasty WHERE id = 1",
                (n,),
            ),
            ("UPDATE public.toasty SET counter = -1 WHERE id = %s", (n - 5,)),
            ("DELETE FROM public.toasty WHERE id = %s", (n - 5,)),
            (
                "UPDATE public.audit_log SET action = 'tock' WHERE ctid = "
                "(SELECT ctid FROM public.audit_log WHERE action = 'tick' LIMIT 1)",
                (),
            ),
            (
                "DELETE FROM public.audit_log WHERE ctid = "
                "(SELECT ctid FROM public.audit_log WHERE action = 'dup' AND actor = %s LIMIT 1)",
                (f"user{i % 10}",),
            ),
        ]
    return statements + special_values_changes(i) + truncate_changes(i)


def truncate_changes(i: int) -> list[tuple[str, tuple]]:
    """fidelity_truncate.sql's tables: every 10th transaction truncates a referenced table with the one referencing it
    and refills them, every 15th truncates `scratch` alone; every 5th adds rows after the truncates."""
    n = 10_000 + i
    if i % 5:
        return []
    statements = [
        ("INSERT INTO public.batch_lines SELECT %s, max(id), %s FROM public.batches", (n, i)),
        ("INSERT INTO public.scratch VALUES (%s, 'live')", (n,)),
    ]
    truncates = []
    # In the order the snapshot reads tables (by name), inside one TRUNCATE too: another order can deadlock with the
    # initial load, and PostgreSQL aborts the writer (README, TRUNCATE).
    if i % 10 == 0:
        truncates += [
            ("TRUNCATE public.batch_lines, public.batches", ()),
            ("INSERT INTO public.batches VALUES (%s, %s)", (n, f"batch {i}")),
        ]
    if i % 15 == 0:
        truncates.append(("TRUNCATE public.scratch", ()))
    return truncates + statements


def special_values_changes(i: int) -> list[tuple[str, tuple]]:
    """fidelity_special_values.sql's rows travel through the change stream: one is copied to a new id, and the
    six original rows rotate their values (one statement, so every value stays in play)."""
    return [
        (
            "INSERT INTO public.types_special SELECT (jsonb_populate_record(t, jsonb_build_object('id', %s))).* "
            "FROM public.types_special t WHERE id = %s",
            (10_000 + i, 1 + i % 6),
        ),
        (
            "UPDATE public.types_special t "
            "SET (f4, f8, nu, n12, d, ts, tstz, ttz, ea, na, i2, t2, hs, b1, b5, vb10, vb) = "
            "(SELECT f4, f8, nu, n12, d, ts, tstz, ttz, ea, na, i2, t2, hs, b1, b5, vb10, vb "
            "FROM public.types_special s WHERE s.id = 1 + t.id %% 6) WHERE t.id BETWEEN 1 AND 6",
            (),
        ),
    ]


@pytest.fixture
def fidelity_databases():
    api = airflow_api()
    for migration_id in ("e2e-copy", "e2e-debezium"):
        fail_active_runs(api, migration_id)
        forget_migration(migration_id)
    recreate_database(endpoint(SOURCE_PORT, "e2e_src"))
    recreate_database(endpoint(TARGET_PORT, "e2e_dst"))
    with psycopg.connect(conninfo(SOURCE_PORT, "e2e_src"), autocommit=True) as conn:
        conn.execute((SQL / "fidelity_schema.sql").read_text())
        conn.execute((SQL / "fidelity_data.sql").read_text())
        conn.execute((SQL / "fidelity_special_values.sql").read_text())
        conn.execute((SQL / "fidelity_toast.sql").read_text())
        conn.execute((SQL / "fidelity_truncate.sql").read_text())
        conn.execute((SQL / "fidelity_names.sql").read_text())
        every_type_columns = create_every_type_tables(conn)
    put_postgres_connection(api, "e2e_source", endpoint(SOURCE_PORT, "e2e_src"))
    put_postgres_connection(api, "e2e_target", endpoint(TARGET_PORT, "e2e_dst"))
    yield api, every_type_columns
    for migration_id in ("e2e-copy", "e2e-debezium"):
        teardown_migration(
            CONNECT,
            "127.0.0.1:9092",
            PgEndpoint("127.0.0.1", SOURCE_PORT, "e2e_src", "postgres", "postgres"),
            MigrationNames(migration_id),
            target=PgEndpoint("127.0.0.1", TARGET_PORT, "e2e_dst", "postgres", "postgres"),
        )
    drop_database(endpoint(SOURCE_PORT, "e2e_src"))
    drop_database(endpoint(TARGET_PORT, "e2e_dst"))


@pytest.mark.parametrize("snapshot_method", ["copy", "debezium"])
def test_migration_under_live_writes_is_identical(fidelity_databases, snapshot_method):
    api, every_type_columns = fidelity_databases
    migration_id = f"e2e-{snapshot_method}"
    writer = ConcurrentWriter(
        "e2e_src", lambda i: fidelity_changes(i) + every_type_changes(i, every_type_columns), rate=20
    ).start()
    try:
        run_id, run, states = run_dag(
            api,
            {
                "migration_id": migration_id,
                "source_conn_id": "e2e_source",
                "target_conn_id": "e2e_target",
                "schemas": SCHEMAS,
                "snapshot_method": snapshot_method,
                "subscriber_passfile": SUBSCRIBER_PASSFILE,
            },
        )
    finally:
        writer.stop()
    assert run["state"] == "success", f"run {run_id} ended {run['state']}: {states}"
    assert writer.errors == [], writer.errors[:3]
    assert writer.committed > 20, "the writer must really have written during the migration"

    diff = wait_until_identical("e2e_src", "e2e_dst", SCHEMAS)
    assert diff == {}, f"source and target differ: {diff}"

    names = MigrationNames(migration_id)
    connectors = [c for c in CONNECT.list_connectors() if c.startswith(f"pgmigrate-{migration_id}-")]
    assert sorted(connectors) == [names.sink_connector, names.source_connector]
    with psycopg.connect(conninfo(SOURCE_PORT, "postgres"), autocommit=True) as conn:
        slots = conn.execute(
            "SELECT slot_name FROM pg_replication_slots WHERE slot_name LIKE 'pgmigrate_e2e%' "
            "OR slot_name LIKE 'pg\\_%\\_sync\\_%' ORDER BY 1"
        ).fetchall()
    # The Debezium slot and the native channel's subscription slot; no leftover table-sync slots.
    assert slots == [(names.slot,), (names.native_subscription,)]
    # The subscription reads the source's password from the target server's own password file: pg_subscription
    # (and so every dump of the target) holds no password.
    with psycopg.connect(conninfo(TARGET_PORT, "e2e_dst"), autocommit=True) as conn:
        (subconninfo,) = conn.execute(
            "SELECT subconninfo FROM pg_subscription WHERE subname = %s", (names.native_subscription,)
        ).fetchone()
    assert "password=" not in subconninfo and "passfile=" in subconninfo, subconninfo
    # The identity column stays insertable for the sink until cutover restores ALWAYS.
    with psycopg.connect(conninfo(TARGET_PORT, "e2e_dst"), autocommit=True) as conn:
        identity = conn.execute(
            "SELECT attidentity FROM pg_attribute WHERE attrelid = 'public.ident'::regclass AND attname = 'id'"
        ).fetchone()[0]
    assert identity == "d"
    assert states["validate"] == "success"
    assert CONNECT.list_connectors()
    assert task_states(api, run_id)["wait_caught_up"] == "success"
    # Every type walked from pg_type: Debezium carries the first table, the native channel (publication) the second.
    with psycopg.connect(conninfo(SOURCE_PORT, "e2e_src"), autocommit=True) as conn:
        native_tables = {
            r[0]
            for r in conn.execute(
                "SELECT tablename FROM pg_publication_tables WHERE pubname = %s", (names.native_publication,)
            )
        }
    assert "every_type_native" in native_tables and "every_type_debezium" not in native_tables, native_tables
    # Whitespace in a table or schema name routes it too; non-ASCII letters alone stay with Debezium.
    assert {"Lignes spéciales", "Order Items", "Prix, remises"} <= native_tables, native_tables
    assert not {"Lignes_spéciales°", "ToastyNotés"} & native_tables, native_tables
    # Materialized views: refreshed on the target after the load (the one WITH NO DATA on the source stays so), and
    # compared by validate: identical where the source's is current, named (not failed) where it is stale.
    with psycopg.connect(conninfo(TARGET_PORT, "e2e_dst"), autocommit=True) as conn:
        populated = dict(conn.execute("SELECT relname, relispopulated FROM pg_class WHERE relkind = 'm'").fetchall())
    assert populated == {"mood_labels": True, "misc_counts": True, "misc_later": False}, populated
    views = {
        v["view"]: v["status"]
        for v in MigrationStateStore(CONTROL).get(migration_id)["last_validation"]["materialized_views"]
    }
    assert views == {"public.mood_labels": "identical", "public.misc_counts": "stale"}, views
    # Large objects: on the target with their oids and contents (independent check), and validate compares them.
    los = {}
    for port, db in ((SOURCE_PORT, "e2e_src"), (TARGET_PORT, "e2e_dst")):
        with psycopg.connect(conninfo(port, db), autocommit=True) as conn:
            query = "SELECT oid, md5(lo_get(oid)) FROM pg_largeobject_metadata ORDER BY oid"
            los[port] = conn.execute(query).fetchall()
    assert los[TARGET_PORT] == los[SOURCE_PORT] and len(los[SOURCE_PORT]) == 3, los
    with psycopg.connect(conninfo(TARGET_PORT, "e2e_dst"), autocommit=True) as conn:
        conn.execute("SELECT lo_put(9000003, 1000000, 'damaged')")
    differences = compare_large_objects(endpoint(SOURCE_PORT, "e2e_src"), endpoint(TARGET_PORT, "e2e_dst"))
    assert len(differences) == 1 and "large object 9000003: 1572864 bytes" in differences[0], differences
    # Progress per table is visible while the initial load runs (rows on the target / source estimate).
    progress = re.findall(r"snapshot: (\d+)/(\d+) rows", task_log(api, run_id, "wait_snapshot"))
    assert progress and all(int(total) > 0 for _, total in progress), progress[:5]
