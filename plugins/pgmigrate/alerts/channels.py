"""Where alert messages go: a JSON-lines file (always; on object storage one object per alert), a
Slack-compatible webhook and SMTP (each when its Airflow connection exists). Plain classes;
`pgmigrate.notifications.migration_alerts` builds them from connections.
No channel ever logs its URL or password: a Slack webhook URL is itself a secret.
"""

from __future__ import annotations

import json
import logging
import re
import smtplib
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import requests

from pgmigrate.core.artifacts import (
    ArtifactPath,
    ArtifactsConfigError,
    artifact_dir,
    configured,
    is_local,
    local_alert_log,
)

log = logging.getLogger(__name__)


def default_alert_log() -> Path:
    """The local JSON-lines file: `$PGMIGRATE_ALERT_LOG`, else `alerts/alerts.log` beside the backup dir
    (`$PGMIGRATE_BACKUP_DIR` is `.stack/backups` on the local stack, so `.stack/alerts/alerts.log`), else under
    the repo's `.stack`. Derived from an existing variable so running Airflow processes need no restart to agree
    on it. A local `$PGMIGRATE_ARTIFACTS_URL` (file://) puts it at `<url>/alerts/alerts.log`."""
    base = configured()
    return base / "alerts" / "alerts.log" if isinstance(base, Path) else local_alert_log()


def alert_file_channel() -> FileChannel | ObjectAlertChannel:
    """The always-on channel: the JSON-lines file, or one object per alert when artifacts are on object storage.
    A broken artifacts setting must not silence the alerts: it is logged and the local file used."""
    try:
        directory = artifact_dir("alerts")
    except ArtifactsConfigError as exc:
        log.error("alerts go to the local file %s: %s", local_alert_log(), exc)
        return FileChannel(local_alert_log())
    return FileChannel(default_alert_log()) if is_local(directory) else ObjectAlertChannel(directory)


def _line(payload: dict[str, Any]) -> str:
    return json.dumps(payload, default=str, sort_keys=True) + "\n"


def _log_alert(payload: dict[str, Any]) -> None:
    level = logging.WARNING if payload.get("status") == "raised" else logging.INFO
    log.log(level, "ALERT %s", payload["text"])


@dataclass
class FileChannel:
    """One JSON object per line; also written to the task log, so the alert is visible in Airflow."""

    path: Path = field(default_factory=default_alert_log)
    name: str = "log"

    def send(self, payload: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as f:
            f.write(_line(payload))
        _log_alert(payload)


@dataclass
class ObjectAlertChannel:
    """The file channel on object storage: an object cannot be appended to atomically (two workers appending by
    read-modify-write would lose each other's lines), so each alert is an object of its own,
    `<directory>/<UTC day>/<UTC time>-<migration_id>-<random>.json`, holding the same line the local file gets;
    their contents in name order are the JSON-lines file."""

    directory: ArtifactPath
    name: str = "log"

    def send(self, payload: dict[str, Any]) -> None:
        now = datetime.now(UTC)
        migration = re.sub(r"[^A-Za-z0-9_.-]", "_", str(payload.get("migration_id") or "none"))
        day = self.directory / f"{now:%Y-%m-%d}"
        day.mkdir(parents=True, exist_ok=True)
        (day / f"{now:%Y%m%dT%H%M%S.%fZ}-{migration}-{uuid.uuid4().hex[:8]}.json").write_text(_line(payload))
        _log_alert(payload)


@dataclass
class WebhookChannel:
    """POST of the payload as JSON: Slack reads `text`, other receivers the structured fields."""

    url: str = field(repr=False)
    timeout: float = 10.0
    name: str = "webhook"
    headers: dict[str, str] = field(default_factory=dict, repr=False)

    def send(self, payload: dict[str, Any]) -> None:
        try:
            response = requests.post(self.url, json=payload, timeout=self.timeout, headers=self.headers)
        except requests.RequestException as exc:
            # The exception text holds the URL: name the failure without it.
            raise RuntimeError(f"webhook not reachable ({type(exc).__name__})") from None
        if response.status_code >= 300:
            raise RuntimeError(f"webhook answered HTTP {response.status_code}: {response.text[:200]}")


@dataclass
class SmtpChannel:
    host: str
    port: int
    sender: str
    recipients: list[str]
    login: str | None = None
    password: str | None = field(default=None, repr=False)
    starttls: bool = True
    timeout: float = 15.0
    name: str = "smtp"

    def send(self, payload: dict[str, Any]) -> None:
        message = EmailMessage()
        status = "RESOLVED " if payload.get("status") == "resolved" else ""
        message["Subject"] = f"{status}[{payload['severity']}] {payload['migration_id']}: {payload['condition']}"
        message["From"] = self.sender
        message["To"] = ", ".join(self.recipients)
        message.set_content(payload["text"] + "\n\n" + json.dumps(payload, default=str, indent=2))
        smtp_class = smtplib.SMTP_SSL if self.port == 465 else smtplib.SMTP
        with smtp_class(self.host, self.port, timeout=self.timeout) as smtp:
            if self.starttls and smtp_class is smtplib.SMTP:
                smtp.starttls()
            if self.login:
                smtp.login(self.login, self.password or "")
            smtp.send_message(message)


def webhook_url(host: str | None, port: int | None, schema: str | None, endpoint: str | None) -> str:
    """URL from an http connection: `host` may be the whole URL (a Slack webhook), else scheme, host,
    port and the extra's `endpoint` path."""
    if not host:
        raise ValueError("the webhook connection has no host: set it to the webhook URL")
    if "://" in host:
        base = host.rstrip("/") if endpoint else host
    else:
        base = f"{schema or 'https'}://{host}" + (f":{port}" if port else "")
    return base + ("/" + endpoint.lstrip("/") if endpoint else "")


def recipients(value: Any) -> list[str]:
    if not value:
        return []
    if isinstance(value, str):
        return [v.strip() for v in value.replace(";", ",").split(",") if v.strip()]
    return [str(v) for v in value]
