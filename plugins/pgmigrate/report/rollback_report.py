"""The rollback report: a markdown page for the incident ticket (times, reason, lag, the writes made
on the target during the cutover window and replayed to the source, the timeline)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from pgmigrate.control.state import MigrationStateStore
from pgmigrate.core.artifacts import location
from pgmigrate.cutover.backup import backup_root


@dataclass(frozen=True)
class RollbackFacts:
    """What the rollback's own tasks know (the rest comes from the migration's record): one value for both
    the rendering and the writing of the report."""

    migration_id: str
    reason: str
    forced: bool
    rollback_seconds: float
    pause_seconds: float | None
    replayed_changes: int | None


def _seconds(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f} s"


def render_rollback_report(facts: RollbackFacts, last_lag_seconds: float | None, events: list[dict]) -> str:
    cut_over = next((e for e in reversed(events) if e["phase"] == "cut_over"), None)
    replayed = facts.replayed_changes
    lines = [
        f"# Rollback of migration `{facts.migration_id}`",
        "",
        f"- **Reason:** {facts.reason}",
        f"- **Forced (no drain):** {'yes: writes not yet replayed may be lost' if facts.forced else 'no'}",
        f"- **Cut over at:** {cut_over['at']:%Y-%m-%d %H:%M:%S %Z}" if cut_over else "- **Cut over at:** unknown",
        f"- **Rollback took:** {_seconds(facts.rollback_seconds)} (target < 120 s)",
        f"- **Client writes paused during the switch back:** {_seconds(facts.pause_seconds)}",
        f"- **Changes written on the target after cutover and replayed to the source:** "
        f"{'unknown' if replayed is None else replayed}",
        f"- **Last recorded forward lag:** {_seconds(last_lag_seconds)}",
        "",
        "## Timeline",
        "",
        "| at (UTC) | phase | what happened |",
        "|---|---|---|",
    ]
    for e in events:
        message = str(e["message"]).replace("|", "\\|").replace("\n", " ")
        lines.append(f"| {e['at'].astimezone(UTC):%Y-%m-%d %H:%M:%S} | {e['phase']} | {message} |")
    return "\n".join(lines) + "\n"


def write_rollback_report(store: MigrationStateStore, facts: RollbackFacts) -> str:
    """Written beside the migration's backups (`cutover.backup.backup_root`); returns where (a path or URL)."""
    migration_id = facts.migration_id
    state = store.get(migration_id) or {}
    text = render_rollback_report(facts, state.get("last_lag_seconds"), store.events(migration_id))
    path = backup_root() / migration_id / f"rollback-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    where = location(path)
    store.record_event(migration_id, "rollback_report", f"rollback report written to {where}", path=where)
    return where
