"""Pure rules of the row diff and the schema compare: bisection, re-check, classification, formatting.
No database: bisection runs against an in-memory fake of two tables (`FakeSides`, labelled as a fake)."""

import json

import pytest

from pgmigrate.core.catalog import TableRef
from pgmigrate.schema.schema_compare import SchemaDifference, SchemaSnapshot, compare_snapshots
from pgmigrate.validate.bisection import SOURCE, TARGET, RangeOps, bisect_differences, split_range
from pgmigrate.validate.diff_result import (
    RowDifference,
    TableDiff,
    classify_rows,
    describe_range,
    differing_columns,
    format_diff,
    jsonable,
    multiset_difference,
)
from pgmigrate.validate.key_ranges import KeyRange
from pgmigrate.validate.recheck import Recheck, recheck_together
from pgmigrate.validate.sampling import sample_percent

pytestmark = pytest.mark.unit


class FakeSides:
    """Unit fake (no database): two tables as {key: row hash}, answering what bisection asks, and
    counting the rows each request reads."""

    def __init__(self, source: dict, target: dict):
        self.data = (source, target)
        self.rows_read = 0
        self.row_compares = 0

    def _rows(self, side, rng):
        def inside(k):
            if rng.lower is not None and k < rng.lower:
                return False
            if rng.upper is not None and (k > rng.upper if rng.last else k >= rng.upper):
                return False
            return True

        rows = {k: v for k, v in self.data[side].items() if inside(k)}
        self.rows_read += len(rows)
        return rows

    def ops(self) -> RangeOps:
        def checksum(side, rng):
            rows = self._rows(side, rng)
            return len(rows), str(sum(hash(v) for v in rows.values()))

        def median(side, rng, offset):
            keys = sorted(self._rows(side, rng))
            self.rows_read -= len(keys) - min(offset + 1, len(keys))  # OFFSET n LIMIT 1 reads n + 1 keys
            return keys[offset] if offset < len(keys) else None

        def row_hashes(side, rng):
            self.row_compares += 1
            return self._rows(side, rng)

        return RangeOps(checksum, median, row_hashes)


def everything(sides):
    s, t = (sides.ops().checksum(side, KeyRange(None, None, True)) for side in (SOURCE, TARGET))
    return [(KeyRange(None, None, True), s, t)]


def test_bisection_finds_exactly_the_damaged_keys():
    source = {(i,): f"row{i}" for i in range(1, 10_001)}
    target = dict(source)
    del target[(777,)]
    target[(5000,)] = "changed"
    target[(10_500,)] = "extra"  # beyond the source's last key
    target[(-1,)] = "extra"  # before its first key
    sides = FakeSides(source, target)
    assert bisect_differences(everything(sides), sides.ops(), leaf_rows=50) == {(777,), (5000,), (10_500,), (-1,)}


def test_bisection_reads_a_small_part_of_the_table_for_one_bad_row():
    source = {(i,): f"row{i}" for i in range(100_000)}
    target = dict(source) | {(31_337,): "changed"}
    sides = FakeSides(source, target)
    keys = bisect_differences(everything(sides), sides.ops(), leaf_rows=100)
    assert keys == {(31_337,)}
    # Each level reads the lower half on each side and the median's half on one: 1.5 x the range, halving;
    # about 3 x the table in all (the first checksum of both sides is 2 x), and one leaf pair of ~100 rows.
    assert sides.rows_read < 2 * 100_000 + 3.2 * 100_000 and sides.row_compares == 2


def test_bisection_of_a_range_empty_on_one_side_splits_on_the_other():
    target = {(i,): "x" for i in range(1, 3000)}
    sides = FakeSides({}, target)
    assert bisect_differences(everything(sides), sides.ops(), leaf_rows=100) == set(target)


def test_bisection_ignores_ranges_whose_checksums_agree():
    source = {(i,): "a" for i in range(1000)}
    sides = FakeSides(source, dict(source))
    ops = sides.ops()
    low, high = KeyRange(None, (500,)), KeyRange((500,), None, True)
    # A range handed over as differing (stale checksums) whose fresh lower half agrees: not row-compared.
    ranges = [(low, ops.checksum(SOURCE, low), (500, "0")), (high, (500, "7"), ops.checksum(TARGET, high))]
    keys = bisect_differences(ranges, ops, leaf_rows=10)
    assert keys == set() and sides.row_compares > 0  # the derived upper halves differ: checked row by row


def test_split_range_is_exact_and_keeps_the_last_flag():
    low, high = split_range(KeyRange((1,), (9,), last=True), (5,))
    assert (low.lower, low.upper, low.last) == ((1,), (5,), False)
    assert (high.lower, high.upper, high.last) == ((5,), (9,), True)


def scripted(readings):
    """Unit fake: each call returns the next scripted reading (the last one repeats)."""
    readings = list(readings)

    def read(_keys):
        return readings.pop(0) if len(readings) > 1 else readings[0]

    return read


def recheck(suspects, read_source, read_target, attempts, pause_seconds, sleep):
    """One table through `recheck_together`: (differing, in flight, source, target, attempts used)."""
    check = Recheck(set(suspects), read_source, read_target)
    recheck_together([check], attempts, pause_seconds, sleep)
    return check.differing, check.changing, check.source, check.target, check.used


def test_recheck_confirms_a_difference_twice_then_stops():
    sleeps = []
    differing, changing, source, target, used = recheck(
        {(1,)}, scripted([{(1,): "a"}]), scripted([{}]), attempts=6, pause_seconds=2, sleep=sleeps.append
    )
    assert differing == {(1,)} and changing == set() and used == 2 and sleeps == [2, 2]
    assert source == {(1,): "a"} and target == {}


def test_recheck_drops_rows_that_caught_up():
    differing, changing, _s, _t, used = recheck(
        {(1,)}, scripted([{(1,): "a"}]), scripted([{(1,): "a"}]), 6, 0, lambda _s: None
    )
    assert (differing, changing, used) == (set(), set(), 1)


def test_recheck_counts_rows_changing_every_time_as_in_flight():
    versions = iter(range(100))
    differing, changing, _s, _t, used = recheck(
        {(1,)}, lambda _k: {(1,): next(versions)}, scripted([{(1,): -1}]), 3, 0, lambda _s: None
    )
    assert differing == set() and changing == {(1,)} and used == 3


def test_recheck_without_suspects_reads_nothing():
    def fail(_keys):
        raise AssertionError("read")

    assert recheck(set(), fail, fail, 6, 1, fail) == (set(), set(), {}, {}, 0)


def test_classify_rows():
    source = {(1,): "a", (2,): "b"}
    target = {(2,): "x", (3,): "c"}
    assert classify_rows({(1,), (2,), (3,)}, source, target) == ([(1,)], [(3,)], [(2,)])


def test_multiset_difference_counts_duplicates():
    assert multiset_difference(["h1", "h2", "h3"], {"h1": 2, "h2": 1}, {"h1": 1, "h3": 4}) == (2, 4)


def test_differing_columns():
    assert differing_columns(["id", "note", "balance"], ("1", "n", "5"), ("1", "m", None)) == ["note", "balance"]


def test_jsonable_values():
    from datetime import UTC, datetime
    from decimal import Decimal
    from uuid import UUID

    row = [Decimal("1.50"), datetime(2026, 1, 2, 3, 4, tzinfo=UTC), b"\x01\xff", UUID(int=1), float("nan"), None]
    assert jsonable(row) == ["1.50", "2026-01-02T03:04:00+00:00", "\\x01ff", str(UUID(int=1)), "nan", None]
    assert jsonable("x" * 300, max_text=10) == "x" * 10 + "… (300 chars)"


def test_sample_percent():
    assert sample_percent(1000, 0) == 100.0
    assert sample_percent(1000, 1000) == 100.0
    assert sample_percent(1000, 3_000_000) == pytest.approx(0.1)


def diff(**kw) -> TableDiff:
    return TableDiff(TableRef("public", "accounts"), "full", primary_key=["id"], source_rows=10, target_rows=10, **kw)


def test_table_diff_ok_and_json_shape():
    assert diff().ok
    assert not diff(error="table missing on the target").ok
    bad = diff(
        missing=[RowDifference({"id": 5}, "missing")],
        missing_count=1,
        changed=[RowDifference({"id": 12}, "changed", ["note", "balance"])],
        changed_count=1,
    )
    assert not bad.ok
    out = json.loads(json.dumps(bad.as_dict()))
    assert out["table"] == "public.accounts" and out["ok"] is False and out["missing_count"] == 1
    assert out["changed"] == [{"key": {"id": 12}, "kind": "changed", "columns": ["note", "balance"]}]
    assert set(out) >= {"extra", "extra_count", "in_flight", "in_flight_count", "chunks", "sampled", "seconds"}


def test_format_diff_names_keys_and_columns():
    text = format_diff(
        [
            diff(
                missing=[RowDifference({"id": 5}, "missing"), RowDifference({"id": 7}, "missing")],
                missing_count=2,
                changed=[RowDifference({"id": 12}, "changed", ["note", "balance"])],
                changed_count=1,
            ),
            diff(in_flight_count=3),
        ]
    )
    lines = text.splitlines()
    assert lines[0].startswith("public.accounts: DIFFERS") and "2 missing on target" in lines[0]
    assert lines[1] == "  missing on target: id=5; id=7"
    assert lines[2] == "  changed: id=12 (note, balance)"
    assert "identical" in lines[3] and "3 rows in flight" in lines[3]


def test_format_diff_says_how_many_more_and_keyless_examples():
    many = diff(extra=[RowDifference({"id": i}, "extra") for i in range(10)], extra_count=250)
    assert "id=4 … (+245 more)" in format_diff([many])
    keyless = TableDiff(
        TableRef("public", "log"), "full", missing=[RowDifference({"kind": "click"}, "missing")], missing_count=2
    )
    assert "missing on target, e.g. (kind=click)" in format_diff([keyless])


def test_schema_snapshots_report_missing_parent_only():
    table, column = ("table", "public.t"), ("column", "public.t.c")
    source = SchemaSnapshot(
        {table: "table", column: "present", ("column_type", "public.t.c"): "int", ("index", "public.t_i"): "def"},
        {column: table, ("column_type", "public.t.c"): column, ("index", "public.t_i"): table},
    )
    assert compare_snapshots(source, SchemaSnapshot({}, {})) == [SchemaDifference("table", "public.t", "table", None)]
    changed = SchemaSnapshot({table: "table", column: "present", ("column_type", "public.t.c"): "bigint"}, {})
    assert compare_snapshots(source, changed) == [
        SchemaDifference("column_type", "public.t.c", "int", "bigint"),
        SchemaDifference("index", "public.t_i", "def", None),
    ]


def test_checksum_only_result_lists_ranges():
    ranges = [KeyRange(None, (5001,)), KeyRange((25001,), None, True)]
    chunks = diff(differing_chunks=[describe_range(r) for r in ranges])
    assert not chunks.ok and chunks.as_dict()["differing_chunks"] == ["[-inf .. 5001)", "[25001 .. +inf]"]
    assert "2 key ranges differ: [-inf .. 5001), [25001 .. +inf]" in format_diff([chunks])


def test_tables_are_rechecked_in_shared_rounds_one_pause_per_round():
    versions = iter(range(100))
    hot = Recheck({(1,)}, lambda _k: {(1,): next(versions)}, scripted([{(1,): -1}]))
    caught_up = Recheck({(2,)}, scripted([{(2,): "a"}]), scripted([{(2,): "a"}]))
    broken = Recheck({(3,)}, scripted([{(3,): "a"}]), scripted([{}]))
    sleeps = []
    recheck_together([hot, caught_up, broken], attempts=4, pause_seconds=5, sleep=sleeps.append)
    assert sleeps == [5, 5, 5, 5], "one pause per round for all tables, not one per table"
    assert (hot.changing, hot.differing, hot.used) == ({(1,)}, set(), 4)
    assert (caught_up.differing, caught_up.changing, caught_up.used) == (set(), set(), 1)
    assert (broken.differing, broken.used, broken.settled) == ({(3,)}, 2, True)
