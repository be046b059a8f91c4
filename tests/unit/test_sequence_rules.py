"""Where `sync_sequences` puts a destination sequence (`wanted_position`): the origin's next value plus the
gap, clamped to the destination's bounds, never backwards. No database.

Fakes: `SequenceState`s written by hand in the shape `read_sequences` returns; `after()` applies a
setval(value, is_called) the way PostgreSQL does, so a second pass can be checked."""

from __future__ import annotations

from dataclasses import replace

import pytest

from pgmigrate.cutover.sequences import SequenceState, wanted_position

pytestmark = pytest.mark.unit

BIGINT_MAX = 2**63 - 1


def seq(
    last_value: int = 1, is_called: bool = False, start: int = 1, increment: int = 1, lo: int = 1, hi: int = BIGINT_MAX
) -> SequenceState:
    return SequenceState("public", "invoice_no", "bigint", start, increment, lo, hi, 1, False, last_value, is_called)


def down(last_value: int = -1, is_called: bool = False) -> SequenceState:
    """A descending sequence: INCREMENT -1 MINVALUE -1000 MAXVALUE -1 START -1."""
    return seq(last_value, is_called, start=-1, increment=-1, lo=-1000, hi=-1)


def after(destination: SequenceState, position: tuple[int, bool] | None) -> SequenceState:
    if position is None:
        return destination
    return replace(destination, last_value=position[0], is_called=position[1])


def test_next_value_counts_one_increment_only_once_called():
    assert seq(41, is_called=True).next_value == 42
    assert seq(500, is_called=False).next_value == 500  # setval(s, 500, false): nextval() returns 500
    assert seq(20, is_called=True, increment=5).next_value == 25
    assert down(-10, is_called=True).next_value == -11


def test_a_sequence_is_used_once_called_or_moved_from_its_start():
    assert not seq(1, is_called=False).used
    assert seq(1, is_called=True).used
    assert seq(500, is_called=False).used  # reset with setval(s, 500, false)


def test_used_origin_puts_the_destination_gap_increments_past_its_next_value():
    origin, destination = seq(41, is_called=True), seq()
    position = wanted_position(origin, destination, gap=1000)
    assert position == (1041, True)  # next value 1042 = origin's next (42) + 1000
    assert after(destination, position).next_value == origin.next_value + 1000


def test_origin_reset_with_is_called_false_is_not_skipped():
    origin = seq(500, is_called=False)
    assert after(seq(), wanted_position(origin, seq(), gap=1000)).next_value == 1500


def test_never_used_origin_needs_no_gap_and_equal_next_values_are_enough():
    origin = seq(1, is_called=False)
    assert wanted_position(origin, seq(), gap=1000) is None
    assert wanted_position(origin, seq(), gap=0) is None
    behind = seq(10, is_called=False, start=20, lo=1)  # a destination somehow behind the origin's start
    assert after(behind, wanted_position(seq(20, start=20), behind, gap=1000)).next_value == 20


def test_the_gap_counts_in_the_origin_increments():
    origin = seq(20, is_called=True, start=20, increment=5, lo=10)
    position = wanted_position(origin, seq(20, start=20, increment=5, lo=10), gap=10)
    assert position == (70, True)  # next value 75 = 25 + 10 * 5


def test_a_destination_already_past_is_never_moved_backwards():
    origin = seq(41, is_called=True)
    assert wanted_position(origin, seq(5000, is_called=True), gap=1000) is None
    assert wanted_position(origin, seq(1042, is_called=False), gap=1000) is None  # exactly there
    assert wanted_position(origin, seq(1040, is_called=True), gap=1000) == (1041, True)  # one short


@pytest.mark.parametrize(
    "origin, destination",
    [
        (seq(41, is_called=True), seq()),
        (seq(500, is_called=False), seq()),
        (seq(1, is_called=False), seq()),
        (seq(95, is_called=True, hi=100), seq(hi=100)),
        (down(-10, is_called=True), down()),
    ],
)
def test_a_second_pass_changes_nothing(origin, destination):
    once = after(destination, wanted_position(origin, destination, gap=1000))
    assert wanted_position(origin, once, gap=1000) is None


def test_past_the_maximum_the_destination_is_left_used_up():
    origin = seq(95, is_called=True, hi=100)  # AS integer-like bounds, 5 values left
    position = wanted_position(origin, seq(hi=100), gap=1000)
    assert position == (100, True)  # nextval() fails on it, as it soon would on the origin
    assert wanted_position(origin, after(seq(hi=100), position), gap=1000) is None


def test_just_below_the_maximum_the_next_value_is_the_maximum():
    origin = seq(89, is_called=True, hi=100)
    assert wanted_position(origin, seq(hi=100), gap=10) == (99, True)  # nextval() returns 100


def test_a_descending_sequence_moves_down_and_clamps_at_its_minimum():
    assert wanted_position(down(-10, True), down(), gap=5) == (-15, True)  # next -16 = -11 - 5
    assert wanted_position(down(-10, True), down(), gap=1000) == (-1000, True)  # used up at the minimum
    assert wanted_position(down(-10, True), down(-1000, True), gap=5) is None  # used up: further down


def test_without_room_for_one_increment_below_the_position_is_written_not_called():
    # Next value 3 with increment 5 and minvalue 1: "called at -2" is out of bounds, so setval(3, false).
    origin = seq(3, is_called=False, increment=5)  # reset with setval(s, 3, false): used
    assert wanted_position(origin, seq(increment=5), gap=0) == (3, False)


def test_a_negative_gap_is_refused():
    with pytest.raises(ValueError, match="gap"):
        wanted_position(seq(), seq(), gap=-1)
