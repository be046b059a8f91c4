"""What an alert says and where it still has to go: the messages pending for an alert row (`pending_messages`),
the payload a channel sends (`message_payload`) and what a channel is (`Channel`; `channels` has the file, webhook
and SMTP ones). Pure: `lifecycle.deliver_pending` sends them and records what was sent.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from pgmigrate.alerts.rules import RUNBOOK, condition_kind


def pending_messages(row: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(channel, "raised"|"resolved") still to send for one alert row. The channels are fixed when the
    alert is raised (a channel added later does not get old alerts); a resolved message goes only where
    the raised one went."""
    pending = []
    for channel, sent in (row.get("deliveries") or {}).items():
        if not sent.get("raised"):
            pending.append((channel, "raised"))
        elif row.get("resolved_at") and not sent.get("resolved"):
            pending.append((channel, "resolved"))
    return pending


def message_payload(row: Mapping[str, Any], status: str, halted: bool = False) -> dict[str, Any]:
    """Slack-compatible JSON (`text`) plus the fields a machine wants."""
    kind = condition_kind(row["condition"])
    if status == "resolved":
        text = (
            f"RESOLVED [{row['severity']}] {row['migration_id']}: {row['condition']} cleared "
            f"(raised {row['raised_at']:%Y-%m-%d %H:%M:%S %Z}). Was: {row['message']}"
        )
    else:
        action = RUNBOOK.get(kind, "see the README's alert section.")
        text = f"[{row['severity']}] {row['migration_id']}: {row['message']}. What to do: {action}"
    return {
        "text": text,
        "status": status,
        "severity": row["severity"],
        "condition": row["condition"],
        "migration_id": row["migration_id"],
        "message": row["message"],
        "raised_at": row["raised_at"].isoformat(),
        "resolved_at": row["resolved_at"].isoformat() if row.get("resolved_at") else None,
        "details": row.get("details") or {},
    }


class Channel(Protocol):
    name: str

    def send(self, payload: dict[str, Any]) -> None: ...
