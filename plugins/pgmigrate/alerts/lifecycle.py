"""An alert's life over the control database's `alert` table (`control.alert_store.AlertStore`): the
reconciliation of what the rules say is active now with what is open (`reconcile_alerts`: raised once, resolved
once), and the delivery of the messages still pending to the channels (`deliver_pending`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta

from pgmigrate.alerts.evaluation import Evaluation, plan_reconcile
from pgmigrate.alerts.messages import Channel, message_payload, pending_messages
from pgmigrate.alerts.rules import MONITOR_KINDS, Alert
from pgmigrate.control.alert_store import AlertStore
from pgmigrate.core.endpoints import PgEndpoint

log = logging.getLogger(__name__)


def reconcile_alerts(
    store_endpoint: PgEndpoint,
    migration_id: str,
    active: list[Alert] | Evaluation,
    channels: Sequence[str] = ("log",),
) -> tuple[list[Alert], list[str]]:
    """Raise the active conditions that are not open yet, resolve open ones that cleared; (raised,
    resolved). A plain list counts as every monitor kind evaluated (MONITOR_KINDS); pass an Evaluation to
    say which kinds were evaluated when some could not be read."""
    evaluation = active if isinstance(active, Evaluation) else Evaluation(list(active), set(MONITOR_KINDS))
    store = AlertStore(store_endpoint)
    open_now = store.open_conditions(migration_id)
    to_raise, to_resolve = plan_reconcile(open_now, evaluation)
    raised = [a for a in to_raise if store.raise_alert(a, channels)]
    store.touch(migration_id, [a.condition for a in evaluation.active if a.condition in open_now])
    resolved = [c for c in to_resolve if store.resolve(migration_id, c)]
    for alert in raised:
        log.warning(
            "%s alert RAISED for %s: %s. What to do: %s", alert.severity, migration_id, alert.message, alert.action
        )
    for condition in resolved:
        log.info("alert RESOLVED for %s: %s cleared", migration_id, condition)
    return raised, resolved


def deliver_pending(
    store_endpoint: PgEndpoint,
    channels: Sequence[Channel],
    migration_id: str | None = None,
    max_age: timedelta = timedelta(days=1),
) -> list[tuple[str, str, str]]:
    """Send every pending message; returns (condition, channel, status) sent. Rows are locked while
    sending (SKIP LOCKED), so the monitor and a DAG failure notifier never send the same message
    twice; a channel that fails is retried on the next call, for up to `max_age`."""
    by_name = {c.name: c for c in channels}
    sent: list[tuple[str, str, str]] = []
    with AlertStore(store_endpoint).claim_pending(migration_id, max_age) as pending:
        for row in pending.rows:
            deliveries = {k: dict(v) for k, v in (row["deliveries"] or {}).items()}
            for channel_name, status in pending_messages(row):
                channel = by_name.get(channel_name)
                if channel is None:
                    continue  # configured when raised, gone now: retried if it comes back
                try:
                    channel.send(message_payload(row, status))
                except Exception as exc:
                    log.error(
                        "alert %s of %s: %s channel failed (%s); retried on the next monitor run",
                        row["condition"],
                        row["migration_id"],
                        channel_name,
                        exc,
                    )
                    continue
                deliveries[channel_name][status] = datetime.now().astimezone().isoformat()
                sent.append((row["condition"], channel_name, status))
            all_raised = all(d.get("raised") for d in deliveries.values())
            all_resolved = row["resolved_at"] is not None and all(d.get("resolved") for d in deliveries.values())
            pending.record_deliveries(row["id"], deliveries, all_raised, all_resolved)
    return sent
