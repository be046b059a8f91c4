"""Great Expectations suites generated from a source database, run on the target through a GE checkpoint.

Source and target are scratch databases with the same data; GE reads the target as a read-only role whose
password must end up in no file of the GE project. Then the target is broken in four ways a migration could
break it and the checkpoint must fail naming each expectation and column."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from pgmigrate.core.catalog import list_tables
from pgmigrate.core.endpoints import PgEndpoint
from pgmigrate.validate.ge_checkpoint import PASSWORD_VARIABLE, run_checkpoint
from pgmigrate.validate.ge_suites import GENERATED_MARK, generate_suites
from tests.integration.harness import SOURCE_PORT, TARGET_PORT, conninfo, endpoint

pytestmark = pytest.mark.integration

SRC_DB, DST_DB = "gx_src", "gx_dst"
READER, READER_PASSWORD = "gx_reader", "gx-secret-pw"
MIGRATION_ID = "gx-test"
ROWS = 200

SCHEMA_SQL = """
CREATE TYPE mood AS ENUM ('happy', 'sad', 'meh');
CREATE TABLE items (
    id integer PRIMARY KEY,
    name text NOT NULL,
    price numeric(12, 2) NOT NULL,
    created_at timestamptz NOT NULL,
    mood mood NOT NULL,
    note text,
    born date
);
CREATE TABLE order_lines (
    order_id bigint,
    line_no integer,
    qty integer NOT NULL,
    weight real,
    PRIMARY KEY (order_id, line_no)
);
INSERT INTO items
SELECT g, 'item ' || g, g * 1.25, timestamptz '2026-01-01 00:00:00+00' + g * interval '1 hour',
       (ARRAY['happy', 'sad'])[1 + g % 2]::mood, CASE WHEN g % 3 = 0 THEN NULL ELSE 'n' || g END,
       date '2000-01-01' + g
FROM generate_series(1, 200) g;
INSERT INTO order_lines SELECT g / 4, g % 4, g, g * 1.1 FROM generate_series(1, 119) g;
-- Past 2**53 (a float cannot hold it exactly); real values whose text form depends on extra_float_digits.
INSERT INTO order_lines VALUES (9007199254740993, 0, 1, 1.1);
"""


def _recreate(port: int, db: str) -> None:
    with psycopg.connect(conninfo(port, "postgres"), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(db)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(db)))
    with psycopg.connect(conninfo(port, db), autocommit=True) as conn:
        conn.execute(SCHEMA_SQL)


def _drop(port: int, db: str) -> None:
    with psycopg.connect(conninfo(port, "postgres"), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(db)))


@pytest.fixture(scope="module")
def databases():
    _recreate(SOURCE_PORT, SRC_DB)
    _recreate(TARGET_PORT, DST_DB)
    with psycopg.connect(conninfo(TARGET_PORT, "postgres"), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(READER)))
        conn.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(READER), sql.Literal(READER_PASSWORD))
        )
    with psycopg.connect(conninfo(TARGET_PORT, DST_DB), autocommit=True) as conn:
        conn.execute(sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA public TO {}").format(sql.Identifier(READER)))
    yield endpoint(SOURCE_PORT, SRC_DB), PgEndpoint("127.0.0.1", TARGET_PORT, DST_DB, READER, READER_PASSWORD)
    _drop(SOURCE_PORT, SRC_DB)
    _drop(TARGET_PORT, DST_DB)
    with psycopg.connect(conninfo(TARGET_PORT, "postgres"), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(READER)))


def _suite(path: Path) -> dict:
    return json.loads(path.read_text())


def _by_type(suite: dict) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for expectation in suite["expectations"]:
        out.setdefault(expectation["type"], []).append(expectation["kwargs"])
    return out


def _failures(summary: dict, table: str) -> set[tuple[str, str | None]]:
    entry = next(t for t in summary["tables"] if t["table"] == table)
    return {(f["expectation"], f["column"]) for f in entry["failures"]}


def _committable(project: Path) -> dict[str, bytes]:
    """The GE project's files meant for git (everything outside uncommitted/)."""
    return {
        str(p.relative_to(project)): p.read_bytes()
        for p in project.rglob("*")
        if p.is_file() and "uncommitted" not in p.relative_to(project).parts
    }


def _gx_sessions() -> int:
    with psycopg.connect(conninfo(TARGET_PORT, "postgres")) as conn:
        return conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND application_name = 'pgmigrate-gx'", (DST_DB,)
        ).fetchone()[0]


def test_suites_from_source_checkpoint_on_target(databases, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    source, target = databases
    root = tmp_path / "great_expectations"
    with source.connect() as conn:
        tables = list_tables(conn, ["public"])
    assert [t.ref.name for t in tables] == ["items", "order_lines"]

    started = time.monotonic()
    paths = generate_suites(source, tables, MIGRATION_ID, root)
    generated_in = time.monotonic() - started
    assert [p.relative_to(root / MIGRATION_ID).as_posix() for p in paths] == [
        "gx/expectations/public/items.json",
        "gx/expectations/public/order_lines.json",
    ]
    assert all(p.exists() for p in paths)

    items = _by_type(_suite(paths[0]))
    assert items["expect_table_row_count_to_equal"] == [{"value": ROWS}]
    assert items["expect_table_columns_to_match_ordered_list"][0]["column_list"] == [
        "id",
        "name",
        "price",
        "created_at",
        "mood",
        "note",
        "born",
    ]
    assert items["expect_column_values_to_be_unique"] == [{"column": "id"}]
    assert {k["column"] for k in items["expect_column_values_to_not_be_null"]} == {
        "id",
        "name",
        "price",
        "created_at",
        "mood",
    }
    assert items["expect_column_values_to_be_in_set"] == [{"column": "mood", "value_set": ["happy", "sad", "meh"]}]
    assert {k["column"]: k["type_"] for k in items["expect_column_values_to_be_of_type"]} == {
        "id": "INTEGER",
        "name": "TEXT",
        "price": "NUMERIC(12, 2)",
        "created_at": "TIMESTAMP WITH TIME ZONE",
        "mood": "mood",
        "note": "TEXT",
        "born": "DATE",
    }
    maxima = {k["column"]: (k["min_value"], k["max_value"]) for k in items["expect_column_max_to_be_between"]}
    assert maxima["id"] == (ROWS, ROWS)
    assert maxima["price"][0] <= 250.0 <= maxima["price"][1]
    assert maxima["created_at"][0].startswith("2026-01-09T08:00:00")
    lines = _by_type(_suite(paths[1]))
    assert lines["expect_compound_columns_to_be_unique"] == [{"column_list": ["order_id", "line_no"]}]
    assert lines["expect_table_row_count_to_equal"] == [{"value": 120}]
    low, high = next(
        (k["min_value"], k["max_value"]) for k in lines["expect_column_max_to_be_between"] if k["column"] == "order_id"
    )
    assert low < 2**53 + 1 < high  # bracketed: the target reads it as an exact int

    # Idempotent: regenerating an unchanged source writes the same files; a hand-added expectation survives.
    before = [p.read_bytes() for p in paths]
    generate_suites(source, tables, MIGRATION_ID, root, regenerate=True)
    assert [p.read_bytes() for p in paths] == before
    edited = _suite(paths[1])
    edited["expectations"].append(
        {"type": "expect_column_values_to_be_between", "kwargs": {"column": "qty", "min_value": 0}, "meta": {}}
    )
    paths[1].write_text(json.dumps(edited, indent=2))
    user_edit = paths[1].read_bytes()
    generate_suites(source, tables, MIGRATION_ID, root)  # existing suites are left alone
    assert paths[1].read_bytes() == user_edit
    generate_suites(source, tables, MIGRATION_ID, root, regenerate=True)
    regenerated = _suite(paths[1])
    assert [e for e in regenerated["expectations"] if e.get("meta") != GENERATED_MARK][0]["kwargs"] == {
        "column": "qty",
        "min_value": 0,
    }
    assert len(regenerated["expectations"]) == len(edited["expectations"])

    started = time.monotonic()
    summary = run_checkpoint(target, MIGRATION_ID, tables, root)
    checked_in = time.monotonic() - started
    print(f"generate {generated_in:.1f}s, checkpoint {checked_in:.1f}s")
    assert summary["success"] is True, json.dumps(summary, indent=2)
    assert [t["suite"] for t in summary["tables"]] == ["public.items", "public.order_lines"]
    for entry in summary["tables"]:
        assert entry["success"] and entry["evaluated"] == entry["successful"] > 5 and entry["failures"] == []
    index = Path(summary["data_docs_index"])
    assert index.name == "index.html" and index.is_relative_to(root)
    html = index.read_text()
    assert "public.items" in html and "public.order_lines" in html
    json.dumps(summary)  # JSON-able
    assert _gx_sessions() == 0  # GE's pooled connections to the target are closed after the run
    config_after_first_run = _committable(root / MIGRATION_ID)

    # Break the target the ways a migration could.
    with psycopg.connect(conninfo(TARGET_PORT, DST_DB), autocommit=True) as conn:
        conn.execute("ALTER TYPE mood ADD VALUE 'angry'")
        conn.execute("UPDATE items SET mood = 'angry' WHERE id = 2")
        conn.execute("ALTER TABLE items ALTER COLUMN name DROP NOT NULL")
        conn.execute("UPDATE items SET name = NULL WHERE id = 3")
        conn.execute("INSERT INTO items VALUES (1000, 'extra', 99999.99, now(), 'sad', NULL, NULL)")
        conn.execute("ALTER TABLE order_lines DROP CONSTRAINT order_lines_pkey")
        conn.execute("INSERT INTO order_lines VALUES (1, 1, 5, 2.2)")
    broken = run_checkpoint(target, MIGRATION_ID, tables, root)
    assert broken["success"] is False
    items_failed = _failures(broken, "public.items")
    assert {
        ("expect_table_row_count_to_equal", None),
        ("expect_column_values_to_be_in_set", "mood"),
        ("expect_column_values_to_not_be_null", "name"),
        ("expect_column_max_to_be_between", "id"),
        ("expect_column_max_to_be_between", "price"),
    } <= items_failed, items_failed
    failures = {(f["expectation"], f["column"]): f for f in broken["tables"][0]["failures"]}
    assert failures[("expect_table_row_count_to_equal", None)]["observed_value"] == ROWS + 1
    assert failures[("expect_column_values_to_be_in_set", "mood")]["partial_unexpected_list"] == ["angry"]
    assert failures[("expect_column_values_to_not_be_null", "name")]["unexpected_count"] == 1
    lines_failed = next(t for t in broken["tables"] if t["table"] == "public.order_lines")["failures"]
    assert {(f["expectation"], tuple(f["columns"] or ())) for f in lines_failed} >= {
        ("expect_compound_columns_to_be_unique", ("order_id", "line_no"))
    }

    # A rerun changes nothing meant for git (datasource, assets, definitions and checkpoint are reused).
    assert _committable(root / MIGRATION_ID) == config_after_first_run
    # The reader's password is in no file of the GE project; the config holds a reference to it.
    leaks = [p for p in root.rglob("*") if p.is_file() and READER_PASSWORD.encode() in p.read_bytes()]
    assert leaks == []
    config = (root / MIGRATION_ID / "gx" / "great_expectations.yml").read_text()
    assert "${" + PASSWORD_VARIABLE + "}" in config and READER in config
    assert READER_PASSWORD not in json.dumps(broken)
    assert "pgmigrate-gx" in caplog.text or "GE checkpoint" in caplog.text  # logs were captured at all
    assert READER_PASSWORD not in caplog.text
