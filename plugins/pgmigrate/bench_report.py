"""The figures of `make bench`: percentiles, ratios, the goals of issue #4 and the one printed table.

Pure functions over plain dicts (the same dict is written as JSON), so they are unit tested.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

# Goals from the issue: the copy load at most as slow as pg_dump/pg_restore; lag p99 under a second.
COPY_RATIO_GOAL = 1.0
VALIDATION_RATIO_GOAL = 2.0  # issue #6: validation within 2x a plain md5 scan of both sides
LAG_P99_GOAL_SECONDS = 1.0
LAG_PERCENTILES = (50, 95, 99)


def percentile(values: Sequence[float], pct: float) -> float:
    """Linear interpolation between closest ranks (PostgreSQL's percentile_cont, numpy's default)."""
    if not values:
        raise ValueError("percentile of no values")
    if not 0 <= pct <= 100:
        raise ValueError(f"percentile {pct} is outside 0..100")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * pct / 100.0
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def lag_summary(values: Sequence[float]) -> dict[str, Any]:
    """`{"samples": n, "p50": …, "p95": …, "p99": …, "max": …}` in seconds; only `samples` when empty."""
    if not values:
        return {"samples": 0}
    summary: dict[str, Any] = {"samples": len(values)}
    for pct in LAG_PERCENTILES:
        summary[f"p{pct}"] = round(percentile(values, pct), 4)
    summary["max"] = round(max(values), 4)
    return summary


def ratio(value: float | None, baseline: float | None) -> float | None:
    if value is None or not baseline:
        return None
    return round(value / baseline, 3)


def goals(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each goal with its figure and whether it is met (None when not measured)."""
    copy_ratio = (result.get("copy") or {}).get("ratio_to_dump_restore")
    heartbeat_p99 = ((result.get("lag") or {}).get("heartbeat") or {}).get("p99")
    history_p99 = ((result.get("lag") or {}).get("history") or {}).get("p99")
    rate = (result.get("lag") or {}).get("rate_tps")
    validation_ratio = (result.get("validation") or {}).get("ratio_to_plain_scan")
    return {
        "validation_vs_plain_scan": {
            "goal": f"row-diff validation <= {VALIDATION_RATIO_GOAL:.1f}x a plain md5 scan of both sides",
            "figure": validation_ratio,
            "met": None if validation_ratio is None else validation_ratio <= VALIDATION_RATIO_GOAL,
        },
        "copy_vs_dump_restore": {
            "goal": f"copy initial load <= {COPY_RATIO_GOAL:.1f}x pg_dump+pg_restore",
            "figure": copy_ratio,
            "met": None if copy_ratio is None else copy_ratio <= COPY_RATIO_GOAL,
        },
        "lag_p99_heartbeat": {
            "goal": f"end-to-end lag p99 (heartbeat) < {LAG_P99_GOAL_SECONDS:.0f} s at {rate} tps",
            "figure": heartbeat_p99,
            "met": None if heartbeat_p99 is None else heartbeat_p99 < LAG_P99_GOAL_SECONDS,
        },
        "lag_p99_rows": {
            "goal": f"data lag p99 (pgbench_history rows) < {LAG_P99_GOAL_SECONDS:.0f} s at {rate} tps",
            "figure": history_p99,
            "met": None if history_p99 is None else history_p99 < LAG_P99_GOAL_SECONDS,
        },
    }


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def _lag(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _verdict(met: bool | None) -> str:
    return {True: "MET", False: "NOT MET", None: "not measured"}[met]


def render_table(result: dict[str, Any]) -> str:
    """The one table `make bench` prints: load times with ratios, lag percentiles, goals."""
    lines: list[str] = []
    db = result.get("database", {})
    lines.append(
        f"make bench: source database {db.get('name')} {db.get('size_mb', 0):.0f} MB "
        f"(pgbench scale {db.get('pgbench_scale')}, {db.get('doc_rows')} docs, {db.get('blob_rows')} blobs)"
    )
    width = 58
    lines.append(f"{'initial load':<{width}} {'seconds':>9} {'vs dump+restore':>16}")
    dump = result.get("dump_restore")
    if dump:
        lines.append(f"{'pg_dump -Fd -j2 + pg_restore -j2':<{width}} {_seconds(dump['seconds']):>9} {'1.00x':>16}")
        lines.append(f"{'  pg_dump | pg_restore':<{width}} {_seconds(dump['dump_seconds']):>9} "
                     f"| {_seconds(dump['restore_seconds'])}")
    for method, tasks in (("copy", "copy_schema + snapshot + apply_post_data"),
                          ("debezium", "copy_schema + wait_snapshot + apply_post_data")):
        run = result.get(method)
        if not run:
            continue
        lines.append(f"{f'{method}: {tasks}':<{width}} {_seconds(run['load_seconds']):>9} "
                     f"{_ratio(run.get('ratio_to_dump_restore')):>16}")
        per_task = " | ".join(_seconds(run["tasks"].get(task)) for task in run["load_tasks"])
        lines.append(f"{'  ' + ' | '.join(run['load_tasks']):<{width}} {per_task:>9}")
        span = f"  span: {run['load_tasks'][0]} start -> {run['load_tasks'][-1]} end"
        lines.append(f"{span:<{width}} {_seconds(run.get('load_span_seconds')):>9}")
        lines.append(f"{'  DAG run start -> caught up (wait_caught_up done)':<{width}} "
                     f"{_seconds(run.get('to_caught_up_seconds')):>9} "
                     f"{_ratio(run.get('to_caught_up_ratio_to_dump_restore')):>16}")
    lag = result.get("lag")
    if lag:
        lines.append("")
        lines.append(
            f"lag while pgbench writes {lag['rate_tps']} tps for {lag['duration_seconds']} s "
            f"(achieved {lag.get('achieved_tps') or '-'} tps) with the copy migration streaming"
        )
        lines.append(f"{'seconds':<{width}} {'p50':>7} {'p95':>7} {'p99':>7} {'max':>7} {'samples':>8}")
        for key, label in (("heartbeat", "end-to-end, heartbeat row"), ("history", "data, pgbench_history rows")):
            s = lag.get(key) or {}
            lines.append(
                f"{label:<{width}} {_lag(s.get('p50')):>7} {_lag(s.get('p95')):>7} {_lag(s.get('p99')):>7} "
                f"{_lag(s.get('max')):>7} {s.get('samples', 0):>8}"
            )
    validation = result.get("validation")
    if validation:
        lines.append("")
        title = "validation of the whole database (bench vs bench_copy)"
        lines.append(f"{title:<{width}} {'seconds':>9} {'ratio':>16}")
        lines.append(f"{'  plain md5(string_agg) scan, both sides':<{width}} "
                     f"{_seconds(validation['plain_scan_seconds']):>9} {'1.00x':>16}")
        lines.append(f"{'  row diff (pg_validate data_compare), ' + str(validation['tables']) + ' tables':<{width}} "
                     f"{_seconds(validation['row_diff_seconds']):>9} {_ratio(validation['ratio_to_plain_scan']):>16}")
    lines.append("")
    for goal in goals(result).values():
        figure = goal["figure"]
        shown = "-" if figure is None else (f"{figure:.2f}x" if goal["goal"].split()[0] in ("copy", "row-diff")
                                            else f"{figure:.3f} s")
        lines.append(f"goal: {goal['goal']:<{width + 8}} {shown:>9}  {_verdict(goal['met'])}")
    for key, message in (result.get("errors") or {}).items():
        lines.append(f"NOT MEASURED {key}: {message}")
    return "\n".join(lines)
