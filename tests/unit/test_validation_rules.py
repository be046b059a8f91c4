"""Pure rules of live validation (no database)."""

import pytest

from pgmigrate.validate.validation import classify_keys

pytestmark = pytest.mark.unit


def test_row_at_rest_on_source_but_different_on_target_differs():
    differing, changing = classify_keys({(1,): "a"}, {(1,): "old"}, {(1,): "a"}, {(1,)})
    assert differing == {(1,)} and changing == set()


def test_row_changed_on_source_during_the_pause_is_in_flight():
    differing, changing = classify_keys({(1,): "a"}, {(1,): "a"}, {(1,): "b"}, {(1,)})
    assert differing == set() and changing == {(1,)}


def test_row_caught_up_is_neither():
    assert classify_keys({(1,): "a"}, {(1,): "a"}, {(1,): "a"}, {(1,)}) == (set(), set())


def test_row_missing_on_target_or_deleted_on_source():
    # Missing on the target while present and unchanged on the source: differs.
    assert classify_keys({(1,): "a"}, {}, {(1,): "a"}, {(1,)})[0] == {(1,)}
    # Extra on the target (deleted on the source before the pause): differs.
    assert classify_keys({}, {(2,): "x"}, {}, {(2,)})[0] == {(2,)}


def test_sink_reached_marks_even_while_new_records_arrive():
    from pgmigrate.stream.lag import consumer_lag, sink_reached

    marks = {("t", 0): 100, ("u", 0): 5}
    assert not sink_reached(marks, {("t", 0): 99, ("u", 0): 5})
    assert sink_reached(marks, {("t", 0): 150, ("u", 0): 5})
    assert consumer_lag({("t", 0): 200, ("u", 0): 5}, {("t", 0): 150, ("u", 0): 5}) == 50
    assert not sink_reached({("new", 0): 3}, {})


class FakeChecksumConnection:
    """Unit fake (no database): answers each checksum query with the next (count, checksum) of a script."""

    def __init__(self, readings):
        self.readings = list(readings)

    def execute(self, _query):
        reading = self.readings.pop(0) if len(self.readings) > 1 else self.readings[0]
        return type("Cursor", (), {"fetchone": lambda _self: reading})()


def keyless_table():
    from pgmigrate.core.catalog import TableInfo, TableRef

    return TableInfo(TableRef("public", "log"), "r", [], "f", False, [])


def test_keyless_table_identical_at_once():
    from pgmigrate.validate.validation import compare_keyless_table

    src, dst = FakeChecksumConnection([(3, "9")]), FakeChecksumConnection([(3, "9")])
    r = compare_keyless_table(src, dst, keyless_table(), 6, 0, lambda _s: None)
    assert r.ok and r.source_rows == 3 and r.changing_key_count == 0


def test_keyless_table_target_catching_up_is_identical():
    from pgmigrate.validate.validation import compare_keyless_table

    src, dst = FakeChecksumConnection([(3, "9")]), FakeChecksumConnection([(2, "5"), (3, "9")])
    assert compare_keyless_table(src, dst, keyless_table(), 6, 0, lambda _s: None).ok


def test_keyless_table_differing_with_the_source_at_rest_fails():
    from pgmigrate.validate.validation import compare_keyless_table

    src, dst = FakeChecksumConnection([(3, "9")]), FakeChecksumConnection([(2, "5")])
    r = compare_keyless_table(src, dst, keyless_table(), 6, 0, lambda _s: None)
    assert not r.ok and r.attempts == 2 and "no primary key" in r.differing_chunks[0]


def test_keyless_table_written_during_every_pause_is_reported_changing_not_failed():
    from pgmigrate.validate.validation import compare_keyless_table

    src = FakeChecksumConnection([(n, str(n)) for n in range(1, 20)])
    dst = FakeChecksumConnection([(0, "0")])
    r = compare_keyless_table(src, dst, keyless_table(), 4, 0, lambda _s: None)
    assert r.ok and r.changing_key_count == 1 and r.attempts == 4
