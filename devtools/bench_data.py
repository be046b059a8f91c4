"""The benchmark database of `make bench`: pgbench's tables plus wide tables with jsonb and text,
some values large enough to be TOASTed, built on the source to about a requested size.

The layout and requested size are recorded in the database's comment, so a later run reuses the
database when both match and rebuilds it otherwise (also after an interrupted build: the comment is
written last).
"""

from __future__ import annotations

import logging
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from psycopg import sql

from devtools.databases import database_exists, recreate_database
from pgmigrate.core.endpoints import PgEndpoint

log = logging.getLogger(__name__)

# Bump when the layout below changes: an existing bench database of another layout is rebuilt.
LAYOUT_VERSION = 1
# Measured on PostgreSQL 15 (tables + indexes): pgbench per scale unit, and bytes per row of the wide tables.
PGBENCH_MB_PER_SCALE = 15.0
DOC_ROW_BYTES = 1500
BLOB_ROW_BYTES = 8500
# Share of the requested size: pgbench tables, documents (jsonb + text, stored inline), blobs (TOASTed text).
PGBENCH_SHARE, DOCS_SHARE, BLOBS_SHARE = 0.5, 0.3, 0.2
INSERT_CHUNK_ROWS = 20_000

DOCS_DDL = """
CREATE TABLE bench_docs (
    id bigint PRIMARY KEY,
    customer_id int NOT NULL,
    created_at timestamptz NOT NULL,
    status text NOT NULL,
    attrs jsonb NOT NULL,
    note text NOT NULL
);
CREATE TABLE bench_blobs (
    id bigint PRIMARY KEY,
    doc_id bigint NOT NULL,
    kind text NOT NULL,
    body text NOT NULL,
    meta jsonb NOT NULL
)
"""

# ~1.2 kB a row: an order-like jsonb document (8 lines) and a text note; stays inline.
DOCS_INSERT = """
INSERT INTO bench_docs
SELECT g, g %% 10000, timestamptz '2026-01-01' + g * interval '1 second',
       (ARRAY['new', 'paid', 'shipped', 'returned'])[1 + g %% 4],
       jsonb_build_object(
           'sku', md5(g::text), 'channel', (ARRAY['web', 'app', 'store'])[1 + g %% 3],
           'lines', (SELECT jsonb_agg(jsonb_build_object('n', i, 'qty', 1 + (g + i) %% 5,
                                                         'price', ((g * i) %% 100000) / 100.0,
                                                         'item', md5((g * 31 + i)::text)))
                     FROM generate_series(1, 8) i)),
       repeat(md5(g::text), 8)
FROM generate_series(%(lo)s::bigint, %(hi)s::bigint) g
"""

# 6.4 kB of hex text a row (hardly compressible): stored out of line in the TOAST table.
BLOBS_INSERT = """
INSERT INTO bench_blobs
SELECT g, 1 + g %% %(docs)s, 'k' || g %% 7,
       (SELECT string_agg(md5(g::text || ':' || i), '') FROM generate_series(1, 200) i),
       jsonb_build_object('len', 6400, 'rev', g %% 13)
FROM generate_series(%(lo)s::bigint, %(hi)s::bigint) g
"""

# Secondary indexes and FKs: what `apply_post_data` and pg_restore build after the load.
DOCS_POST_DATA = """
CREATE INDEX bench_docs_customer_idx ON bench_docs (customer_id);
CREATE INDEX bench_docs_created_idx ON bench_docs (created_at);
CREATE INDEX bench_blobs_doc_idx ON bench_blobs (doc_id);
ALTER TABLE bench_blobs ADD CONSTRAINT bench_blobs_doc_fk FOREIGN KEY (doc_id) REFERENCES bench_docs (id)
"""


@dataclass(frozen=True)
class BenchPlan:
    size_mb: int
    pgbench_scale: int
    doc_rows: int
    blob_rows: int

    @property
    def descriptor(self) -> str:
        """What the database's comment records; equal descriptors mean the same data."""
        return (
            f"pgmigrate-bench layout={LAYOUT_VERSION} size_mb={self.size_mb} scale={self.pgbench_scale} "
            f"docs={self.doc_rows} blobs={self.blob_rows}"
        )


def plan_bench(size_mb: int) -> BenchPlan:
    """Split `size_mb` between pgbench (scale), documents and blobs by the shares above."""
    if size_mb < 10:
        raise ValueError(f"--size-mb {size_mb} is too small: use at least 10 (MB)")
    scale = max(1, round(size_mb * PGBENCH_SHARE / PGBENCH_MB_PER_SCALE))
    docs = max(1000, round(size_mb * DOCS_SHARE * 2**20 / DOC_ROW_BYTES))
    blobs = max(100, round(size_mb * BLOBS_SHARE * 2**20 / BLOB_ROW_BYTES))
    return BenchPlan(size_mb, scale, docs, blobs)


def existing_descriptor(endpoint: PgEndpoint) -> str | None:
    with endpoint.connect(autocommit=True) as conn:
        row = conn.execute(
            "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s", (endpoint.dbname,)
        ).fetchone()
    return row[0] if row else None


def database_size_mb(endpoint: PgEndpoint) -> float:
    with endpoint.connect(autocommit=True) as conn:
        return float(conn.execute("SELECT pg_database_size(current_database()) / 1048576.0").fetchone()[0])


def ensure_bench_database(endpoint: PgEndpoint, plan: BenchPlan, pg_bin: Path) -> bool:
    """Build the database unless it exists with this plan; returns True when it was (re)built."""
    exists = database_exists(endpoint)
    found = existing_descriptor(endpoint) if exists else None
    if found == plan.descriptor:
        log.info(
            "bench database %s exists with the requested layout (%s, %.0f MB): reusing it",
            endpoint.label,
            plan.descriptor,
            database_size_mb(endpoint),
        )
        return False
    reason = f"has {found or 'no complete build recorded'}" if exists else "is missing"
    log.info("bench database %s %s; building %s", endpoint.label, reason, plan.descriptor)
    started = time.monotonic()
    recreate_database(endpoint)
    _pgbench_init(endpoint, plan, pg_bin)
    _wide_tables(endpoint, plan)
    with endpoint.connect(autocommit=True) as conn:
        log.info("VACUUM ANALYZE")
        conn.execute("VACUUM ANALYZE")
        comment = sql.SQL("COMMENT ON DATABASE {} IS {}")
        conn.execute(comment.format(sql.Identifier(endpoint.dbname), sql.Literal(plan.descriptor)))
    log.info("bench database built in %.0fs: %.0f MB", time.monotonic() - started, database_size_mb(endpoint))
    return True


def _pgbench_init(endpoint: PgEndpoint, plan: BenchPlan, pg_bin: Path) -> None:
    log.info("pgbench -i -s %d (tables, server-side data, vacuum, primary keys, foreign keys)", plan.pgbench_scale)
    started = time.monotonic()
    result = subprocess.run(
        [str(pg_bin / "pgbench"), "-i", "-q", "-I", "dtGvpf", "-s", str(plan.pgbench_scale), endpoint.dbname],
        env=endpoint.libpq_env(),
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise RuntimeError(f"pgbench -i failed (exit {result.returncode}):\n{result.stderr[-2000:]}")
    log.info("pgbench -i: %s", result.stderr.strip().splitlines()[-1])
    with endpoint.connect(autocommit=True) as conn:
        # pgbench_history has no key; the migration needs one (preflight refuses keyless tables).
        conn.execute("ALTER TABLE pgbench_history ADD COLUMN hid bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY")
    log.info("pgbench tables ready in %.0fs", time.monotonic() - started)


def _wide_tables(endpoint: PgEndpoint, plan: BenchPlan) -> None:
    with endpoint.connect(autocommit=True) as conn:
        conn.execute(DOCS_DDL)
        for table, statement, rows in (
            ("bench_docs", DOCS_INSERT, plan.doc_rows),
            ("bench_blobs", BLOBS_INSERT, plan.blob_rows),
        ):
            started = time.monotonic()
            for lo in range(1, rows + 1, INSERT_CHUNK_ROWS):
                hi = min(rows, lo + INSERT_CHUNK_ROWS - 1)
                conn.execute(statement, {"lo": lo, "hi": hi, "docs": plan.doc_rows})
                elapsed = time.monotonic() - started
                rate = hi / elapsed if elapsed else 0.0
                log.info(
                    "%s: %d/%d rows (%.0f%%), %.0f rows/s, ETA %.0fs",
                    table,
                    hi,
                    rows,
                    100.0 * hi / rows,
                    rate,
                    (rows - hi) / rate if rate else 0.0,
                )
        log.info("secondary indexes and foreign key of the wide tables")
        conn.execute(DOCS_POST_DATA)
