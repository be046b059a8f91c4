"""The report's throughput chart: records/s produced (Debezium into the data topics) and applied (the
sink's committed offsets) per monitor sample, as inline SVG like the lag chart, with dead letters and
FAILED tasks marked where a sample saw any. Produced above applied for long means the sink falls behind."""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

SERIES = (("produced_per_second", "produced", "#2563eb"), ("applied_per_second", "applied", "#1b7f3b"))


def throughput_chart_svg(samples: Sequence[Mapping[str, Any]], width: int = 900, height: int = 260) -> str:
    rated = [s for s in samples if s.get("produced_per_second") is not None or s.get("applied_per_second") is not None]
    if len(rated) < 2:
        return '<p class="muted">Not enough throughput samples recorded for a chart yet (one per monitor run).</p>'
    left, right, top, bottom = 64, 16, 24, 36
    t0, t1 = rated[0]["at"].timestamp(), rated[-1]["at"].timestamp()
    peak = max(max(s.get(k) or 0.0 for k, _, _ in SERIES) for s in rated)
    y_max = max(1.0, peak * 1.1)

    def x(at: datetime) -> float:
        return left + (at.timestamp() - t0) / max(t1 - t0, 1e-9) * (width - left - right)

    def y(value: float) -> float:
        return top + (1 - value / y_max) * (height - top - bottom)

    parts = []
    for i in range(5):
        value = y_max * i / 4
        at = y(value)
        parts.append(
            f'<line x1="{left}" x2="{width - right}" y1="{at:.1f}" y2="{at:.1f}" class="grid"/>'
            f'<text x="{left - 6}" y="{at + 4:.1f}" text-anchor="end">{value:,.0f}/s</text>'
        )
    for n, (key, label, color) in enumerate(SERIES):
        line = " ".join(f"{x(s['at']):.1f},{y(s[key]):.1f}" for s in rated if s.get(key) is not None)
        parts.append(
            f'<polyline points="{line}" fill="none" stroke="{color}" stroke-width="2"/>'
            f'<text x="{left + 8 + n * 110}" y="14" fill="{color}">— {label}</text>'
        )
    for s in rated:
        errors = (s.get("dead_letters") or 0) + (s.get("failed_tasks") or 0)
        if errors:
            title = html.escape(
                f"{s['at']:%H:%M:%S}: {s.get('dead_letters') or 0} dead letters, "
                f"{s.get('failed_tasks') or 0} failed tasks"
            )
            parts.append(
                f'<circle cx="{x(s["at"]):.1f}" cy="{height - bottom:.1f}" r="4" class="peak">'
                f"<title>{title}</title></circle>"
            )
    return (
        f'<svg class="chart" id="throughput-chart" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        'role="img" aria-label="records per second produced and applied over time">'
        + "".join(parts)
        + f'<text x="{left}" y="{height - 10}">{rated[0]["at"]:%Y-%m-%d %H:%M:%S}</text>'
        f'<text x="{width - right}" y="{height - 10}" text-anchor="end">{rated[-1]["at"]:%Y-%m-%d %H:%M:%S}</text>'
        "</svg>"
    )


def throughput_summary(samples: Sequence[Mapping[str, Any]]) -> str:
    """One line for the report's summary and the markdown twin."""
    applied = [s["applied_per_second"] for s in samples if s.get("applied_per_second") is not None]
    if not samples:
        return "no samples"
    dead = max((s.get("dead_letters") or 0) for s in samples)
    failed = max((s.get("failed_tasks") or 0) for s in samples)
    rate = f"applied avg {sum(applied) / len(applied):,.1f}/s, max {max(applied):,.1f}/s" if applied else "no rate yet"
    return f"{len(samples)} samples, {rate}; most dead letters seen {dead}, most failed tasks {failed}"
