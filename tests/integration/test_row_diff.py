"""Row diff and schema compare against real PostgreSQL (source 5433, target 5434), in scratch databases
rowdiff_src / rowdiff_dst filled with the same INSERTs on both sides (no replication), then damaged on
the target; a live test writes to both sides, the target a little later (a simulated pipeline lag)."""

from __future__ import annotations

import queue
import random
import threading
import time
from dataclasses import dataclass, field

import psycopg
import pytest

from pgmigrate.core.catalog import TableRef
from pgmigrate.schema.schema_compare import SchemaDifference, compare_schemas
from pgmigrate.validate.row_diff import diff_table, diff_tables, format_diff
from tests.integration.harness import SOURCE_PORT, TARGET_PORT, conninfo, endpoint, table_fingerprints

pytestmark = pytest.mark.integration

SRC_DB, DST_DB = "rowdiff_src", "rowdiff_dst"
SOURCE, TARGET = endpoint(SOURCE_PORT, SRC_DB), endpoint(TARGET_PORT, DST_DB)
FAST = {"pause_seconds": 0.2, "attempts": 3, "rows_per_chunk": 5000, "leaf_rows": 64}

SETUP = [
    "CREATE TABLE accounts (id int PRIMARY KEY, owner text NOT NULL, balance numeric(12,2) NOT NULL, note text, "
    "updated_at timestamptz NOT NULL)",
    "INSERT INTO accounts SELECT g, 'owner ' || g, g % 1000 + 0.25, CASE WHEN g % 3 = 0 THEN NULL ELSE 'n' || g END, "
    "timestamptz '2026-01-01 00:00+00' + g * interval '1 minute' FROM generate_series(1, 30000) g",
    # Bodies of ~6.4 kB stored out of line, uncompressed: TOASTed values.
    "CREATE TABLE docs (id bigint PRIMARY KEY, title text, body text)",
    "ALTER TABLE docs ALTER COLUMN body SET STORAGE EXTERNAL",
    "INSERT INTO docs SELECT g, 'doc ' || g, "
    "(SELECT string_agg(md5(g || '-' || i), '') FROM generate_series(1, 200) i) FROM generate_series(1, 300) g",
    "CREATE TABLE pairs (a int, b text, v int, PRIMARY KEY (a, b))",
    "INSERT INTO pairs SELECT g / 10, 'b' || g % 10, g FROM generate_series(0, 999) g",
    "CREATE TABLE events (kind text, payload text)",  # no primary key; duplicate rows on purpose
    "INSERT INTO events SELECT 'click', 'p' || g % 50 FROM generate_series(1, 200) g",
    "CREATE TABLE untouched (id int PRIMARY KEY, x text)",
    "INSERT INTO untouched SELECT g, md5(g::text) FROM generate_series(1, 2000) g",
    "ANALYZE",
]

DAMAGE = [
    "DELETE FROM accounts WHERE id = 777",
    "UPDATE accounts SET balance = balance + 1 WHERE id = 12345",
    "UPDATE accounts SET note = 'edited', updated_at = updated_at + interval '1 second' WHERE id = 20000",
    "INSERT INTO accounts VALUES (30001, 'intruder', 0, NULL, now())",
    "INSERT INTO accounts VALUES (-5, 'before the first key', 0, NULL, now())",
    "UPDATE docs SET body = overlay(body PLACING 'X' FROM 4000 FOR 1) WHERE id = 42",
    "UPDATE pairs SET v = -1 WHERE a = 3 AND b = 'b3'",
    "INSERT INTO pairs VALUES (999, 'zz', 0)",
    # One of four identical ('click', 'p7') rows.
    "DELETE FROM events WHERE ctid = (SELECT min(ctid) FROM events WHERE payload = 'p7')",
]


def recreate(port: int, dbname: str) -> None:
    with psycopg.connect(conninfo(port, "postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{dbname}"')


def run(port: int, dbname: str, statements: list[str]) -> None:
    with psycopg.connect(conninfo(port, dbname), autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)


@pytest.fixture(scope="module")
def databases():
    for port, db in ((SOURCE_PORT, SRC_DB), (TARGET_PORT, DST_DB)):
        recreate(port, db)
        run(port, db, SETUP)
    yield
    for port, db in ((SOURCE_PORT, SRC_DB), (TARGET_PORT, DST_DB)):
        with psycopg.connect(conninfo(port, "postgres"), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')


@pytest.fixture(scope="module")
def damaged(databases):
    assert all(d.ok for d in diff_tables(SOURCE, TARGET, **FAST)), "identical copies must compare identical"
    run(TARGET_PORT, DST_DB, DAMAGE)


def by_table(diffs):
    return {d.table.name: d.as_dict() for d in diffs}


def keys(items):
    return [(i["key"], i["columns"]) for i in items]


def test_identical_copies_then_damage_named_exactly(damaged):
    diffs = by_table(diff_tables(SOURCE, TARGET, **FAST))
    accounts = diffs["accounts"]
    assert (accounts["source_rows"], accounts["target_rows"]) == (30000, 30001)
    assert keys(accounts["missing"]) == [({"id": 777}, [])]
    assert keys(accounts["extra"]) == [({"id": -5}, []), ({"id": 30001}, [])]
    assert keys(accounts["changed"]) == [({"id": 12345}, ["balance"]), ({"id": 20000}, ["note", "updated_at"])]
    assert (accounts["missing_count"], accounts["extra_count"], accounts["changed_count"]) == (1, 2, 2)
    assert accounts["in_flight_count"] == 0 and accounts["chunks"] == 6

    docs = diffs["docs"]
    assert keys(docs["changed"]) == [({"id": 42}, ["body"])] and not docs["missing"] and not docs["extra"]

    pairs = diffs["pairs"]
    assert keys(pairs["changed"]) == [({"a": 3, "b": "b3"}, ["v"])]
    assert keys(pairs["extra"]) == [({"a": 999, "b": "zz"}, [])] and not pairs["missing"]

    events = diffs["events"]
    assert events["primary_key"] == [] and (events["missing_count"], events["extra_count"]) == (1, 0)
    assert [m["key"] for m in events["missing"]] == [{"kind": "click", "payload": "p7"}]
    assert (events["source_rows"], events["target_rows"]) == (200, 199)

    assert diffs["untouched"]["ok"] and not any(diffs[t]["ok"] for t in ("accounts", "docs", "pairs", "events"))
    text = format_diff(diff_tables(SOURCE, TARGET, [TableRef("public", "accounts")], **FAST))
    assert "missing on target: id=777" in text and "changed: id=12345 (balance); id=20000 (note, updated_at)" in text


def test_checksums_only_name_the_differing_ranges(damaged):
    diffs = {d.table.name: d for d in diff_tables(SOURCE, TARGET, row_diff=False, **FAST)}
    # Ranges start at keys 1, 5001, ... 25001: damage at -5 and 777, 12345, 20000, 30001.
    assert diffs["accounts"].differing_chunks == [
        "[-inf .. 5001)",
        "[10001 .. 15001)",
        "[15001 .. 20001)",
        "[25001 .. +inf]",
    ]
    assert diffs["accounts"].missing_count == diffs["accounts"].changed_count == 0  # no row diff asked
    assert diffs["events"].differing_chunks == ["whole table (no primary key)"]
    assert diffs["untouched"].ok and diffs["untouched"].differing_chunks == []


def test_sample_mode_finds_damage_it_samples(damaged):
    whole = diff_table(SOURCE, TARGET, TableRef("public", "accounts"), mode="sample", sample_size=40_000, **FAST)
    assert whole.mode == "sample" and whole.sampled >= 30_000 and whole.source_rows is None
    assert [d.key for d in whole.missing] == [{"id": 777}]
    assert [d.key for d in whole.extra] == [{"id": -5}, {"id": 30001}]
    assert [(d.key, d.columns) for d in whole.changed] == [
        ({"id": 12345}, ["balance"]),
        ({"id": 20000}, ["note", "updated_at"]),
    ]

    few = diff_table(SOURCE, TARGET, TableRef("public", "accounts"), mode="sample", sample_size=200, **FAST)
    assert 0 < few.sampled <= 400
    found = {d.key["id"] for d in few.missing + few.extra + few.changed}
    assert found <= {777, -5, 30001, 12345, 20000}  # whatever it samples, no false difference

    modes = {d.table.name: d.mode for d in diff_tables(SOURCE, TARGET, mode="sample", sample_size=1000, **FAST)}
    assert modes == {"accounts": "sample", "docs": "full", "pairs": "full", "events": "full", "untouched": "sample"}


SCHEMA = [
    "CREATE SCHEMA cmp",
    "CREATE SEQUENCE cmp.invoice_no START 1000",
    "CREATE TABLE cmp.customers (id int PRIMARY KEY, email text UNIQUE)",
    "CREATE TABLE cmp.orders (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, customer int NOT NULL "
    "REFERENCES cmp.customers (id), amount numeric(10,2) CHECK (amount > 0), status text DEFAULT 'new')",
    "CREATE INDEX orders_customer_idx ON cmp.orders (customer)",
]


def test_schema_compare(databases):
    for port, db in ((SOURCE_PORT, SRC_DB), (TARGET_PORT, DST_DB)):
        run(port, db, ["DROP SCHEMA IF EXISTS cmp CASCADE", *SCHEMA])
    # What the migration itself does to the target is not a difference.
    run(
        TARGET_PORT,
        DST_DB,
        [
            "ALTER TABLE cmp.orders ALTER COLUMN id SET GENERATED BY DEFAULT",
            "ALTER TABLE cmp.orders REPLICA IDENTITY FULL",
            "CREATE SCHEMA IF NOT EXISTS pgmigrate",
            "CREATE TABLE pgmigrate.heartbeat_x (id int PRIMARY KEY)",
        ],
    )
    assert compare_schemas(SOURCE, TARGET) == []  # every user schema: public and cmp
    strict = compare_schemas(SOURCE, TARGET, ["cmp"], ignore_identity_generation=False)
    assert [(d.kind, d.object) for d in strict] == [("column_identity", "cmp.orders.id")]

    run(
        TARGET_PORT,
        DST_DB,
        [
            "ALTER TABLE cmp.orders ADD COLUMN coupon text",
            "ALTER TABLE cmp.orders ALTER COLUMN amount TYPE numeric(12,2)",
            "DROP INDEX cmp.orders_customer_idx",
            "DROP SEQUENCE cmp.invoice_no",
            "ALTER TABLE cmp.orders DROP CONSTRAINT orders_customer_fkey",
            "ALTER TABLE cmp.orders ADD CONSTRAINT orders_customer_fkey FOREIGN KEY (customer) "
            "REFERENCES cmp.customers (id) NOT VALID",
        ],
    )
    differences = compare_schemas(SOURCE, TARGET, ["cmp"])
    assert differences == [
        SchemaDifference("column", "cmp.orders.coupon", None, "present"),
        SchemaDifference("column_type", "cmp.orders.amount", "numeric(10,2)", "numeric(12,2)"),
        SchemaDifference("constraint_validated", "cmp.orders.orders_customer_fkey", "valid", "NOT VALID"),
        SchemaDifference(
            "index",
            "cmp.orders_customer_idx",
            "CREATE INDEX orders_customer_idx ON cmp.orders USING btree (customer)",
            None,
        ),
        SchemaDifference(
            "sequence",
            "cmp.invoice_no",
            "bigint START 1000 INCREMENT 1 MINVALUE 1 MAXVALUE 9223372036854775807 CACHE 1",
            None,
        ),
    ]
    only = compare_schemas(SOURCE, TARGET, ["cmp"], tables=[TableRef("cmp", "customers")])
    assert only == []  # the damage is all on cmp.orders and a sequence no chosen table owns


@dataclass
class LaggingWriter:
    """Writes to the source and, `lag` seconds later in the same order, the same statements to the target:
    a pipeline with a steady lag. `statements(i)` gives one transaction's statements."""

    statements: object
    rate: float = 25.0
    lag: float = 0.4
    committed: int = 0
    errors: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _queue: queue.Queue = field(default_factory=queue.Queue)
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> LaggingWriter:
        self._threads = [threading.Thread(target=f, daemon=True) for f in (self._write, self._apply)]
        for thread in self._threads:
            thread.start()
        return self

    def _write(self) -> None:
        with psycopg.connect(conninfo(SOURCE_PORT, SRC_DB), autocommit=True) as conn:
            i = 0
            while not self._stop.is_set():
                i += 1
                batch = self.statements(i)
                try:
                    with conn.transaction():
                        for statement, args in batch:
                            conn.execute(statement, args)
                    self._queue.put((time.monotonic() + self.lag, batch))
                    self.committed += 1
                except Exception as exc:  # asserted on by the test
                    self.errors.append(f"source: {exc}")
                self._stop.wait(1.0 / self.rate)
        self._queue.put(None)

    def _apply(self) -> None:
        with psycopg.connect(conninfo(TARGET_PORT, DST_DB), autocommit=True) as conn:
            while (item := self._queue.get()) is not None:
                due, batch = item
                time.sleep(max(0.0, due - time.monotonic()))
                try:
                    with conn.transaction():
                        for statement, args in batch:
                            conn.execute(statement, args)
                except Exception as exc:
                    self.errors.append(f"target: {exc}")

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)


def test_live_writes_report_no_false_difference(databases):
    live = [
        "DROP TABLE IF EXISTS live_accounts, live_log",
        "CREATE TABLE live_accounts (id int PRIMARY KEY, balance int NOT NULL, note text)",
        "INSERT INTO live_accounts SELECT g, g, 'n' FROM generate_series(1, 20000) g",
        "CREATE TABLE live_log (at int, what text)",
        "INSERT INTO live_log SELECT g, 'seed' FROM generate_series(1, 500) g",
        "ANALYZE live_accounts, live_log",
    ]
    run(SOURCE_PORT, SRC_DB, live)
    run(TARGET_PORT, DST_DB, live)
    rng = random.Random(7)

    def statements(i: int):
        return [
            ("UPDATE live_accounts SET balance = balance + 1 WHERE id = %s", (rng.randint(11, 20000),)),
            ("INSERT INTO live_accounts VALUES (%s, 0, 'new')", (100_000 + i,)),
            ("DELETE FROM live_accounts WHERE id = %s", (10 + i,)),
            ("INSERT INTO live_log VALUES (%s, 'write')", (i,)),
        ]

    writer = LaggingWriter(statements).start()
    try:
        time.sleep(1.5)
        tables = [TableRef("public", "live_accounts"), TableRef("public", "live_log")]
        options = {"pause_seconds": 1.0, "attempts": 6, "rows_per_chunk": 4000, "leaf_rows": 64}
        clean = diff_tables(SOURCE, TARGET, tables, **options)
        # A real difference made while writes go on (a row the writer never touches) is still found.
        run(TARGET_PORT, DST_DB, ["UPDATE live_accounts SET note = 'damaged' WHERE id = 5"])
        damaged = diff_table(SOURCE, TARGET, tables[0], **options)
    finally:
        writer.stop()
    assert not writer.errors and writer.committed > 20
    assert all(d.ok for d in clean), format_diff(clean)
    # The pass over the key ranges met rows still in flight and the re-check cleared them.
    assert any(d.attempts > 0 for d in clean)
    assert [(d.key, d.columns) for d in damaged.changed] == [({"id": 5}, ["note"])]
    assert not damaged.missing and not damaged.extra
    # The simulated pipeline kept both sides equal apart from the damage (checks the test's own writer).
    src, dst = (table_fingerprints(port, db, ["public"]) for port, db in ((SOURCE_PORT, SRC_DB), (TARGET_PORT, DST_DB)))
    assert src["public.live_log"] == dst["public.live_log"]
