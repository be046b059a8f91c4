"""Cost of the row-diff validation against the cheapest full read: times `row_diff.diff_tables` (full mode)
over every table of the given schemas, and a plain `SELECT md5(string_agg(t::text, '' ORDER BY pk))` of each
table on both sides (keyless tables without ORDER BY), and prints both and their ratio (goal: at most 2x).

    scripts/with-stack-env .venv/bin/python scripts/bench_validation.py --source-db X --target-db Y [--schema public]
    scripts/with-stack-env .venv/bin/python scripts/bench_validation.py --source-db rowdiff_src \\
        --target-db rowdiff_dst --seed 500000

`--seed N` first (re)builds the schema `rowdiff_bench` with about N rows in both databases (created when
missing; nothing else in them is touched) and benchmarks that schema: four tables, one keyless, one with
~3 kB text values stored out of line (TOAST). Each figure is the best of `--repeat` runs (the first warms
the cache for both).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import psycopg
from psycopg import sql

from pgmigrate.core.catalog import list_tables
from pgmigrate.core.endpoints import PgEndpoint
from pgmigrate.validate.checksums import set_canonical_session
from pgmigrate.validate.row_diff import diff_tables

BENCH_SCHEMA = "rowdiff_bench"
# Share of the rows per table; the docs table holds the TOASTed values.
SEED = [
    (
        "accounts",
        0.6,
        "CREATE TABLE {s}.accounts (id bigint PRIMARY KEY, owner text NOT NULL, balance numeric(14,2), "
        "note text, created_at timestamptz NOT NULL)",
        "INSERT INTO {s}.accounts SELECT g, 'owner ' || g, (g % 100000) / 7.0, CASE WHEN g % 5 = 0 THEN NULL ELSE "
        "md5(g::text) END, timestamptz '2026-01-01 00:00+00' + g * interval '1 second' FROM generate_series(1, {n}) g",
    ),
    (
        "orders",
        0.3,
        "CREATE TABLE {s}.orders (account_id bigint, n int, amount numeric(10,2), status text, "
        "PRIMARY KEY (account_id, n))",
        "INSERT INTO {s}.orders SELECT g / 3, g % 3, g % 1000, (ARRAY['new','paid','shipped'])[1 + g % 3] "
        "FROM generate_series(1, {n}) g",
    ),
    (
        "docs",
        0.04,
        "CREATE TABLE {s}.docs (id int PRIMARY KEY, title text, body text); "
        "ALTER TABLE {s}.docs ALTER COLUMN body SET STORAGE EXTERNAL",
        "INSERT INTO {s}.docs SELECT g, 'doc ' || g, (SELECT string_agg(md5(g || '-' || i), '') "
        "FROM generate_series(1, 100) i) FROM generate_series(1, {n}) g",
    ),
    (
        "events",
        0.06,
        "CREATE TABLE {s}.events (at timestamptz, kind text, payload text)",
        "INSERT INTO {s}.events SELECT timestamptz '2026-01-01 00:00+00' + (g % 1000) * interval '1 minute', "
        "'click', 'p' || g % 500 FROM generate_series(1, {n}) g",
    ),
]


def endpoint(args: argparse.Namespace, port: int, dbname: str) -> PgEndpoint:
    return PgEndpoint(args.host, port, dbname, args.user, os.environ.get("PGPASSWORD", "postgres"))


def seed(target: PgEndpoint, rows: int) -> None:
    """Same deterministic INSERTs on each side: identical data without replication."""
    with psycopg.connect(target.conninfo(dbname="postgres"), autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (target.dbname,)).fetchone():
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(target.dbname)))
    with target.connect(autocommit=True) as conn:
        schema = sql.Identifier(BENCH_SCHEMA)
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(schema))
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(schema))
        for _name, share, ddl, insert in SEED:
            for statement in ddl.split("; "):
                conn.execute(sql.SQL(statement).format(s=schema))
            conn.execute(sql.SQL(insert).format(s=schema, n=sql.Literal(max(1, int(rows * share)))))
        conn.execute(sql.SQL("VACUUM ANALYZE"))


def plain_scan(source: PgEndpoint, target: PgEndpoint, schemas: list[str]) -> float:
    """The reference: one ordered md5(string_agg) per table and side, sides one after the other."""
    started = time.monotonic()
    for endpoint_ in (source, target):
        with endpoint_.connect(autocommit=True) as conn:
            set_canonical_session(conn)
            for table in list_tables(conn, schemas):
                order = (
                    sql.SQL(" ORDER BY {}").format(sql.SQL(", ").join(sql.Identifier(c) for c in table.primary_key))
                    if table.primary_key
                    else sql.SQL("")
                )
                conn.execute(
                    sql.SQL("SELECT md5(string_agg(t::text, ''{order})) FROM {table} AS t").format(
                        order=order, table=table.ref.ident
                    )
                ).fetchone()
    return time.monotonic() - started


def row_diff(source: PgEndpoint, target: PgEndpoint, schemas: list[str]) -> tuple[float, list]:
    started = time.monotonic()
    diffs = diff_tables(source, target, mode="full", schemas=schemas)
    return time.monotonic() - started, diffs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source-db", required=True)
    parser.add_argument("--target-db", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--source-port", type=int, default=5433)
    parser.add_argument("--target-port", type=int, default=5434)
    parser.add_argument("--user", default="postgres")
    parser.add_argument("--schema", action="append", help="schema to compare (repeatable; default public)")
    parser.add_argument("--seed", type=int, metavar="ROWS", help=f"(re)build schema {BENCH_SCHEMA} with ~ROWS rows")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON too")
    args = parser.parse_args()
    source = endpoint(args, args.source_port, args.source_db)
    target = endpoint(args, args.target_port, args.target_db)
    schemas = args.schema or ([BENCH_SCHEMA] if args.seed else ["public"])
    if args.seed:
        print(f"seeding {BENCH_SCHEMA} with ~{args.seed} rows on both sides …", file=sys.stderr, flush=True)
        for side in (source, target):
            seed(side, args.seed)
    plain_runs, diff_runs = [], []
    diffs: list = []
    for n in range(1, args.repeat + 1):
        plain_runs.append(plain_scan(source, target, schemas))
        seconds, diffs = row_diff(source, target, schemas)
        diff_runs.append(seconds)
        print(f"run {n}: plain scan {plain_runs[-1]:.2f} s, row diff {seconds:.2f} s", file=sys.stderr, flush=True)
    plain, validation = min(plain_runs), min(diff_runs)
    rows = sum(d.source_rows or 0 for d in diffs)
    figures = {
        "tables": len(diffs),
        "rows_per_side": rows,
        "differing_tables": [d.table.qualified for d in diffs if not d.ok],
        "plain_scan_seconds": round(plain, 3),
        "row_diff_seconds": round(validation, 3),
        "ratio": round(validation / plain, 2) if plain else None,
    }
    print(f"tables: {len(diffs)}, rows per side: {rows}, differing tables: {len(figures['differing_tables'])}")
    print(f"plain md5(string_agg) scan of both sides: {plain:.2f} s")
    print(f"row diff validation (full mode):          {validation:.2f} s")
    print(f"ratio: {figures['ratio']}x (goal <= 2x)")
    if args.json:
        print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
