"""The migration report: one self-contained HTML file (and a markdown twin for tickets) that an on-call
engineer can hand to stakeholders.

It reads only the control database (`report_data.collect_report_data`): the phase timeline, lag samples
(charted as inline SVG, so the file needs no network and no JavaScript), snapshot throughput,
per-table validation with row-level differences, Great Expectations results, cutover pauses, rollbacks
and alerts. Every value from the database is HTML-escaped.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from pgmigrate.core.artifacts import ArtifactPath, location
from pgmigrate.report.throughput_chart import throughput_chart_svg, throughput_summary

PAUSE_PHASES = ("cut_over", "cutover_aborted", "cutover_dry_run", "switched_back")
ROLLBACK_PHASES = ("rollback_started", "rollback_forced", "switched_back", "rolled_back", "rollback_report")


@dataclass
class ReportData:
    migration_id: str
    state: dict[str, Any]
    events: list[dict[str, Any]] = field(default_factory=list)
    lag_samples: list[tuple[datetime, float | None]] = field(default_factory=list)  # (at, end-to-end seconds)
    snapshot_tables: list[dict[str, Any]] = field(default_factory=list)
    validation: list[dict[str, Any]] = field(default_factory=list)  # per table, from the last validation
    validated_at: str | None = None
    great_expectations: dict[str, Any] | None = None  # checkpoint summary, with its Data Docs path
    alerts: list[dict[str, Any]] = field(default_factory=list)
    throughput_samples: list[dict[str, Any]] = field(default_factory=list)  # pgmigrate.stream.throughput, oldest first
    generated_at: datetime = field(default_factory=datetime.now)


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _when(value: Any) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if isinstance(value, datetime) else _e(value)


def lag_chart_svg(samples: list[tuple[datetime, float | None]], width: int = 900, height: int = 260) -> str:
    """End-to-end lag over time as an SVG line chart (seconds on y, time on x), with the max marked."""
    points = [(at, lag) for at, lag in samples if lag is not None]
    if len(points) < 2:
        return '<p class="muted">Not enough lag samples recorded for a chart yet.</p>'
    left, right, top, bottom = 56, 16, 16, 36
    t0, t1 = points[0][0].timestamp(), points[-1][0].timestamp()
    top_value = max(lag for _, lag in points)
    y_max = max(1.0, top_value * 1.1)

    def x(at: datetime) -> float:
        return left + (at.timestamp() - t0) / max(t1 - t0, 1e-9) * (width - left - right)

    def y(lag: float) -> float:
        return top + (1 - lag / y_max) * (height - top - bottom)

    line = " ".join(f"{x(at):.1f},{y(lag):.1f}" for at, lag in points)
    ticks = []
    for i in range(5):
        value = y_max * i / 4
        ticks.append(
            f'<line x1="{left}" x2="{width - right}" y1="{y(value):.1f}" y2="{y(value):.1f}" class="grid"/>'
            f'<text x="{left - 6}" y="{y(value) + 4:.1f}" text-anchor="end">{value:.1f}s</text>'
        )
    peak_at, peak = max(points, key=lambda p: p[1])
    return (
        f'<svg class="chart" id="lag-chart" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        'role="img" aria-label="end-to-end replication lag over time">'
        + "".join(ticks)
        + f'<polyline points="{line}" class="lag"/>'
        f'<circle cx="{x(peak_at):.1f}" cy="{y(peak):.1f}" r="4" class="peak"/>'
        f'<text x="{left}" y="{height - 10}">{_when(points[0][0])}</text>'
        f'<text x="{width - right}" y="{height - 10}" text-anchor="end">{_when(points[-1][0])}</text>'
        f'<text x="{min(x(peak_at) + 8, width - 160):.1f}" y="{max(y(peak) - 6, 12):.1f}">max {peak:.2f}s</text>'
        "</svg>"
    )


def _table(headers: list[str], rows: list[list[Any]], css: str = "") -> str:
    if not rows:
        return '<p class="muted">None recorded.</p>'
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return f'<table class="{css}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _key_text(key: Any) -> str:
    if isinstance(key, dict):
        return ", ".join(f"{k}={v}" for k, v in key.items())
    if isinstance(key, list | tuple):
        return ",".join(str(v) for v in key)
    return str(key)


def _differences(table: dict[str, Any], limit: int = 20) -> str:
    """Row-level differences of one table: missing / extra / changed (with columns), whatever the
    validator recorded; older records only carry the differing keys."""
    parts = []
    for kind in ("missing", "extra", "changed"):
        items = table.get(kind) or []
        if not items:
            continue
        shown = []
        for item in items[:limit]:
            key = item.get("key") if isinstance(item, dict) else item
            columns = item.get("columns") if isinstance(item, dict) else None
            shown.append(_e(_key_text(key)) + (f" ({_e(', '.join(columns))})" if columns else ""))
        total = table.get(f"{kind}_count", len(items))
        more = f" … {total - len(shown)} more" if total > len(shown) else ""
        parts.append(f"<b>{kind}</b> {total}: " + "; ".join(shown) + more)
    if not parts and table.get("differing_keys"):
        parts.append("<b>differing keys</b>: " + "; ".join(_e(_key_text(k)) for k in table["differing_keys"][:limit]))
    return "<br>".join(parts) or "—"


def _durations(snapshot_tables: list[dict[str, Any]]) -> list[list[Any]]:
    rows = []
    for t in snapshot_tables:
        seconds = None
        if t.get("started_at") and t.get("finished_at"):
            seconds = (t["finished_at"] - t["started_at"]).total_seconds()
        rate = f"{t['rows_copied'] / seconds:,.0f} rows/s" if seconds else "—"
        mb = (t.get("bytes_copied") or 0) / 1e6
        rows.append(
            [
                _e(t["table_name"]),
                _e(t["status"]),
                f"{t['rows_copied']:,}",
                f"{mb:,.1f} MB",
                f"{seconds:.1f}s" if seconds is not None else "—",
                rate,
            ]
        )
    return rows


STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:24px;color:#1d2733;max-width:1100px}
h1{font-size:22px}h2{font-size:17px;margin-top:28px;border-bottom:1px solid #dde3ea;padding-bottom:4px}
table{border-collapse:collapse;width:100%;font-size:13px}th,td{border:1px solid #dde3ea;padding:4px 8px;
text-align:left;vertical-align:top}th{background:#f3f6f9}.ok{color:#1b7f3b;font-weight:600}
.bad{color:#b42318;font-weight:600}.muted{color:#6b7785}.chart text{font-size:11px;fill:#47525e}
.chart .grid{stroke:#e6ebf0}.chart .lag{fill:none;stroke:#2563eb;stroke-width:2}.chart .peak{fill:#b42318}
.summary td:first-child{width:220px;font-weight:600}
"""


def render_html(data: ReportData) -> str:
    state = data.state
    validation_ok = all(t.get("ok") for t in data.validation) if data.validation else None
    status = {
        True: '<span class="ok">identical</span>',
        False: '<span class="bad">DIFFERENCES</span>',
        None: '<span class="muted">not validated</span>',
    }[validation_ok]
    pauses = [e for e in data.events if e["phase"] in PAUSE_PHASES and "pause_seconds" in (e.get("details") or {})]
    lags = [lag for _, lag in data.lag_samples if lag is not None]
    summary = [
        ["migration", _e(data.migration_id)],
        ["phase", _e(state.get("phase"))],
        ["last validation", f"{status} {_e(data.validated_at or '')}"],
        ["lag samples", f"{len(lags)}, max {max(lags):.2f}s" if lags else "none"],
        [
            "cutover write pauses",
            ", ".join(f"{e['details']['pause_seconds']:.2f}s ({_e(e['phase'])})" for e in pauses) or "none",
        ],
        ["alerts", f"{len(data.alerts)} ({sum(1 for a in data.alerts if not a.get('resolved_at'))} open)"],
    ]
    validation_rows = [
        [
            _e(t.get("table")),
            '<span class="ok">ok</span>' if t.get("ok") else '<span class="bad">differs</span>',
            f"{t.get('source_rows', 0):,}",
            f"{t.get('target_rows', 0):,}",
            _differences(t),
        ]
        for t in data.validation
    ]
    ge = data.great_expectations
    ge_html = '<p class="muted">No Great Expectations checkpoint recorded.</p>'
    if ge:
        docs = ge.get("data_docs")
        result = '<span class="ok">passed</span>' if ge.get("success") else '<span class="bad">failed</span>'
        link = Path(docs).as_uri() if docs and str(docs).startswith("/") else docs
        ge_html = f"<p>Checkpoint: {result}" + (f' — <a href="{_e(link)}">Data Docs</a>' if docs else "") + "</p>"
    alert_rows = [
        [
            _e(a.get("severity")),
            _e(a.get("condition")),
            _e(a.get("message")),
            _when(a.get("raised_at")),
            _when(a.get("resolved_at")) if a.get("resolved_at") else '<span class="bad">open</span>',
        ]
        for a in data.alerts
    ]
    timeline_rows = [[_when(e["at"]), _e(e["phase"]), _e(e["message"])] for e in data.events]
    cutover_rows = [
        [_when(e["at"]), _e(e["phase"]), _e(e["message"])]
        for e in data.events
        if e["phase"] in PAUSE_PHASES + ROLLBACK_PHASES or e["phase"].startswith("cutover")
    ]
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Migration report: {_e(data.migration_id)}</title>
<style>{STYLE}</style></head><body>
<h1>Migration report: {_e(data.migration_id)}</h1>
<p class="muted">Generated {_when(data.generated_at)} from the migration control database.</p>
<h2>Summary</h2>{_table(["", ""], summary, "summary")}
<h2>End-to-end lag</h2>{lag_chart_svg(data.lag_samples)}
<h2>Throughput and errors</h2><p class="muted">{_e(throughput_summary(data.throughput_samples))}</p>
{throughput_chart_svg(data.throughput_samples)}
<h2>Validation per table</h2>{
        _table(
            ["table", "result", "source rows", "target rows", "row-level differences"], validation_rows, "validation"
        )
    }
<h2>Great Expectations</h2>{ge_html}
<h2>Snapshot throughput</h2>{
        _table(["table", "status", "rows", "size", "time", "rate"], _durations(data.snapshot_tables), "snapshot")
    }
<h2>Cutover and rollback</h2>{_table(["at", "event", "what happened"], cutover_rows, "cutover")}
<h2>Alerts</h2>{_table(["sev", "condition", "message", "raised", "resolved"], alert_rows, "alerts")}
<h2>Timeline</h2>{_table(["at", "phase", "what happened"], timeline_rows, "timeline")}
</body></html>
"""


def render_markdown(data: ReportData) -> str:
    """The same facts as text, for pasting into a ticket."""
    lines = [f"# Migration report: {data.migration_id}", "", f"- phase: `{data.state.get('phase')}`"]
    lags = [lag for _, lag in data.lag_samples if lag is not None]
    if lags:
        lines.append(f"- lag samples: {len(lags)}, max {max(lags):.2f}s, last {lags[-1]:.2f}s")
    if data.throughput_samples:
        lines.append(f"- throughput: {throughput_summary(data.throughput_samples)}")
    for e in data.events:
        if "pause_seconds" in (e.get("details") or {}):
            lines.append(f"- {e['phase']}: write pause {e['details']['pause_seconds']:.2f}s")
    lines += ["", "## Validation", "", "| table | result | source rows | target rows |", "|---|---|---|---|"]
    for t in data.validation:
        result = "ok" if t.get("ok") else "DIFFERS"
        lines.append(f"| {t.get('table')} | {result} | {t.get('source_rows', 0)} | {t.get('target_rows', 0)} |")
    if data.alerts:
        lines += ["", "## Alerts", ""]
        for a in data.alerts:
            state = f"resolved {_when(a['resolved_at'])}" if a.get("resolved_at") else "OPEN"
            lines.append(f"- {a.get('severity')} {a.get('condition')}: {a.get('message')} ({state})")
    lines += ["", "## Timeline", ""]
    lines += [f"- {_when(e['at'])} `{e['phase']}` {e['message']}" for e in data.events]
    return "\n".join(lines) + "\n"


def write_report(data: ReportData, directory: ArtifactPath) -> dict[str, str]:
    """`<directory>/<migration_id>-report.html` and `.md` (a local directory or an object-storage location);
    returns where both are, as `artifacts.location` shows them."""
    directory.mkdir(parents=True, exist_ok=True)
    html_path = directory / f"{data.migration_id}-report.html"
    md_path = directory / f"{data.migration_id}-report.md"
    html_path.write_text(render_html(data))
    md_path.write_text(render_markdown(data))
    return {"html": location(html_path), "markdown": location(md_path)}
