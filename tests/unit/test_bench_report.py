"""Pure figures of `make bench`: percentiles, ratios, goals, the printed table, the size plan (no database)."""

import pytest

from pgmigrate.bench_data import plan_bench
from pgmigrate.bench_report import goals, lag_summary, percentile, ratio, render_table

pytestmark = pytest.mark.unit


def test_percentile_interpolates_between_ranks_like_percentile_cont():
    values = [4.0, 1.0, 3.0, 2.0]  # unsorted on purpose
    assert percentile(values, 0) == 1.0
    assert percentile(values, 50) == 2.5
    assert percentile(values, 100) == 4.0
    assert percentile(list(range(1, 101)), 99) == pytest.approx(99.01)
    assert percentile([7.0], 99) == 7.0


def test_percentile_refuses_no_values_and_bad_percent():
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_lag_summary():
    summary = lag_summary([0.1 * i for i in range(1, 11)])
    assert summary["samples"] == 10
    assert summary["p50"] == pytest.approx(0.55)
    assert summary["max"] == pytest.approx(1.0)
    assert set(summary) == {"samples", "p50", "p95", "p99", "max"}
    assert lag_summary([]) == {"samples": 0}


def test_ratio_is_none_without_a_baseline():
    assert ratio(50.0, 100.0) == 0.5
    assert ratio(50.0, None) is None
    assert ratio(None, 100.0) is None
    assert ratio(50.0, 0.0) is None


RESULT = {
    "database": {"name": "bench", "size_mb": 1030.2, "pgbench_scale": 34, "doc_rows": 1, "blob_rows": 2},
    "dump_restore": {"seconds": 100.0, "dump_seconds": 40.0, "restore_seconds": 60.0},
    "copy": {
        "load_seconds": 80.0, "ratio_to_dump_restore": 0.8,
        "load_tasks": ["copy_schema", "snapshot", "apply_post_data"],
        "tasks": {"copy_schema": 1.0, "snapshot": 60.0, "apply_post_data": 19.0}, "load_span_seconds": 85.0,
        "to_caught_up_seconds": 110.0, "to_caught_up_ratio_to_dump_restore": 1.1,
    },
    "lag": {
        "rate_tps": 500, "duration_seconds": 60, "achieved_tps": 499.8,
        "heartbeat": {"samples": 61, "p50": 0.2, "p95": 0.5, "p99": 0.9, "max": 1.2},
        "history": {"samples": 30000, "p50": 0.3, "p95": 0.8, "p99": 1.4, "max": 2.0},
    },
}


def test_goals_report_figures_and_whether_met():
    result = goals(RESULT)
    assert result["copy_vs_dump_restore"]["met"] is True
    assert result["lag_p99_heartbeat"] == {
        "goal": "end-to-end lag p99 (heartbeat) < 1 s at 500 tps", "figure": 0.9, "met": True,
    }
    assert result["lag_p99_rows"]["met"] is False
    assert goals({})["copy_vs_dump_restore"]["met"] is None


def test_render_table_shows_ratios_percentiles_and_goals():
    table = render_table(RESULT)
    assert "bench 1030 MB" in table
    assert "0.80x" in table and "1.10x" in table
    assert "60.0 | 19.0" in table
    assert "0.900" in table and "30000" in table
    assert "MET" in table and "NOT MET" in table
    assert "debezium" not in table  # not measured, so no row


def test_render_table_of_an_empty_result_does_not_fail():
    assert "not measured" in render_table({})


def test_render_table_names_measurements_that_failed():
    table = render_table({**RESULT, "errors": {"debezium": "pg_migration run r1 failed (failed tasks: ['validate'])"}})
    assert "NOT MEASURED debezium: pg_migration run r1 failed" in table


def test_plan_bench_splits_the_size():
    plan = plan_bench(1024)
    assert plan.pgbench_scale == 34
    assert plan.doc_rows > 100_000 and plan.blob_rows > 10_000
    assert "size_mb=1024" in plan.descriptor
    assert plan_bench(1024) == plan  # same size, same plan: the database is reused
    with pytest.raises(ValueError):
        plan_bench(5)


def test_validation_cost_is_a_goal_with_its_own_rows():
    result = {"validation": {"plain_scan_seconds": 10.0, "row_diff_seconds": 13.0, "tables": 6,
                             "ratio_to_plain_scan": 1.3}}  # fmt: skip
    goal = goals(result)["validation_vs_plain_scan"]
    assert goal["figure"] == 1.3 and goal["met"] is True
    table = render_table(result)
    assert "row diff (pg_validate data_compare), 6 tables" in table and "1.30x" in table
