"""Planning the `copy` snapshot method: which chunks to COPY, and in which COPY format.

Pure decisions over the catalog facts (`TableInfo`), testable without a database, plus `relation_pages`,
the one read of current relation sizes the plan needs. The copy itself runs in `snapshot_copy.py`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from psycopg import sql

from pgmigrate.core.catalog import FIRST_NORMAL_OID, TableInfo, TableRef
from pgmigrate.core.endpoints import PgEndpoint

# 16384 pages of 8 kB = 128 MB: big enough that per-chunk overhead vanishes, small enough that an
# on-call reader sees progress every few seconds and a large table keeps every worker busy.
DEFAULT_CHUNK_PAGES = 16384
# Built-in types without binary send/receive: COPY (FORMAT binary) fails on them.
_NO_BINARY_IO_OIDS = frozenset({1033, 3642})  # aclitem, gtsvector


@dataclass(frozen=True)
class CopyChunk:
    """One COPY: a whole relation, or the pages [first_page, end_page) of it."""

    table: TableRef  # the selected table: progress and the report are per table
    relation: TableRef  # what is read and written: the table itself or one of its leaf partitions
    number: int  # 1-based within `table`
    of: int  # chunks of `table`
    first_page: int | None = None  # None: from the first page
    end_page: int | None = None  # exclusive; None: to the end, including pages added since the size was read
    pages: int = 0  # estimated size, for ordering

    def ctid_filter(self) -> sql.Composable:
        """A TID range: PostgreSQL 14+ reads just those pages (TID Range Scan), not the whole table."""
        conditions = []
        if self.first_page is not None:
            conditions.append(sql.SQL("ctid >= {}::tid").format(sql.Literal(f"({self.first_page},0)")))
        if self.end_page is not None:
            conditions.append(sql.SQL("ctid < {}::tid").format(sql.Literal(f"({self.end_page},0)")))
        if not conditions:
            return sql.SQL("")
        return sql.SQL(" WHERE ") + sql.SQL(" AND ").join(conditions)

    def describe(self) -> str:
        where = "" if self.relation == self.table else f" {self.relation.qualified}"
        if self.first_page is None and self.end_page is None:
            return f"{self.number}/{self.of}{where}"
        end = "end" if self.end_page is None else self.end_page
        return f"{self.number}/{self.of}{where} pages {self.first_page or 0}-{end}"


def plan_copy(
    tables: list[TableInfo],
    parallelism: int,
    chunk_pages: int = DEFAULT_CHUNK_PAGES,
    sizes: Mapping[TableRef, int] | None = None,
) -> list[CopyChunk]:
    """Chunks for every table, largest first so the longest COPYs start at once and the pool ends together.

    A relation (table or leaf partition) of at most `chunk_pages` pages is one chunk; a larger one is
    split into page ranges of at most `chunk_pages`, their count rounded up to a multiple of
    `parallelism` so the workers finish it together. `sizes` (pages per relation, read just before the
    copy) overrides the catalog's statistics; a leaf without one gets an equal share of its root's pages.
    """
    if parallelism < 1 or chunk_pages < 1:
        raise ValueError(f"parallelism and chunk_pages must be positive, got {parallelism} and {chunk_pages}")
    sizes = sizes or {}
    chunks: list[CopyChunk] = []
    for table in tables:
        if table.kind == "p":
            share = table.pages // max(len(table.partitions), 1)
            relations = [(leaf, sizes.get(leaf, share)) for leaf in table.partitions]
        else:
            relations = [(table.ref, sizes.get(table.ref, table.pages))]
        ranges: list[tuple[TableRef, int | None, int | None, int]] = []
        for relation, pages in relations:
            if pages <= chunk_pages:
                ranges.append((relation, None, None, pages))
                continue
            count = math.ceil(math.ceil(pages / chunk_pages) / parallelism) * parallelism
            bounds = [round(i * pages / count) for i in range(count + 1)]
            for i in range(count):
                first = None if i == 0 else bounds[i]
                end = None if i == count - 1 else bounds[i + 1]
                ranges.append((relation, first, end, bounds[i + 1] - bounds[i]))
        chunks.extend(
            CopyChunk(table.ref, relation, number, len(ranges), first, end, pages)
            for number, (relation, first, end, pages) in enumerate(ranges, start=1)
        )
    return sorted(chunks, key=lambda c: (-c.pages, c.table, c.number))


def copy_columns(table: TableInfo) -> list[str]:
    """Stored generated columns are recomputed by the target, and COPY FROM refuses values for them."""
    return [c.name for c in table.columns if c.generated != "s"]


def copy_format_for(table: TableInfo) -> str:
    """`binary` (no text formatting and parsing) when every copied column is built in or a plain enum.

    Measured PostgreSQL 15 -> 15, with the user-defined types' OIDs different on each side: an enum
    goes binary as its label. Binary arrays and composites carry the source's type OIDs, yet they load
    too: a PostgreSQL 15 receiver checks only OIDs in the built-in range (older releases' array_recv
    rejected any mismatch: "wrong element type"). What does fail is a type with no binary I/O at all:
    extension types such as seg and isbn, and the built-in aclitem ("no binary input function available
    for type seg"). The catalog facts here cannot tell those from safe ones (a domain's base type, a
    composite's members), so every other user-defined type goes as text, which round-trips all types.
    """
    for column in table.columns:
        if column.generated == "s" or column.type_kind == "e":
            continue
        oids = (column.type_oid, column.element_oid or 0)
        if any(oid >= FIRST_NORMAL_OID or oid in _NO_BINARY_IO_OIDS for oid in oids):
            return "text"
    return "binary"


def relation_pages(source: PgEndpoint, tables: list[TableInfo]) -> dict[TableRef, int]:
    """Current size in pages of every relation to copy: statistics are often stale or missing."""
    refs = [leaf for t in tables for leaf in (t.partitions if t.kind == "p" else [t.ref])]
    if not refs:
        return {}
    with source.connect(autocommit=True) as conn:
        rows = conn.execute(
            "SELECT s, n, coalesce(pg_relation_size(to_regclass(format('%%I.%%I', s, n))), 0) "
            "/ current_setting('block_size')::bigint FROM unnest(%s::text[], %s::text[]) AS u(s, n)",
            ([r.schema for r in refs], [r.name for r in refs]),
        ).fetchall()
    return {TableRef(s, n): pages for s, n, pages in rows}
