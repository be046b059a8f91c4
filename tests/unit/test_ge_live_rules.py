"""When a failed GE expectation on a live migration is believed (pure logic, no GE, no database)."""

from __future__ import annotations

import pytest

from pgmigrate.validate.ge_live import FAILED, PASSED, judge_table

pytestmark = pytest.mark.unit


def test_a_pass_is_final_and_resets_the_count():
    assert judge_table(failed_now=False, source_moved=True, stable_failures_before=1) == (PASSED, 0)


def test_a_failure_while_the_source_moved_is_checked_again():
    assert judge_table(failed_now=True, source_moved=True, stable_failures_before=0) == (None, 0)


def test_a_failure_counts_only_when_the_source_held_still_and_twice():
    status, stable = judge_table(failed_now=True, source_moved=False, stable_failures_before=0)
    assert (status, stable) == (None, 1)
    assert judge_table(failed_now=True, source_moved=False, stable_failures_before=stable) == (FAILED, 2)
