"""The runbook's pre-cutover checklist as checks: every one must pass before client writes are paused.

Pure: the readings are taken by the caller, so the rules are tested without servers. Readings that are
already a verdict arrive as `(ok, detail)`: PgBouncer (every instance routes the database to the source,
none paused, routes file = live route), the pre-validation (passed, and recent enough), the dead letter
queue, the direct sessions on the source, and other pauses of this migration.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pgmigrate.kafka.connector_status import RUNNING

Verdict = tuple[bool, str]


@dataclass(frozen=True)
class ChecklistItem:
    name: str
    ok: bool
    detail: str


def evaluate_checklist(
    state: dict[str, Any] | None,
    end_to_end_lag: float | None,
    native_lag: float | None,
    native_expected: bool,
    max_lag_seconds: float,
    connectors_state: str,
    connectors_detail: str,
    *,
    pgbouncer: Verdict,
    pre_validation: Verdict,
    dead_letters: Verdict = (True, "no dead letter queue read"),
    direct_sessions: Verdict = (True, "not checked"),
    pause_lease: Verdict = (True, "no other pause of this migration"),
) -> list[ChecklistItem]:
    items = []
    phase = state["phase"] if state else None
    items.append(
        ChecklistItem(
            "migration_streaming",
            phase == "streaming",
            f"phase is {phase!r}"
            + ("" if phase == "streaming" else "; cutover needs 'streaming' (a successful pg_migration run)"),
        )
    )
    lag_ok = end_to_end_lag is not None and end_to_end_lag < max_lag_seconds
    if native_expected:
        lag_ok = lag_ok and native_lag is not None and native_lag < max_lag_seconds
    shown = "no heartbeat on the target" if end_to_end_lag is None else f"{end_to_end_lag:.1f}s"
    if native_expected:
        shown += ", native subscription " + ("not streaming" if native_lag is None else f"{native_lag:.1f}s")
    items.append(ChecklistItem("lag", lag_ok, f"lag {shown} (threshold {max_lag_seconds:g}s)"))
    items.append(ChecklistItem("pre_validation", *pre_validation))
    items.append(ChecklistItem("connectors", connectors_state == RUNNING, connectors_detail))
    items.append(ChecklistItem("dead_letters", *dead_letters))
    items.append(ChecklistItem("pgbouncer", *pgbouncer))
    items.append(ChecklistItem("direct_sessions", *direct_sessions))
    items.append(ChecklistItem("pause_lease", *pause_lease))
    return items


def format_checklist(items: list[ChecklistItem]) -> str:
    return "\n".join(f"[{'ok' if i.ok else 'FAIL'}] {i.name}: {i.detail}" for i in items)
