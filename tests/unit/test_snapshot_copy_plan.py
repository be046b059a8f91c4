"""Unit tests of the pure parts of the `copy` snapshot method: chunk planning and the COPY format rule."""

from __future__ import annotations

import time

import pytest

from pgmigrate.core.catalog import Column, TableInfo, TableRef
from pgmigrate.load.copy_plan import CopyChunk, copy_columns, copy_format_for, plan_copy
from pgmigrate.load.copy_report import CopyReport, TableCopyStats
from pgmigrate.load.replication_slot import validate_slot_name

pytestmark = pytest.mark.unit

INT4, TEXT, INT4_ARRAY, ACLITEM = 23, 25, 1007, 1033


def col(name: str, oid: int = INT4, kind: str = "b", element_oid: int | None = None, generated: str = "") -> Column:
    return Column(name, "t", oid, kind, None, element_oid, "", generated, False, False)


def table(name: str, pages: int = 0, kind: str = "r", partitions: list[str] | None = None, columns=None) -> TableInfo:
    return TableInfo(
        ref=TableRef("public", name),
        kind=kind,
        primary_key=["id"],
        replica_identity="d",
        has_replica_identity_index=False,
        columns=columns or [col("id")],
        partitions=[TableRef("public", p) for p in partitions or []],
        pages=pages,
    )


def where(chunk: CopyChunk) -> str:
    return chunk.ctid_filter().as_string(None)


def test_small_table_is_one_whole_chunk():
    [chunk] = plan_copy([table("small", pages=100)], parallelism=4, chunk_pages=1000)
    assert (chunk.number, chunk.of, chunk.first_page, chunk.end_page) == (1, 1, None, None)
    assert where(chunk) == ""
    assert chunk.describe() == "1/1"


def test_large_table_is_split_into_contiguous_page_ranges_last_one_open_ended():
    chunks = plan_copy([table("big", pages=10_000)], parallelism=2, chunk_pages=3000)
    # ceil(10000/3000) = 4 ranges, already a multiple of 2 workers
    chunks.sort(key=lambda c: c.number)
    assert [(c.first_page, c.end_page) for c in chunks] == [(None, 2500), (2500, 5000), (5000, 7500), (7500, None)]
    assert {c.of for c in chunks} == {4}
    assert where(chunks[0]) == " WHERE ctid < '(2500,0)'::tid"
    assert where(chunks[1]) == " WHERE ctid >= '(2500,0)'::tid AND ctid < '(5000,0)'::tid"
    assert where(chunks[-1]) == " WHERE ctid >= '(7500,0)'::tid"  # pages added since the size was read
    assert chunks[-1].describe() == "4/4 pages 7500-end"


def test_chunk_count_rounds_up_to_keep_every_worker_busy():
    chunks = plan_copy([table("big", pages=3001)], parallelism=4, chunk_pages=3000)
    assert len(chunks) == 4 and max(c.pages for c in chunks) <= 3000
    assert sum(c.pages for c in chunks) == 3001


def test_uneven_split_covers_every_page_once():
    chunks = sorted(plan_copy([table("big", pages=1001)], parallelism=3, chunk_pages=100), key=lambda c: c.number)
    assert len(chunks) == 12
    for before, after in zip(chunks, chunks[1:], strict=False):
        assert before.end_page == after.first_page
    assert sum(c.pages for c in chunks) == 1001


def test_partitioned_table_is_copied_leaf_by_leaf():
    parted = table("events", kind="p", pages=300, partitions=["events_2025", "events_2026", "events_default"])
    chunks = plan_copy([parted], parallelism=4, chunk_pages=1000, sizes={TableRef("public", "events_2026"): 5000})
    by_relation: dict[str, list[CopyChunk]] = {}
    for c in chunks:
        by_relation.setdefault(c.relation.name, []).append(c)
    assert set(by_relation) == {"events_2025", "events_2026", "events_default"}
    assert all(c.table == TableRef("public", "events") for c in chunks)
    assert len(by_relation["events_2025"]) == 1 and by_relation["events_2025"][0].pages == 100  # share of the root
    assert len(by_relation["events_2026"]) == 8  # ceil(5000/1000)=5 -> 8, a multiple of 4
    assert {c.of for c in chunks} == {10}
    assert sorted(c.number for c in chunks) == list(range(1, 11))
    assert "events_2026 pages" in by_relation["events_2026"][0].describe()


def test_partitioned_table_without_partitions_has_no_chunks():
    assert plan_copy([table("empty_parent", kind="p")], parallelism=2) == []


def test_chunks_are_ordered_largest_first_and_deterministically():
    tables = [table("a_small", pages=10), table("b_big", pages=5000), table("c_mid", pages=900)]
    chunks = plan_copy(tables, parallelism=2, chunk_pages=1000, sizes={TableRef("public", "a_small"): 20})
    assert [c.pages for c in chunks] == sorted((c.pages for c in chunks), reverse=True)
    # b_big splits into 6 chunks of ~833 pages: the unsplit 900-page c_mid is the largest single COPY
    assert [c.table.name for c in chunks] == ["c_mid"] + ["b_big"] * 6 + ["a_small"]
    assert chunks[-1].pages == 20  # the size read just before the copy wins over the statistics
    assert plan_copy(tables, 2, 1000) == plan_copy(list(reversed(tables)), 2, 1000)


def test_plan_rejects_nonsense():
    with pytest.raises(ValueError):
        plan_copy([table("t")], parallelism=0)


def test_binary_for_built_in_types_and_plain_enums():
    t = table(
        "t",
        columns=[col("id"), col("name", TEXT), col("ids", INT4_ARRAY, element_oid=INT4), col("mood", 16753, kind="e")],
    )
    assert copy_format_for(t) == "binary"


@pytest.mark.parametrize(
    "column",
    [
        col("moods", 16752, element_oid=16753),  # enum[]
        col("pair", 16761, kind="c"),  # composite
        col("positive", 16763, kind="d"),  # domain
        col("segment", 16900),  # extension type: may have no binary I/O (seg, isbn)
        col("acl", ACLITEM),  # built in, but without binary I/O
        col("acls", 1034, element_oid=ACLITEM),
    ],
    ids=["enum-array", "composite", "domain", "extension-type", "aclitem", "aclitem-array"],
)
def test_text_for_other_user_defined_types(column):
    assert copy_format_for(table("t", columns=[col("id"), column])) == "text"


def test_generated_columns_are_not_copied_and_do_not_decide_the_format():
    t = table("t", columns=[col("id"), col("total", 16900, generated="s")])
    assert copy_columns(t) == ["id"]
    assert copy_format_for(t) == "binary"


@pytest.mark.parametrize("bad", ["", "Slot", "slot-1", 'x"; DROP', "a" * 64])
def test_slot_names_are_validated(bad):
    with pytest.raises(ValueError):
        validate_slot_name(bad)


def test_progress_line_reads_like_the_on_call_example():
    stats = TableCopyStats("public.orders", chunks_total=8, estimated_rows=3_000_000, chunks_done=3)
    stats.started = time.monotonic() - 10
    line = stats.progress_line(rows_streaming=1_200_000, bytes_streaming=450 << 20)
    assert line == "copy: public.orders 3/8 chunks, 1.2M/3.0M rows (40%), 45 MB/s, ETA 00:00:15"


def test_progress_without_statistics_goes_by_chunks():
    stats = TableCopyStats("public.fresh", chunks_total=4, estimated_rows=0, rows=500, chunks_done=1)
    stats.started = time.monotonic() - 3
    assert "1/4 chunks, 500/500 rows (25%)" in stats.progress_line()
    assert stats.progress_line().endswith("ETA 00:00:09")


def test_summary_table_lists_every_table_largest_first_and_a_total():
    report = CopyReport(
        {
            "public.small": TableCopyStats("public.small", 1, rows=10, bytes=100, started=0.0, finished=1.0),
            "public.orders": TableCopyStats("public.orders", 8, rows=3_000_000, bytes=326 << 20, started=0, finished=4),
        },
        seconds=4.0,
    )
    lines = report.summary().splitlines()
    assert lines[0].split() == ["table", "rows", "bytes", "seconds", "rows/s"]
    assert lines[2].split() == ["public.orders", "3,000,000", "326", "MB", "4.0", "750,000"]
    assert lines[3].split()[:2] == ["public.small", "10"]
    assert lines[-1].split() == ["total", "3,000,010", "326", "MB", "4.0", "750,002"]
