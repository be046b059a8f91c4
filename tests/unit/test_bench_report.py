"""Pure figures of `make bench`: percentiles, ratios, goals, the printed table, the size plan, the cutover's
summaries and pgbench parsing (no database)."""

from datetime import UTC, datetime, timedelta

import pytest

from devtools.bench_cutover import parse_pgbench_summary, switch_event, total_load
from devtools.bench_data import plan_bench
from devtools.bench_report import goals, lag_summary, percentile, ratio, render_table, switch_summary

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
        "load_seconds": 80.0,
        "ratio_to_dump_restore": 0.8,
        "load_tasks": ["copy_schema", "snapshot", "apply_post_data"],
        "tasks": {"copy_schema": 1.0, "snapshot": 60.0, "apply_post_data": 19.0},
        "load_span_seconds": 85.0,
        "to_caught_up_seconds": 110.0,
        "to_caught_up_ratio_to_dump_restore": 1.1,
    },
    "lag": {
        "rate_tps": 500,
        "duration_seconds": 60,
        "achieved_tps": 499.8,
        "heartbeat": {"samples": 61, "p50": 0.2, "p95": 0.5, "p99": 0.9, "max": 1.2},
        "history": {"samples": 30000, "p50": 0.3, "p95": 0.8, "p99": 1.4, "max": 2.0},
    },
}


def test_goals_report_figures_and_whether_met():
    result = goals(RESULT)
    assert result["copy_vs_dump_restore"]["met"] is True
    assert result["lag_p99_heartbeat"] == {
        "goal": "end-to-end lag p99 (heartbeat) < 1 s at 500 tps",
        "figure": 0.9,
        "met": True,
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
    result = {
        "validation": {"plain_scan_seconds": 10.0, "row_diff_seconds": 13.0, "tables": 6, "ratio_to_plain_scan": 1.3}
    }
    goal = goals(result)["validation_vs_plain_scan"]
    assert goal["figure"] == 1.3 and goal["met"] is True
    table = render_table(result)
    assert "row diff (pg_validate data_compare), 6 tables" in table and "1.30x" in table


# ---- cutover and rollback (issue #13) ----------------------------------------------------------------


def _run(direction: str, pause: float | None, steps: dict[str, float] | None = None, failed: int = 0, **extra) -> dict:
    return {
        "direction": direction,
        "pause_seconds": pause,
        "failed_transactions": failed,
        "transactions": 100,
        "steps": [{"step": k, "seconds": v} for k, v in (steps or {}).items()],
        **extra,
    }


def test_switch_summary_has_percentiles_failed_transactions_and_step_medians():
    runs = [
        _run("cutover", 0.4, {"pause": 0.01, "drain": 0.2, "switch": 0.1}),
        _run("cutover", 0.6, {"pause": 0.03, "drain": 0.4, "switch": 0.1}, failed=2),
        _run("cutover", 0.5, {"pause": 0.02, "drain": 0.3, "switch": 0.1}),
    ]
    summary = switch_summary(runs)
    assert summary["runs"] == 3 and summary["p50"] == 0.5 and summary["max"] == 0.6
    assert summary["failed_transactions"] == 2 and summary["transactions"] == 300
    assert summary["step_medians"] == {"pause": 0.02, "drain": 0.3, "switch": 0.1}  # the pause's own order
    assert summary["refused"] == 0 and summary["failed_runs"] == 0


def test_switch_summary_counts_refused_and_failed_runs_but_only_pauses_in_the_percentiles():
    runs = [
        _run("rollback", None, failed=1, refused=True),
        _run("rollback", 0.8),
        _run("rollback", None, error="pg_rollback run r3 failed"),
    ]
    summary = switch_summary(runs)
    assert summary["runs"] == 1 and summary["p50"] == 0.8
    assert summary["refused"] == 1 and summary["failed_runs"] == 1
    assert summary["failed_transactions"] == 1  # a client failing while a refused run ran counts too
    assert switch_summary([]) == {
        "runs": 0,
        "refused": 0,
        "failed_runs": 0,
        "failed_transactions": 0,
        "transactions": 0,
    }


def _cutover_result(large: tuple[float, float], small: tuple[float, float], failed: int = 0) -> dict:
    """p50s of (cutover, rollback) per size; max = p50 + 0.5."""

    def size(name: str, mb: float, p50s: tuple[float, float], failed: int) -> dict:
        return {
            "database": name,
            "size_mb": mb,
            **{
                d: {
                    "runs": 3,
                    "refused": 0,
                    "failed_runs": 0,
                    "failed_transactions": failed if d == "cutover" else 0,
                    "transactions": 900,
                    "p50": p,
                    "max": p + 0.5,
                    "step_medians": {"pause": 0.012, "drain": 0.25},
                }
                for d, p in zip(("cutover", "rollback"), p50s, strict=True)
            },
        }

    return {
        "cutover": {
            "tps": 200,
            "clients": 4,
            "rounds": 3,
            "sizes": {"large": size("bench", 1030.4, large, failed), "small": size("bench_small", 101.2, small, 0)},
        }
    }


def test_cutover_goals_take_the_worst_size_and_direction():
    result = goals(_cutover_result(large=(0.6, 0.9), small=(0.5, 0.5)))
    assert result["cutover_pause_p50_s"] == {
        "goal": "write pause p50 < 1 s (worst size and direction)",
        "figure": 0.9,
        "met": True,
    }
    assert result["cutover_pause_max_s"]["figure"] == 1.4 and result["cutover_pause_max_s"]["met"] is True
    # cutover 0.6 / 0.5 = 1.2 (met), rollback 0.9 / 0.5 = 1.8: the worse direction decides
    assert result["cutover_1gb_vs_100mb"]["figure"] == 1.8 and result["cutover_1gb_vs_100mb"]["met"] is False
    assert "bench (1030 MB) <= 1.2x bench_small (101 MB)" in result["cutover_1gb_vs_100mb"]["goal"]
    assert result["cutover_failed_transactions"] == {
        "goal": "failed client transactions = 0 (pgbench, all cutovers and rollbacks)",
        "figure": 0,
        "met": True,
    }


def test_cutover_goals_not_met_and_not_measured():
    result = goals(_cutover_result(large=(1.1, 0.5), small=(1.0, 0.5), failed=3))
    assert result["cutover_pause_p50_s"]["met"] is False
    assert result["cutover_pause_max_s"]["met"] is True  # 1.6 s
    failed = result["cutover_failed_transactions"]
    assert failed["figure"] == 3 and failed["met"] is False
    for name in ("cutover_pause_p50_s", "cutover_pause_max_s", "cutover_1gb_vs_100mb", "cutover_failed_transactions"):
        assert goals({})[name]["met"] is None and goals({})[name]["figure"] is None
    only_small = _cutover_result(large=(0.5, 0.5), small=(0.5, 0.5))
    del only_small["cutover"]["sizes"]["large"]
    assert goals(only_small)["cutover_1gb_vs_100mb"]["met"] is None  # no ratio without both sizes
    assert goals(only_small)["cutover_pause_p50_s"]["met"] is True


def test_render_table_has_one_cutover_block_with_steps():
    table = render_table(_cutover_result(large=(0.6, 0.9), small=(0.5, 0.5), failed=3))
    assert "cutover and rollback x3, pgbench 200 tps (tpcb-like, 4 clients) through PgBouncer 6432 + 6433" in table
    lines = table.splitlines()
    large_cutover = next(line for line in lines if line.startswith("bench (1030 MB): pg_cutover"))
    assert large_cutover.split()[-4:] == ["0.600", "1.100", "3", "3"]
    assert lines.index(large_cutover) < lines.index(next(ln for ln in lines if ln.startswith("bench_small")))
    assert "  median ms: pause 12 | drain 250" in table
    assert "1.80x  NOT MET" in table  # the size ratio prints as a ratio
    assert "failed client transactions = 0" in table and "        3  NOT MET" in table
    assert "0.900 s  MET" in table


def test_render_table_marks_refused_and_failed_runs():
    result = _cutover_result(large=(0.6, 0.9), small=(0.5, 0.5))
    result["cutover"]["sizes"]["small"]["cutover"].update(refused=1, failed_runs=1)
    table = render_table(result)
    assert "3+1r+1f" in table and "+Nr = refused" in table


def test_render_table_without_cutover_has_no_cutover_block():
    table = render_table(RESULT)
    assert "write pause (the timeline)" not in table and "pg_cutover" not in table
    assert "pause p50 large database <= 1.2x small database" in table


PGBENCH_OK = """pgbench (15.18 (Debian 15.18-0+deb12u1))
transaction type: <builtin: TPC-B (sort of)>
scaling factor: 2
query mode: simple
number of clients: 2
number of threads: 1
maximum number of tries: 1
duration: 10 s
number of transactions actually processed: 1002
number of failed transactions: 0 (0.000%)
latency average = 2.345 ms
tps = 100.2 (without initial connection time)
"""


def test_parse_pgbench_summary_of_a_clean_run():
    assert parse_pgbench_summary(PGBENCH_OK) == {
        "complete": True,
        "transactions": 1002,
        "failed_transactions": 0,
        "aborted_clients": 0,
        "errors": [],
    }


def test_parse_pgbench_summary_adds_aborted_clients_and_counts_a_run_without_summary():
    aborted = PGBENCH_OK.replace("processed: 1002", "processed: 800").replace(
        "failed transactions: 0 (0.000%)", "failed transactions: 2 (0.250%)"
    ) + (
        "pgbench: error: client 1 script 0 aborted in command 5 query 0: ERROR:  cannot execute UPDATE in a "
        "read-only transaction\npgbench: error: Run was aborted; the above results are incomplete.\n"
    )
    figures = parse_pgbench_summary(aborted)
    assert figures["transactions"] == 800 and figures["aborted_clients"] == 1
    assert figures["failed_transactions"] == 3  # 2 it gave up on + the aborted client's
    assert "read-only transaction" in figures["errors"][0]
    killed = parse_pgbench_summary("pgbench (15.18)\n")
    assert killed["complete"] is False and killed["failed_transactions"] == 1
    refused = parse_pgbench_summary('pgbench: error: connection to server at "127.0.0.1", port 6433 failed\n')
    assert refused["failed_transactions"] == 1 and refused["errors"]


def test_total_load_adds_segments():
    segments = [
        {"complete": True, "transactions": 10, "failed_transactions": 0, "aborted_clients": 0, "errors": []},
        {
            "complete": False,
            "transactions": 0,
            "failed_transactions": 1,
            "aborted_clients": 0,
            "errors": ["pgbench: error: x"],
        },
    ]
    assert total_load(segments) == {
        "transactions": 10,
        "failed_transactions": 1,
        "aborted_clients": 0,
        "incomplete_segments": 1,
        "segments": 2,
        "errors": ["pgbench: error: x"],
    }


def test_switch_event_is_the_newest_with_the_pause_since_the_run_started():
    t0 = datetime(2026, 12, 3, 8, 0, tzinfo=UTC)
    events = [
        {"at": t0 - timedelta(minutes=5), "phase": "cut_over", "details": {"pause_seconds": 0.9, "steps": []}},
        {"at": t0 + timedelta(seconds=20), "phase": "cut_over", "details": {"pause_seconds": 0.4, "steps": []}},
        {"at": t0 + timedelta(seconds=30), "phase": "cut_over", "details": {}},  # an abort path: no figures
        {"at": t0 + timedelta(seconds=40), "phase": "switched_back", "details": {"pause_seconds": 0.3}},
    ]
    assert switch_event(events, "cut_over", t0)["pause_seconds"] == 0.4
    assert switch_event(events, "switched_back", t0)["pause_seconds"] == 0.3
    assert switch_event(events, "cut_over", t0 + timedelta(seconds=25)) is None
