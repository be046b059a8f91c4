"""The row diff's sample mode: `sample_size` random keys picked on each side (`TABLESAMPLE SYSTEM`, so it reads
about that many pages, not the table) and compared row by row; keys picked on the target find extra rows too.
"""

from __future__ import annotations

import psycopg
from psycopg import sql

from pgmigrate.core.catalog import TableInfo
from pgmigrate.validate.diff_result import TableDiff, sorted_keys
from pgmigrate.validate.key_ranges import hashes_for_keys, pk_columns


def sample_percent(sample_size: int, estimated_rows: int, oversample: float = 3.0) -> float:
    """TABLESAMPLE SYSTEM percentage that yields about `oversample` x `sample_size` rows (100 when unknown)."""
    if estimated_rows <= 0:
        return 100.0
    return min(100.0, max(0.0001, 100.0 * oversample * sample_size / estimated_rows))


def _sample_keys(conn: psycopg.Connection, table: TableInfo, sample_size: int) -> list[tuple]:
    pk = pk_columns(table)
    rows = conn.execute(
        sql.SQL("SELECT {cols} FROM {table} TABLESAMPLE SYSTEM ({pct}) ORDER BY random() LIMIT {n}").format(
            cols=sql.SQL(", ").join(sql.Identifier(name) for name, _ in pk),
            table=table.ref.ident,
            pct=sql.Literal(sample_percent(sample_size, table.estimated_rows)),
            n=sql.Literal(sample_size),
        )
    ).fetchall()
    return [tuple(r) for r in rows]


def diff_sample(
    src: psycopg.Connection, dst: psycopg.Connection, table: TableInfo, result: TableDiff, sample_size: int
) -> set[tuple]:
    """Suspect keys among `sample_size` keys picked on each side, compared row by row."""
    keys = sorted_keys(set(_sample_keys(src, table, sample_size)) | set(_sample_keys(dst, table, sample_size)))
    result.sampled = len(keys)
    source, target = hashes_for_keys(src, table, keys), hashes_for_keys(dst, table, keys)
    return {k for k in keys if source.get(k) != target.get(k)}
