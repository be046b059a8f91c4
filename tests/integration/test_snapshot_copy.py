"""The `copy` snapshot method against the real source and target PostgreSQL 15 servers.

Database `copytest` on both servers, slot `copytest_slot`, publication `copytest_pub`; all dropped at
the end. Proves: the copy is identical, it is the source AS OF the slot's consistent point even while a
writer is busy (the rows missing on the target are exactly those the slot will stream), a rerun after
a crash converges, and a failing chunk names its table.
"""

from __future__ import annotations

import logging
import os
import re
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import astuple

import psycopg
import pytest
from psycopg import sql

from pgmigrate.core.catalog import TableInfo, TableRef, list_tables
from pgmigrate.core.endpoints import PgEndpoint
from pgmigrate.load.copy_plan import copy_format_for
from pgmigrate.load.replication_slot import drop_slot_if_exists
from pgmigrate.load.snapshot_copy import SnapshotCopyError, run_snapshot_copy
from pgmigrate.validate.checksums import set_canonical_session

DB = "copytest"
SLOT = "copytest_slot"
PUB = "copytest_pub"
BIN = "/usr/lib/postgresql/15/bin"
SOURCE = PgEndpoint("127.0.0.1", 5433, DB, "postgres", "postgres")
TARGET = PgEndpoint("127.0.0.1", 5434, DB, "postgres", "postgres")
ORDERS = 200_000
CHUNK_PAGES = 500  # orders is ~4,000 pages: it splits into several chunks

SCHEMA = """
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE TYPE pair AS (a int, b text);
CREATE TABLE orders (
    id bigint PRIMARY KEY, legacy int, customer_id int NOT NULL, amount numeric(12,2) NOT NULL, qty int NOT NULL,
    total numeric GENERATED ALWAYS AS (amount * qty) STORED, created timestamptz NOT NULL, payload bytea, note text
);
ALTER TABLE orders DROP COLUMN legacy;
CREATE TABLE customers (
    id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, name text NOT NULL, mood mood, balance numeric, photo bytea
);
CREATE TABLE tagged (
    id int PRIMARY KEY, moods mood[], pt pair, note text, f float8, at timestamptz, span interval
);
CREATE TABLE events (id int NOT NULL, at date NOT NULL, kind text) PARTITION BY RANGE (at);
CREATE TABLE events_2025 PARTITION OF events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
CREATE TABLE events_2026 PARTITION OF events FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
CREATE TABLE events_default PARTITION OF events DEFAULT;
CREATE TABLE audit_log (msg text, at timestamptz);
CREATE TABLE writes (id int PRIMARY KEY);
CREATE TABLE counters (id int PRIMARY KEY, n int NOT NULL);
"""

DATA = """
INSERT INTO orders (id, customer_id, amount, qty, created, payload, note)
SELECT i, i % 1000, (i % 9973) / 7.0, i % 10 + 1, '2026-01-01'::timestamptz + i * interval '1 minute',
       decode(md5(i::text) || md5((i * 7)::text), 'hex'), CASE WHEN i % 5 = 0 THEN NULL ELSE 'order ' || i END
FROM generate_series(1, ORDERS) i;
INSERT INTO customers (name, mood, balance, photo)
SELECT 'customer ' || i, (ARRAY['sad', 'ok', 'happy', NULL])[i % 4 + 1]::mood,
       CASE WHEN i % 7 = 0 THEN 'NaN'::numeric WHEN i % 11 = 0 THEN NULL ELSE i * 1.5 END,
       CASE WHEN i % 3 = 0 THEN '\\x00ff00deadbeef'::bytea END
FROM generate_series(1, 1000) i;
INSERT INTO tagged VALUES
    (1, '{sad,happy}', (1, 'x'), E'tab\\there\\nnewline \\\\ backslash', 0.1 + 0.2, '2026-03-01 12:34:56.789+02',
     '1 day 02:03'),
    (2, '{}', NULL, '\\N is not null', 'NaN', 'infinity', '-3 mons'),
    (3, NULL, (NULL, 'ü "quoted", comma'), NULL, -1e-300, NULL, NULL),
    (4, '{ok,NULL}', (3, ''), 'ünïcødé ✓', 'Infinity', '1999-12-31 23:59:59+00', '0');
INSERT INTO events SELECT i, date '2025-06-01' + (i % 900), 'kind ' || (i % 13) FROM generate_series(1, 30000) i;
INSERT INTO audit_log SELECT 'no primary key ' || i, now() FROM generate_series(1, 500) i;
INSERT INTO counters VALUES (1, 0);
ANALYZE;
""".replace("ORDERS", str(ORDERS))


def admin(port: int) -> psycopg.Connection:
    return psycopg.connect(
        host="127.0.0.1", port=port, user="postgres", password="postgres", dbname="postgres", autocommit=True
    )


def recreate_database(port: int) -> None:
    with admin(port) as conn:
        conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (DB,))
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(DB)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DB)))


def drop_database(port: int) -> None:
    with admin(port) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(DB)))


@pytest.fixture(scope="module")
def tables() -> Iterator[list[TableInfo]]:
    recreate_database(5433)
    recreate_database(5434)
    try:
        with SOURCE.connect(autocommit=True) as conn:
            conn.execute(SCHEMA)
            conn.execute(DATA)
        dump = subprocess.run(
            f"{BIN}/pg_dump --schema-only --no-publications --no-subscriptions | "
            f"{BIN}/psql -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p 5434 -U postgres -d {DB}",
            shell=True,
            env=SOURCE.libpq_env(),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert dump.returncode == 0, dump.stderr
        with SOURCE.connect(autocommit=True) as conn:
            # pgoutput decodes with the catalog as of each change: the publication must predate the slot.
            publication = sql.SQL("CREATE PUBLICATION {} FOR TABLE writes, counters, orders")
            conn.execute(publication.format(sql.Identifier(PUB)))
            selected = list_tables(conn, ["public"])
        yield selected
    finally:
        drop_slot_if_exists(SOURCE, SLOT)
        with SOURCE.connect(autocommit=True) as conn:
            conn.execute(sql.SQL("DROP PUBLICATION IF EXISTS {}").format(sql.Identifier(PUB)))
        drop_database(5433)
        drop_database(5434)


def fingerprint(endpoint: PgEndpoint, refs: list[TableRef]) -> dict[str, tuple[int, str]]:
    """count and md5 of every row's text form, in a fixed order, under the same text settings on both sides."""
    out = {}
    with endpoint.connect(autocommit=True) as conn:
        set_canonical_session(conn)
        for ref in refs:
            query = sql.SQL("SELECT count(*), md5(string_agg(t::text, '|' ORDER BY t::text)) FROM {} t").format(
                ref.ident
            )
            out[ref.qualified] = tuple(conn.execute(query).fetchone())
    return out


def all_refs(tables: list[TableInfo]) -> list[TableRef]:
    return [r for t in tables for r in (t.ref, *t.partitions)]


def assert_identical(tables: list[TableInfo]) -> None:
    source, target = fingerprint(SOURCE, all_refs(tables)), fingerprint(TARGET, all_refs(tables))
    assert target == source
    assert source["public.orders"][0] >= ORDERS and source["public.events_2026"][0] > 0


def slots() -> list[tuple[str, bool]]:
    with admin(5433) as conn:
        return conn.execute(
            "SELECT slot_name, active FROM pg_replication_slots WHERE slot_name LIKE 'copytest%' ORDER BY 1"
        ).fetchall()


def test_copy_is_identical_on_every_table(tables, caplog):
    by_name = {t.ref.name: t for t in tables}
    assert copy_format_for(by_name["customers"]) == "binary"  # plain enum, numeric NaN, bytea
    assert copy_format_for(by_name["tagged"]) == "text"  # enum[] and a composite
    progress: list[tuple[str, int, int, int, int]] = []
    caplog.set_level(logging.INFO, logger="pgmigrate.load.snapshot_copy")

    result = run_snapshot_copy(
        SOURCE, TARGET, tables, SLOT, parallelism=4, on_progress=lambda *a: progress.append(a), chunk_pages=CHUNK_PAGES
    )

    assert_identical(tables)
    assert result["slot"] == SLOT and re.fullmatch(r"[0-9A-F]+/[0-9A-F]+", result["consistent_lsn"])
    assert result["tables"]["public.orders"] == ORDERS and result["tables"]["public.events"] == 30000
    assert result["rows"] == sum(result["tables"].values()) and result["bytes"] > 0
    last = {p[0]: p for p in progress}
    assert set(last) == {t.ref.qualified for t in tables}
    assert all(done == total for _, _, _, done, total in last.values())  # every table reported complete
    assert last["public.orders"][4] >= 8 and last["public.events"][4] == 3  # split; leaf by leaf
    assert slots() == [(SLOT, False)]
    text = caplog.text
    line = r"copy: public\.orders \d+/\d+ chunks, [\d.]+k?/[\d.]+k? rows \(\d+%\), .+/s, ETA \d\d:\d\d:\d\d"
    assert re.search(line, text)
    assert re.search(r"public\.orders\s+200,000\s+", text)  # the summary table


def parse_tuple(data: bytes, pos: int) -> tuple[list[str | None], int]:
    (ncols,) = struct.unpack_from("!h", data, pos)
    pos += 2
    values: list[str | None] = []
    for _ in range(ncols):
        kind = data[pos : pos + 1]
        pos += 1
        if kind == b"t":
            (length,) = struct.unpack_from("!i", data, pos)
            values.append(data[pos + 4 : pos + 4 + length].decode())
            pos += 4 + length
        else:  # n: null, u: unchanged TOAST value
            values.append(None)
    return values, pos


def slot_changes() -> list[tuple[str, str, str]]:
    """(operation, table, first column) of every insert and update the slot holds, decoded from pgoutput v1."""
    with SOURCE.connect(autocommit=True) as conn:
        rows = conn.execute(
            "SELECT data FROM pg_logical_slot_peek_binary_changes(%s, NULL, NULL, 'proto_version', '1', "
            "'publication_names', %s)",
            (SLOT, PUB),
        ).fetchall()
    relations: dict[int, str] = {}
    changes = []
    for (data,) in rows:
        tag = data[:1]
        if tag == b"R":
            (relid,) = struct.unpack_from("!I", data, 1)
            _namespace, name, _ = data[5:].split(b"\0", 2)
            relations[relid] = name.decode()
        elif tag in (b"I", b"U"):
            (relid,) = struct.unpack_from("!I", data, 1)
            pos = 5
            if data[pos : pos + 1] in (b"K", b"O"):  # old key or old tuple first
                _, pos = parse_tuple(data, pos + 1)
            assert data[pos : pos + 1] == b"N"
            values, _ = parse_tuple(data, pos + 1)
            changes.append((tag.decode(), relations[relid], values[0]))
    return changes


class Writer(threading.Thread):
    """Commits one transaction after another on the source: a row in `writes`, the counter, a new order,
    and an update of an order in the last pages (copied by the last, open-ended chunk)."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.committed = 0
        self.stop = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with SOURCE.connect() as conn:
                while not self.stop.is_set():
                    k = self.committed + 1
                    conn.execute("INSERT INTO writes VALUES (%s)", (k,))
                    conn.execute("UPDATE counters SET n = %s WHERE id = 1", (k,))
                    conn.execute(
                        "INSERT INTO orders (id, customer_id, amount, qty, created) VALUES (%s, 1, 1, 1, now())",
                        (300_000 + k,),
                    )
                    conn.execute("UPDATE orders SET qty = qty + 100 WHERE id = %s", (ORDERS + 1 - k,))
                    conn.commit()
                    self.committed = k
                    time.sleep(0.002)
        except BaseException as exc:  # surfaced by the test
            self.error = exc

    def wait_for(self, committed: int, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while self.committed < committed:
            assert self.error is None and time.monotonic() < deadline, self.error
            time.sleep(0.01)


def test_copy_is_the_source_as_of_the_slot_while_a_writer_is_busy(tables):
    writer = Writer()
    writer.start()
    writer.wait_for(3)
    seen_at_first_chunk: list[int] = []

    def on_progress(*_):
        if not seen_at_first_chunk:  # the slot exists by now: make sure some commits land during the copy
            seen_at_first_chunk.append(writer.committed)
            writer.wait_for(writer.committed + 20)

    try:
        run_snapshot_copy(SOURCE, TARGET, tables, SLOT, 3, on_progress=on_progress, chunk_pages=CHUNK_PAGES)
    finally:
        writer.stop.set()
        writer.join()
    assert writer.error is None
    total = writer.committed

    with TARGET.connect(autocommit=True) as conn:
        copied = [r[0] for r in conn.execute("SELECT id FROM writes ORDER BY id")]
        counter = conn.execute("SELECT n FROM counters").fetchone()[0]
        new_orders = [r[0] for r in conn.execute("SELECT id FROM orders WHERE id > %s ORDER BY id", (ORDERS,))]
        bumped = [r[0] for r in conn.execute("SELECT id FROM orders WHERE qty > 100 ORDER BY id DESC")]
    m = len(copied)
    # One consistent moment across tables and chunks: the first m transactions, all of their effects.
    assert copied == list(range(1, m + 1)) and counter == m
    assert new_orders == [300_000 + k for k in range(1, m + 1)]  # rows appended into the open-ended chunk's range
    assert bumped == [ORDERS + 1 - k for k in range(1, m + 1)]
    assert 3 <= m and total - m >= 20, (m, total)
    with SOURCE.connect(autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM writes").fetchone()[0] == total

    # Nothing missed, nothing twice: the slot holds exactly the transactions the copy does not.
    changes = slot_changes()
    assert [int(v) for op, rel, v in changes if rel == "writes"] == list(range(m + 1, total + 1))
    assert [int(v) for op, rel, v in changes if rel == "orders" and op == "I"] == [
        300_000 + k for k in range(m + 1, total + 1)
    ]
    assert [int(v) for op, rel, v in changes if rel == "orders" and op == "U"] == [
        ORDERS + 1 - k for k in range(m + 1, total + 1)
    ]


CRASHING_COPY = f"""
import time
from pgmigrate.core.catalog import list_tables
from pgmigrate.core.endpoints import PgEndpoint
from pgmigrate.load.snapshot_copy import run_snapshot_copy

source, target = PgEndpoint(*{astuple(SOURCE)!r}), PgEndpoint(*{astuple(TARGET)!r})
with source.connect() as conn:
    tables = list_tables(conn, ["public"])

def on_progress(*args):
    print("chunk committed", flush=True)
    time.sleep(60)

run_snapshot_copy(source, target, tables, {SLOT!r}, 4, on_progress=on_progress, chunk_pages={CHUNK_PAGES})
"""


def test_a_failed_copy_stops_its_chunks_and_drops_its_slot(tables):
    def crash(table, rows, nbytes, done, total):
        raise RuntimeError(f"simulated crash after a chunk of {table}")

    with pytest.raises(RuntimeError, match="simulated crash"):
        run_snapshot_copy(SOURCE, TARGET, tables, SLOT, 4, on_progress=crash, chunk_pages=CHUNK_PAGES)
    with TARGET.connect(autocommit=True) as conn:
        partial = conn.execute("SELECT count(*) FROM orders").fetchone()[0]
    assert 0 < partial < ORDERS  # committed chunks stay, the rest were stopped
    assert slots() == []  # useless without its snapshot: dropped so it holds no WAL


def test_rerun_after_a_hard_crash_converges_and_leaves_one_slot(tables, repo):
    # A worker killed mid-copy: no cleanup at all, the slot and some committed chunks stay behind.
    crashing = subprocess.Popen(
        [sys.executable, "-c", CRASHING_COPY],
        cwd=repo,
        env={**os.environ, "PYTHONPATH": str(repo / "plugins")},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert crashing.stdout.readline() == "chunk committed\n", crashing.stderr.read()
    finally:
        crashing.kill()
        crashing.wait()
    assert slots() == [(SLOT, False)]
    with TARGET.connect(autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM orders").fetchone()[0] > 0  # the committed chunk stayed

    # A walsender still streaming from the old slot (as the source connector would) must not block the rerun.
    recv = subprocess.Popen(
        [
            f"{BIN}/pg_recvlogical",
            "-h",
            "127.0.0.1",
            "-p",
            "5433",
            "-U",
            "postgres",
            "-d",
            DB,
            "--slot",
            SLOT,
            "--start",
            "--no-loop",
            "-o",
            "proto_version=1",
            "-o",
            f"publication_names={PUB}",
            "-f",
            "/dev/null",
        ],
        env=SOURCE.libpq_env(),
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 15
        while slots() != [(SLOT, True)]:
            assert time.monotonic() < deadline and recv.poll() is None, slots()
            time.sleep(0.1)
        result = run_snapshot_copy(SOURCE, TARGET, tables, SLOT, 4, chunk_pages=CHUNK_PAGES)
        assert recv.wait(timeout=15) != 0  # terminated by the rerun
    finally:
        if recv.poll() is None:
            recv.kill()
            recv.wait()

    assert_identical(tables)
    assert slots() == [(SLOT, False)]
    with admin(5433) as conn:
        lsn = conn.execute("SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = %s", (SLOT,))
        assert lsn.fetchone()[0] == result["consistent_lsn"]


def test_the_sources_session_timeouts_do_not_end_a_long_copy(tables):
    """Timeouts a DBA set on the source database for the application ended the slot's exporting session (idle for
    the whole copy) and the idle-between-chunks workers: "invalid snapshot identifier" on every rerun. The
    pipeline's own sessions turn them off."""
    timeouts = ("idle_session_timeout", "idle_in_transaction_session_timeout", "statement_timeout")
    with admin(5433) as conn:
        for name in timeouts:
            conn.execute(sql.SQL("ALTER DATABASE {} SET {} = '500ms'").format(sql.Identifier(DB), sql.Identifier(name)))
    try:
        # One worker, small chunks: chunks keep starting (each imports the exported snapshot) seconds after the slot.
        started = time.monotonic()
        run_snapshot_copy(SOURCE, TARGET, tables, SLOT, 1, chunk_pages=CHUNK_PAGES // 50)
        assert time.monotonic() - started > 1, "the copy must outlast the timeouts for this test to mean anything"
    finally:
        with admin(5433) as conn:
            conn.execute(sql.SQL("ALTER DATABASE {} RESET ALL").format(sql.Identifier(DB)))
    assert_identical(tables)  # (this test's own sessions, after the reset)
    drop_slot_if_exists(SOURCE, SLOT)


def test_a_failing_chunk_names_the_table_and_says_how_to_recover(tables):
    with TARGET.connect(autocommit=True) as conn:
        conn.execute("ALTER TABLE customers DROP COLUMN balance")
    try:
        with pytest.raises(SnapshotCopyError) as failure:
            run_snapshot_copy(SOURCE, TARGET, tables, SLOT, 4, chunk_pages=CHUNK_PAGES)
    finally:
        with TARGET.connect(autocommit=True) as conn:
            conn.execute("ALTER TABLE customers ADD COLUMN balance numeric")  # now last: t::text differs after this
    message = str(failure.value)
    assert failure.value.table == "public.customers"
    assert "public.customers" in message and 'column "balance" of relation "customers" does not exist' in message
    assert "rerun the `snapshot` task" in message
    assert slots() == []
