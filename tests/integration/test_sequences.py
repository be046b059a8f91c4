"""Sequences between the stack's source (5433, database seq_src) and target (5434, seq_dst): the schema copy
creates every one with its options, standalone ones included, and `sync_sequences` leaves every target
nextval() past the source's, the other way round too (rollback), rerun-safe and within the endpoints'
lock_timeout. Both databases are dropped at the end.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import psycopg
import pytest

from pgmigrate.core.endpoints import PgEndpoint
from pgmigrate.cutover.sequences import SAFETY_GAP, sequences_snapshot, sync_sequences
from pgmigrate.schema.schema_copy import copy_pre_data

pytestmark = pytest.mark.integration

SOURCE = PgEndpoint("127.0.0.1", 5433, "seq_src", "postgres", "postgres")
TARGET = PgEndpoint("127.0.0.1", 5434, "seq_dst", "postgres", "postgres")
SCHEMAS = ["public", "billing"]
TABLES = [("public", "orders")]  # a subset, as copy_schema always passes one (resolve_tables)

SOURCE_SCHEMA = """
CREATE SCHEMA billing;
-- Standalone, used only through nextval('invoice_no') by the application: no column default names it.
CREATE SEQUENCE invoice_no AS integer INCREMENT 5 MINVALUE 10 MAXVALUE 1000000 START 20 CACHE 3 CYCLE;
CREATE SEQUENCE billing."Credit Note No" START 500;  -- standalone, never used
CREATE SEQUENCE reset_no;  -- standalone, reset with setval(…, false) by each test
CREATE TABLE orders (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, note text);
CREATE TABLE not_migrated (id serial PRIMARY KEY);  -- left out of TABLES: its sequence comes standalone
"""
# Every sequence: options and owner. The same on both sides after the schema copy (owner aside).
OPTIONS_SQL = """
SELECT n.nspname, c.relname, format_type(s.seqtypid, NULL), s.seqstart, s.seqincrement, s.seqmin, s.seqmax,
       s.seqcache, s.seqcycle, (SELECT d.refobjid::regclass::text FROM pg_depend d WHERE d.objid = c.oid
                                AND d.classid = 'pg_class'::regclass AND d.deptype IN ('a', 'i'))
FROM pg_sequence s JOIN pg_class c ON c.oid = s.seqrelid JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname IN ('public', 'billing') ORDER BY 1, 2
"""
POSITIONS_SQL = """
SELECT 'invoice_no', last_value, is_called FROM invoice_no
UNION ALL SELECT 'Credit Note No', last_value, is_called FROM billing."Credit Note No"
UNION ALL SELECT 'reset_no', last_value, is_called FROM reset_no
UNION ALL SELECT 'orders_id_seq', last_value, is_called FROM orders_id_seq
"""


def admin(port: int) -> psycopg.Connection:
    return psycopg.connect(
        host="127.0.0.1", port=port, user="postgres", password="postgres", dbname="postgres", autocommit=True
    )


def recreate(endpoint: PgEndpoint) -> None:
    with admin(endpoint.port) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {endpoint.dbname} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {endpoint.dbname}")


def rows(endpoint: PgEndpoint, query: str) -> list:
    with endpoint.connect(autocommit=True) as conn:
        return conn.execute(query).fetchall()


def value(endpoint: PgEndpoint, query: str):
    return rows(endpoint, query)[0][0]


@pytest.fixture(scope="module")
def source_db() -> Iterator[None]:
    recreate(SOURCE)
    with SOURCE.connect(autocommit=True) as conn:
        conn.execute(SOURCE_SCHEMA)
    yield
    for endpoint in (SOURCE, TARGET):
        with admin(endpoint.port) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {endpoint.dbname} WITH (FORCE)")


@pytest.fixture
def copied(source_db) -> None:
    """A fresh target with the schema copied, and the source's sequences where the application left them:
    invoice_no used (next 35), reset_no reset to 500 with is_called false, orders' identity at 3 rows,
    "Credit Note No" never used."""
    recreate(TARGET)
    copy_pre_data(SOURCE, TARGET, SCHEMAS, TABLES)
    with SOURCE.connect(autocommit=True) as conn:
        conn.execute(
            "SELECT setval('invoice_no', 30), setval('reset_no', 500, false), "
            "setval(pg_get_serial_sequence('orders', 'id'), 3)"
        )


def test_schema_copy_creates_every_sequence_with_its_options(source_db):
    recreate(TARGET)
    result = copy_pre_data(SOURCE, TARGET, SCHEMAS, TABLES)
    source, target = rows(SOURCE, OPTIONS_SQL), rows(TARGET, OPTIONS_SQL)
    assert [r[:9] for r in target] == [r[:9] for r in source]
    assert ("public", "invoice_no", "integer", 20, 5, 10, 1000000, 3, True, None) in target
    assert ("billing", "Credit Note No", "bigint", 500, 1, 1, 2**63 - 1, 1, False, None) in target
    owners = {r[1]: r[9] for r in target}
    assert owners["orders_id_seq"] == "orders"  # the identity, with its table
    assert owners["not_migrated_id_seq"] is None  # standalone: its table stays behind
    assert value(TARGET, "SELECT to_regclass('not_migrated')") is None
    assert value(TARGET, "SELECT nextval('invoice_no')") == 20  # created at its start value
    assert {"sequence public.invoice_no", 'sequence billing."Credit Note No"'} <= set(result["created"])
    assert copy_pre_data(SOURCE, TARGET, SCHEMAS, TABLES)["created"] == []  # rerun: nothing to do


def test_a_table_added_later_takes_ownership_of_its_sequence_created_standalone(source_db):
    recreate(TARGET)
    copy_pre_data(SOURCE, TARGET, SCHEMAS, TABLES)  # not_migrated_id_seq created standalone
    result = copy_pre_data(SOURCE, TARGET, SCHEMAS, [*TABLES, ("public", "not_migrated")])
    assert "table public.not_migrated" in result["created"]
    owners = {r[1]: r[9] for r in rows(TARGET, OPTIONS_SQL)}
    assert owners["not_migrated_id_seq"] == "not_migrated"
    assert value(TARGET, "SELECT pg_get_serial_sequence('not_migrated', 'id')") == "public.not_migrated_id_seq"


def test_snapshot_reads_the_position_of_a_sequence_reset_with_is_called_false(copied):
    snapshot = {s["name"]: s for s in sequences_snapshot(SOURCE, SCHEMAS)}
    assert (snapshot["reset_no"]["last_value"], snapshot["reset_no"]["is_called"]) == (500, False)
    assert snapshot["reset_no"]["next_value"] == 500
    assert snapshot["invoice_no"]["next_value"] == 35 and snapshot["invoice_no"]["is_called"] is True
    assert snapshot["orders_id_seq"]["identity"] is True and snapshot["orders_id_seq"]["owned_by"] == "public.orders.id"
    assert snapshot["Credit Note No"]["is_called"] is False and snapshot["Credit Note No"]["next_value"] == 500


def test_sync_puts_every_target_next_value_past_the_source_and_a_rerun_changes_nothing(copied):
    target = TARGET.with_settings(lock_timeout="2s", statement_timeout="10s")
    synced = {s["sequence"]: s for s in sync_sequences(SOURCE, target, SCHEMAS)}
    assert synced["public.invoice_no"] == {
        "sequence": "public.invoice_no",
        "source": 35,
        "target": 35 + SAFETY_GAP * 5,
        "changed": True,
    }
    assert synced["public.reset_no"]["target"] == 500 + SAFETY_GAP and synced["public.reset_no"]["changed"]
    assert synced["public.orders_id_seq"]["target"] == 4 + SAFETY_GAP
    # Never used on the source: equal next values are enough, no gap.
    assert synced['billing."Credit Note No"'] == {
        "sequence": 'billing."Credit Note No"',
        "source": 500,
        "target": 500,
        "changed": False,
    }
    # A standalone sequence of a table not migrated is synced too (it exists on the target, standalone).
    assert synced["public.not_migrated_id_seq"]["changed"] is False  # never used

    positions = rows(TARGET, POSITIONS_SQL)
    again = sync_sequences(SOURCE, target, SCHEMAS)
    assert not any(s["changed"] for s in again)
    assert {s["sequence"]: s["target"] for s in again} == {s: v["target"] for s, v in synced.items()}
    assert rows(TARGET, POSITIONS_SQL) == positions  # not one setval

    for name in ("invoice_no", "reset_no"):
        source_next = value(SOURCE, f"SELECT nextval('{name}')")
        target_next = value(TARGET, f"SELECT nextval('{name}')")
        assert target_next > source_next, name
    insert = "INSERT INTO orders (note) VALUES ('after the switch') RETURNING id"
    assert value(TARGET, insert) > value(SOURCE, insert)
    assert value(TARGET, """SELECT nextval('billing."Credit Note No"')""") == 500


def test_sync_back_at_rollback_puts_the_source_past_the_target(copied):
    sync_sequences(SOURCE, TARGET, SCHEMAS)
    used_on_target = value(TARGET, "SELECT nextval('invoice_no')")  # clients wrote on the target after the switch
    synced = {s["sequence"]: s for s in sync_sequences(TARGET, SOURCE, SCHEMAS)}
    # CACHE 3: that session reserved three values, so the next one is three increments past what it got.
    assert synced["public.invoice_no"]["source"] == used_on_target + 3 * 5
    assert synced["public.invoice_no"]["target"] == used_on_target + 3 * 5 + SAFETY_GAP * 5
    assert value(SOURCE, "SELECT nextval('invoice_no')") > value(TARGET, "SELECT nextval('invoice_no')")
    # reset_no was set on the target with is_called true ("called, one before"): read back exactly.
    assert synced["public.reset_no"]["source"] == 500 + SAFETY_GAP
    assert not any(s["changed"] for s in sync_sequences(TARGET, SOURCE, SCHEMAS))


def test_sync_gives_up_within_the_endpoints_lock_timeout(copied):
    """A transaction holding a target sequence (ALTER SEQUENCE, not committed) must not stall the pause."""
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with TARGET.connect() as conn:
            conn.execute("ALTER SEQUENCE invoice_no CACHE 3")
            held.set()
            release.wait(30)
            conn.rollback()

    holder = threading.Thread(target=hold, daemon=True)
    holder.start()
    try:
        assert held.wait(10)
        started = time.monotonic()
        with pytest.raises(psycopg.errors.LockNotAvailable):
            sync_sequences(SOURCE, TARGET.with_settings(lock_timeout="300ms"), SCHEMAS)
        assert time.monotonic() - started < 5
    finally:
        release.set()
        holder.join(10)
