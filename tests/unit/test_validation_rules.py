"""Pure rules of live validation (no database)."""

import pytest

from pgmigrate.validation import classify_keys

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
