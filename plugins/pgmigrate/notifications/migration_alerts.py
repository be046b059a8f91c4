"""Airflow side of the alerts: channels from Airflow connections, thresholds from an Airflow Variable,
and `MigrationAlertNotifier`, a DAG/task failure callback that raises an alert through the same
dedupe (the `alert` table) and channels as `pg_migration_monitor`.

Connections (absent = channel off):
- `alerts_webhook` (http): host = the webhook URL (or host/port/schema + extra `endpoint`); a Slack
  incoming webhook works as is. Extra `headers` (dict) is sent along.
- `alerts_smtp` (smtp/email/generic): host, port, login, password; extra `to` (list or comma-separated),
  `from`, `starttls` (default true; port 465 uses SSL).
The JSON-lines file channel is always on (`pgmigrate.alerts.channels.alert_file_channel`: the local file, or one
object per alert under `$PGMIGRATE_ARTIFACTS_URL`'s `alerts/`).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from airflow.sdk import BaseHook, BaseNotifier
from airflow.sdk.log import mask_secret

from pgmigrate.alerts.channels import SmtpChannel, WebhookChannel, alert_file_channel, recipients, webhook_url
from pgmigrate.alerts.lifecycle import deliver_pending
from pgmigrate.alerts.messages import Channel
from pgmigrate.alerts.rules import P0, Alert, Thresholds
from pgmigrate.control.alert_store import AlertStore
from pgmigrate.core.params import CONTROL_CONN_ID

log = logging.getLogger(__name__)

WEBHOOK_CONN_ID = "alerts_webhook"
SMTP_CONN_ID = "alerts_smtp"
THRESHOLDS_VARIABLE = "pgmigrate_alert_thresholds"


def _connection(conn_id: str) -> Any | None:
    try:
        return BaseHook.get_connection(conn_id)
    except Exception:  # not defined: the channel is off
        return None


def alert_channels() -> list[Channel]:
    """The file channel, plus webhook and SMTP when their connections exist."""
    channels: list[Channel] = [alert_file_channel()]
    webhook = _connection(WEBHOOK_CONN_ID)
    if webhook is not None:
        extra = webhook.extra_dejson
        url = webhook_url(webhook.host, webhook.port, webhook.schema, extra.get("endpoint"))
        mask_secret(url)
        channels.append(WebhookChannel(url, headers=dict(extra.get("headers") or {})))
    smtp = _connection(SMTP_CONN_ID)
    if smtp is not None:
        extra = smtp.extra_dejson
        to = recipients(extra.get("to"))
        if not to:
            log.error(
                "connection %s has no `to` in its extra: SMTP alerts are off until it names recipients", SMTP_CONN_ID
            )
        else:
            if smtp.password:
                mask_secret(smtp.password)
            channels.append(
                SmtpChannel(
                    host=smtp.host or "localhost",
                    port=int(smtp.port or 25),
                    sender=extra.get("from") or smtp.login or "pgmigrate@localhost",
                    recipients=to,
                    login=smtp.login,
                    password=smtp.password,
                    starttls=bool(extra.get("starttls", True)),
                )
            )
    return channels


def thresholds_for(migration_id: str, overrides: dict[str, Any] | None = None) -> Thresholds:
    """Thresholds from the Variable `pgmigrate_alert_thresholds` (JSON: global keys plus
    `migrations.<id>` overrides), then `overrides` (e.g. a DAG param) on top."""
    from airflow.sdk import Variable

    value = Variable.get(THRESHOLDS_VARIABLE, default=None)
    value = json.loads(value) if isinstance(value, str) else (value or {})
    merged = {**value, **(overrides or {})}
    return Thresholds.from_mapping(merged, migration_id)


def kafka_log_dirs(kafka_conn_id: str = "kafka_default") -> list[str]:
    """Kafka log dirs visible from the Airflow worker: the connection's extra `log_dirs`, else the local
    stack's (`kafka/data` beside the backup dir). Empty: the disk rule is not evaluated."""
    import os
    from pathlib import Path

    conn = _connection(kafka_conn_id)
    dirs = (conn.extra_dejson.get("log_dirs") if conn is not None else None) or []
    if isinstance(dirs, str):
        dirs = [d.strip() for d in dirs.split(",") if d.strip()]
    if not dirs and os.environ.get("PGMIGRATE_BACKUP_DIR"):
        local = Path(os.environ["PGMIGRATE_BACKUP_DIR"]).parent / "kafka" / "data"
        dirs = [str(local)] if local.is_dir() else []
    return [str(d) for d in dirs]


def control_endpoint(conn_id: str = CONTROL_CONN_ID):
    from pgmigrate.control.state import MigrationStateStore
    from pgmigrate.hooks.migration_db import MigrationDatabaseHook

    endpoint = MigrationDatabaseHook(conn_id).get_conn()
    MigrationStateStore(endpoint).ensure_schema()
    return endpoint


class MigrationAlertNotifier(BaseNotifier):
    """`on_failure_callback=MigrationAlertNotifier(severity="P0", condition="cutover_failed")`: the failed
    run raises that alert for the run's `migration_id` (its params/conf), deduped like monitor alerts
    (a second failure while one is open sends nothing new), and delivered at once.

    `cutover_failed` is resolved by the monitor once the migration is cut over; other conditions (e.g.
    `validation_mismatch`) are resolved by the monitor's own rules.
    """

    template_fields = ("message",)

    def __init__(
        self,
        severity: str = P0,
        condition: str = "cutover_failed",
        message: str | None = None,
        control_conn_id: str = CONTROL_CONN_ID,
    ) -> None:
        super().__init__()
        self.severity = severity
        self.condition = condition
        self.message = message
        self.control_conn_id = control_conn_id

    @staticmethod
    def _migration_id(context: Any) -> str | None:
        params = context.get("params") or {}
        if params.get("migration_id"):
            return str(params["migration_id"])
        dag_run = context.get("dag_run")
        conf = getattr(dag_run, "conf", None) or {}
        return conf.get("migration_id")

    def notify(self, context: Any) -> None:
        migration_id = self._migration_id(context)
        dag = context.get("dag")
        dag_id = getattr(dag, "dag_id", "?")
        run_id = context.get("run_id") or getattr(context.get("dag_run"), "run_id", "?")
        if not migration_id:
            log.error("%s run %s failed but names no migration_id: no %s alert raised", dag_id, run_id, self.condition)
            return
        ti = context.get("ti") or context.get("task_instance")
        task = f"last task {ti.task_id}, " if getattr(ti, "task_id", None) else ""
        message = self.message or f"{dag_id} run {run_id} failed ({task}{context.get('reason') or 'failed'})"
        alert = Alert(
            self.severity,
            self.condition,
            migration_id,
            message,
            {"dag_id": dag_id, "run_id": run_id, "task_id": getattr(ti, "task_id", None)},
        )
        control = control_endpoint(self.control_conn_id)
        channels = alert_channels()
        store = AlertStore(control)
        if store.raise_alert(alert, [c.name for c in channels]):
            log.warning(
                "%s alert RAISED for %s: %s. What to do: %s", alert.severity, migration_id, message, alert.action
            )
        else:
            log.info("%s alert for %s already open (%s): not sent again", alert.severity, migration_id, self.condition)
        deliver_pending(control, channels, migration_id)


def raise_task_alert(
    severity: str,
    condition: str,
    migration_id: str,
    message: str,
    control_conn_id: str = CONTROL_CONN_ID,
    **details: Any,
) -> bool:
    """An alert raised by a task itself (e.g. a difference found after the cutover), deduped and delivered
    through the same `alert` table and channels as the monitor's. True if this call raised it."""
    alert = Alert(severity, condition, migration_id, message, details)
    channels = alert_channels()
    control = control_endpoint(control_conn_id)
    raised = AlertStore(control).raise_alert(alert, [c.name for c in channels])
    log.warning(
        "%s alert %s for %s: %s. What to do: %s",
        severity,
        "RAISED" if raised else "still open",
        migration_id,
        message,
        alert.action,
    )
    deliver_pending(control, channels, migration_id)
    return raised
