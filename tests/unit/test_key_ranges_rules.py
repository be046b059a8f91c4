"""Pure rules of live validation (no database)."""

import pytest

from pgmigrate.validate.key_ranges import classify_keys

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
