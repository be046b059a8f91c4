"""The figures of `make bench`: percentiles, ratios, the goals of issues #4, #6 and #13 and the one printed table.

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
# Issue #13: the write pause of a cutover and of a rollback, at any database size, with no failed client write.
PAUSE_P50_GOAL_SECONDS = 1.0
PAUSE_MAX_GOAL_SECONDS = 2.0
PAUSE_SIZE_RATIO_GOAL = 1.2  # the large database's p50 pause over the small one's
SWITCH_DIRECTIONS = ("cutover", "rollback")
SWITCH_SIZES = ("large", "small")  # the order of the printed rows; the ratio goal is large / small


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


def switch_summary(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The figures of one size and direction (cutovers, or rollbacks) from its runs.

    `runs`: one dict per DAG run, `pause_seconds` (None when the run paused nothing: refused by its checks,
    or failed), `steps` ([{"step", "seconds"}], the critical section's own timing), `failed_transactions`
    (pgbench's, counted for every run: a client failing while a refused run waited is failing all the same),
    `refused` (True when its checks refused before any pause). The median of each step shows what the pause
    is made of; a step that appears twice in one run (none does today) counts with its sum.
    """
    paused = [r for r in runs if r.get("pause_seconds") is not None]
    summary: dict[str, Any] = {
        "runs": len(paused),
        "refused": sum(1 for r in runs if r.get("refused")),
        "failed_runs": sum(1 for r in runs if r.get("error")),
        "failed_transactions": sum(int(r.get("failed_transactions") or 0) for r in runs),
        "transactions": sum(int(r.get("transactions") or 0) for r in runs),
    }
    if not paused:
        return summary
    pauses = [float(r["pause_seconds"]) for r in paused]
    summary["p50"] = round(percentile(pauses, 50), 3)
    summary["max"] = round(max(pauses), 3)
    per_step: dict[str, list[float]] = {}
    for run in paused:
        seconds: dict[str, float] = {}
        for step in run.get("steps") or []:
            seconds[step["step"]] = seconds.get(step["step"], 0.0) + float(step["seconds"])
        for name, value in seconds.items():
            per_step.setdefault(name, []).append(value)
    summary["step_medians"] = {name: round(percentile(values, 50), 3) for name, values in per_step.items()}
    return summary


def _switch_summaries(result: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """(size, direction, summary) of every measured size and direction, in table order."""
    sizes = (result.get("cutover") or {}).get("sizes") or {}
    found = []
    for size in SWITCH_SIZES:
        for direction in SWITCH_DIRECTIONS:
            summary = (sizes.get(size) or {}).get(direction)
            if summary:
                found.append((size, direction, summary))
    return found


def _size_label(result: dict[str, Any], size: str) -> str:
    figures = ((result.get("cutover") or {}).get("sizes") or {}).get(size) or {}
    if "database" not in figures:
        return f"{size} database"
    return f"{figures['database']} ({figures.get('size_mb', 0):.0f} MB)"


def cutover_goals(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Issue #13's pause goals: the worst p50 and the worst pause of every size and direction, the large
    database's p50 over the small one's (the worse direction), and the failed client transactions in all."""
    summaries = _switch_summaries(result)
    p50s = [s["p50"] for _, _, s in summaries if "p50" in s]
    maxes = [s["max"] for _, _, s in summaries if "max" in s]
    by_key = {(size, direction): s for size, direction, s in summaries}
    ratios = [
        r
        for direction in SWITCH_DIRECTIONS
        if (
            r := ratio(
                (by_key.get(("large", direction)) or {}).get("p50"), (by_key.get(("small", direction)) or {}).get("p50")
            )
        )
        is not None
    ]
    worst_p50 = max(p50s) if p50s else None
    worst_max = max(maxes) if maxes else None
    worst_ratio = max(ratios) if ratios else None
    failed = sum(s["failed_transactions"] for _, _, s in summaries) if summaries else None
    return {
        "cutover_pause_p50_s": {
            "goal": f"write pause p50 < {PAUSE_P50_GOAL_SECONDS:.0f} s (worst size and direction)",
            "figure": worst_p50,
            "met": None if worst_p50 is None else worst_p50 < PAUSE_P50_GOAL_SECONDS,
        },
        "cutover_pause_max_s": {
            "goal": f"write pause max < {PAUSE_MAX_GOAL_SECONDS:.0f} s (every cutover and rollback)",
            "figure": worst_max,
            "met": None if worst_max is None else worst_max < PAUSE_MAX_GOAL_SECONDS,
        },
        "cutover_1gb_vs_100mb": {
            "goal": f"pause p50 {_size_label(result, 'large')} <= {PAUSE_SIZE_RATIO_GOAL:.1f}x "
            f"{_size_label(result, 'small')}",
            "figure": worst_ratio,
            "met": None if worst_ratio is None else worst_ratio <= PAUSE_SIZE_RATIO_GOAL,
        },
        "cutover_failed_transactions": {
            "goal": "failed client transactions = 0 (pgbench, all cutovers and rollbacks)",
            "figure": failed,
            "met": None if failed is None else failed == 0,
        },
    }


def goals(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each goal with its figure and whether it is met (None when not measured)."""
    copy_ratio = (result.get("copy") or {}).get("ratio_to_dump_restore")
    heartbeat_p99 = ((result.get("lag") or {}).get("heartbeat") or {}).get("p99")
    history_p99 = ((result.get("lag") or {}).get("history") or {}).get("p99")
    rate = (result.get("lag") or {}).get("rate_tps")
    at_rate = f" at {rate} tps" if rate is not None else ""
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
            "goal": f"end-to-end lag p99 (heartbeat) < {LAG_P99_GOAL_SECONDS:.0f} s{at_rate}",
            "figure": heartbeat_p99,
            "met": None if heartbeat_p99 is None else heartbeat_p99 < LAG_P99_GOAL_SECONDS,
        },
        "lag_p99_rows": {
            "goal": f"data lag p99 (pgbench_history rows) < {LAG_P99_GOAL_SECONDS:.0f} s{at_rate}",
            "figure": history_p99,
            "met": None if history_p99 is None else history_p99 < LAG_P99_GOAL_SECONDS,
        },
        **cutover_goals(result),
    }


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def _lag(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _verdict(met: bool | None) -> str:
    return {True: "MET", False: "NOT MET", None: "not measured"}[met]


# How each goal's figure prints; seconds for the others.
_RATIO_GOALS = {"copy_vs_dump_restore", "validation_vs_plain_scan", "cutover_1gb_vs_100mb"}
_COUNT_GOALS = {"cutover_failed_transactions"}


def _goal_figure(name: str, figure: float | None) -> str:
    if figure is None:
        return "-"
    if name in _RATIO_GOALS:
        return f"{figure:.2f}x"
    if name in _COUNT_GOALS:
        return f"{figure:d}"
    return f"{figure:.3f} s"


def cutover_rows(result: dict[str, Any], width: int = 58) -> list[str]:
    """The table's cutover block: per size and direction the pause's p50 and max, failed client transactions,
    runs, and below it the median of each step of the pause (what the pause is made of), in milliseconds."""
    cutover = result.get("cutover") or {}
    summaries = _switch_summaries(result)
    if not summaries:
        return []
    lines = [
        f"cutover and rollback x{cutover.get('rounds')}, pgbench {cutover.get('tps')} tps (tpcb-like, "
        f"{cutover.get('clients')} clients) through PgBouncer 6432 + 6433",
        f"{'write pause (the timeline), seconds; failed client transactions':<{width + 8}} {'p50':>7} {'max':>7} "
        f"{'failed':>7} {'runs':>8}",
    ]
    for size, direction, s in summaries:
        runs = (
            str(s["runs"])
            + (f"+{s['refused']}r" if s.get("refused") else "")
            + (f"+{s['failed_runs']}f" if s.get("failed_runs") else "")
        )
        label = f"{_size_label(result, size)}: pg_{direction}"
        lines.append(
            f"{label:<{width + 8}} {_lag(s.get('p50')):>7} {_lag(s.get('max')):>7} "
            f"{s['failed_transactions']:>7} {runs:>8}"
        )
        steps = s.get("step_medians") or {}
        if steps:
            lines.append("  median ms: " + " | ".join(f"{name} {value * 1000:.0f}" for name, value in steps.items()))
    if any(s.get("refused") or s.get("failed_runs") for _, _, s in summaries):
        lines.append("  runs: +Nr = refused by their checks before pausing, +Nf = failed (see NOT MEASURED)")
    return lines


def render_table(result: dict[str, Any]) -> str:
    """The one table `make bench` prints: load times with ratios, lag percentiles, cutover pauses, goals."""
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
        lines.append(
            f"{'  pg_dump | pg_restore':<{width}} {_seconds(dump['dump_seconds']):>9} "
            f"| {_seconds(dump['restore_seconds'])}"
        )
    for method, tasks in (
        ("copy", "copy_schema + snapshot + apply_post_data"),
        ("debezium", "copy_schema + wait_snapshot + apply_post_data"),
    ):
        run = result.get(method)
        if not run:
            continue
        lines.append(
            f"{f'{method}: {tasks}':<{width}} {_seconds(run['load_seconds']):>9} "
            f"{_ratio(run.get('ratio_to_dump_restore')):>16}"
        )
        per_task = " | ".join(_seconds(run["tasks"].get(task)) for task in run["load_tasks"])
        lines.append(f"{'  ' + ' | '.join(run['load_tasks']):<{width}} {per_task:>9}")
        span = f"  span: {run['load_tasks'][0]} start -> {run['load_tasks'][-1]} end"
        lines.append(f"{span:<{width}} {_seconds(run.get('load_span_seconds')):>9}")
        lines.append(
            f"{'  DAG run start -> caught up (wait_caught_up done)':<{width}} "
            f"{_seconds(run.get('to_caught_up_seconds')):>9} "
            f"{_ratio(run.get('to_caught_up_ratio_to_dump_restore')):>16}"
        )
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
        lines.append(
            f"{'  plain md5(string_agg) scan, both sides':<{width}} "
            f"{_seconds(validation['plain_scan_seconds']):>9} {'1.00x':>16}"
        )
        lines.append(
            f"{'  row diff (pg_validate data_compare), ' + str(validation['tables']) + ' tables':<{width}} "
            f"{_seconds(validation['row_diff_seconds']):>9} {_ratio(validation['ratio_to_plain_scan']):>16}"
        )
    switches = cutover_rows(result, width)
    if switches:
        lines.append("")
        lines.extend(switches)
    lines.append("")
    for name, goal in goals(result).items():
        lines.append(
            f"goal: {goal['goal']:<{width + 8}} {_goal_figure(name, goal['figure']):>9}  {_verdict(goal['met'])}"
        )
    for key, message in (result.get("errors") or {}).items():
        lines.append(f"NOT MEASURED {key}: {message}")
    return "\n".join(lines)
