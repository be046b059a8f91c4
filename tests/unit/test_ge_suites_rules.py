"""The pure parts of the GE suites and checkpoint: bounds GE can compare exactly, the row-count tolerance,
the connection string that holds a reference instead of the password, and that importing the modules does
not import Great Expectations (Airflow parses DAG files that import them). No database."""

from __future__ import annotations

import datetime as dt
import decimal
import subprocess
import sys

import pytest

from pgmigrate.core.catalog import Column, TableInfo, TableRef
from pgmigrate.core.endpoints import PgEndpoint
from pgmigrate.validate.ge_checkpoint import PASSWORD_VARIABLE, connection_string_template
from pgmigrate.validate.ge_suites import (
    GENERATED_MARK,
    ColumnProfile,
    TableProfile,
    _range_bounds,
    build_expectations,
    suite_name,
)
from tests.conftest import REPO


def _column(name: str, oid: int, not_null: bool = False) -> Column:
    return Column(name, "x", oid, "b", None, None, "", "", not_null, False)


@pytest.mark.parametrize(
    "value",
    [2**53 + 1, -(2**63) + 1, decimal.Decimal("12.34"), decimal.Decimal("123456789012345678.0123456789")],
)
def test_exact_numbers_are_bracketed_by_the_nearest_floats(value) -> None:
    low, high = _range_bounds(value, 1700)
    assert isinstance(low, float) and isinstance(high, float)
    assert low <= value <= high  # exact comparisons, as GE makes them against what it reads
    assert high - low <= 2 * float(abs(value)) * sys.float_info.epsilon


def test_float_bounds() -> None:
    assert _range_bounds(2.5, 701) == (2.5, 2.5)
    low, high = _range_bounds(1.10000002, 700)  # real printed with extra_float_digits=3 on one side
    assert low <= 1.1 <= high and high - low < 1e-6
    assert _range_bounds(float("nan"), 701) is None
    assert _range_bounds(decimal.Decimal("Infinity"), 1700) is None
    assert _range_bounds(None, 23) is None


def test_time_bounds_are_iso_text() -> None:
    moment = dt.datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=dt.UTC)
    assert _range_bounds(moment, 1184) == ("2026-01-02T03:04:05.000006+00:00",) * 2
    assert _range_bounds(dt.date(2000, 1, 2), 1082) == ("2000-01-02",) * 2


def _profile(rows: int) -> TableProfile:
    table = TableInfo(TableRef("s", "t"), "r", ["a", "b"], "d", False, [_column("a", 23, True), _column("b", 25)])
    return TableProfile(suite_name(table), rows, table, [ColumnProfile("a", 1, 9, None, "INTEGER"), ColumnProfile("b")])


def test_row_count_exact_or_with_tolerance() -> None:
    exact = build_expectations(_profile(200))
    assert [(e.expectation_type, e.value) for e in exact[:1]] == [("expect_table_row_count_to_equal", 200)]
    live = build_expectations(_profile(200), row_count_tolerance=0.05)
    assert live[0].expectation_type == "expect_table_row_count_to_be_between"
    assert (live[0].min_value, live[0].max_value) == (190, 210)


def test_expectations_have_stable_ids_and_the_generated_mark() -> None:
    first, again = build_expectations(_profile(5)), build_expectations(_profile(5))
    assert [e.id for e in first] == [e.id for e in again] and len({e.id for e in first}) == len(first)
    assert all(e.meta == GENERATED_MARK for e in first)
    types = {e.expectation_type for e in first}
    assert "expect_compound_columns_to_be_unique" in types and "expect_column_values_to_be_unique" not in types
    assert {"expect_column_min_to_be_between", "expect_column_max_to_be_between"} <= types


def test_connection_string_holds_a_reference_not_the_password() -> None:
    target = PgEndpoint("db.example", 5432, "shop db", "app@corp", "s3cr:t@pw").with_settings(lock_timeout="5s")
    url = connection_string_template(target)
    assert "s3cr" not in url
    assert url.startswith(f"postgresql+psycopg2://app%40corp:${{{PASSWORD_VARIABLE}}}@db.example:5432/shop%20db?")
    assert "options=-c%20lock_timeout%3D5s" in url
    no_password = connection_string_template(PgEndpoint("h", 1, "d", "u"))
    assert "${" not in no_password and "u@h:1/d" in no_password


def test_importing_the_modules_does_not_import_great_expectations() -> None:
    code = (
        "import sys, pgmigrate.validate.ge_suites, pgmigrate.validate.ge_checkpoint; "
        "print('great_expectations' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, env={"PYTHONPATH": "plugins"}
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"
