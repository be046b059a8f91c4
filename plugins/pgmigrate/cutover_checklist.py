"""The runbook's pre-cutover checklist as checks: every one must pass before client writes are paused.

Pure: the readings are taken by the caller, so the rules are tested without servers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pgmigrate.connector_status import RUNNING


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
    route: str | None,
    source_address: str,
    dead_letters: tuple[bool, str] = (True, "no dead letter queue read"),
) -> list[ChecklistItem]:
    """`route`: where PgBouncer sends the database now (host:port/db), None when PgBouncer is unreachable.
    `dead_letters`: (ok, detail) from `dead_letters.checklist_detail`: unacknowledged DLQ records refuse."""
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
    validation = (state or {}).get("last_validation") or {}
    tables = validation.get("tables") or []
    bad = [t["table"] for t in tables if not t.get("ok")]
    items.append(
        ChecklistItem(
            "last_validation",
            bool(tables) and not bad,
            "no validation recorded"
            if not tables
            else (f"{len(tables)} tables identical" if not bad else f"tables differ: {', '.join(bad)}"),
        )
    )
    items.append(ChecklistItem("connectors", connectors_state == RUNNING, connectors_detail))
    items.append(ChecklistItem("dead_letters", *dead_letters))
    if route is None:
        route_detail = "PgBouncer unreachable"
    elif route == source_address:
        route_detail = f"routes the database to the source {route}"
    else:
        route_detail = f"routes the database to {route}, not the source {source_address}"
    items.append(ChecklistItem("pgbouncer", route == source_address, route_detail))
    return items


def format_checklist(items: list[ChecklistItem]) -> str:
    return "\n".join(f"[{'ok' if i.ok else 'FAIL'}] {i.name}: {i.detail}" for i in items)
