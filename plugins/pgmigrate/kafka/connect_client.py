"""Client for the Kafka Connect REST API, without Airflow.

The hook (``hooks/kafka_connect.py``) hands this client out; scripts and tests use it
directly. It retries what is transient (Connect unreachable, timeouts, answers that say the
workers are rebalancing), turns every other failure into a :class:`ConnectError` (``connect_errors``) that quotes
Connect's own message with a hint, and never logs a connector password.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any, Literal, overload
from urllib.parse import quote

import requests
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    retry_if_result,
    stop_after_attempt,
    wait_exponential,
)

from pgmigrate.core.secret_masking import mask_config, redact_text
from pgmigrate.kafka.connect_errors import (
    HINTS,
    ConnectConfigError,
    ConnectError,
    ConnectUnavailableError,
    connect_error_message,
    is_rebalancing,
)

log = logging.getLogger(__name__)

STOPPED = "STOPPED"
RUNNING = "RUNNING"
FAILED = "FAILED"


def _as_connect_value(key: str, value: Any) -> str:
    """Connect configs are string maps; booleans must be lower-case to parse."""
    if value is None:
        raise TypeError(f"Connector config key {key!r} is None; drop the key or give it a value")
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class ConnectClient:
    """Kafka Connect REST client: bounded retries, a timeout on every request, clear errors.

    :param base_url: e.g. ``http://127.0.0.1:8083``.
    :param timeout: seconds for each HTTP request (connect and read).
    :param retries: attempts per request on connection errors, timeouts and rebalances.
    :param auth: ``(user, password)`` for basic auth, if the Connect REST API requires it.
    :param backoff: first wait between attempts in seconds; doubles each attempt, at most 10 s.
    :param other_urls: the REST URLs of the group's other workers (a cluster without a load balancer in front): a
        request a worker does not answer goes to the next one at its next attempt. Any worker serves the whole
        group's REST API (it forwards to the leader).
    """

    def __init__(
        self,
        base_url: str,
        timeout: float = 10.0,
        retries: int = 5,
        auth: tuple[str, str] | None = None,
        *,
        backoff: float = 0.5,
        other_urls: Sequence[str] = (),
    ) -> None:
        self.urls = list(dict.fromkeys(u.rstrip("/") for u in (base_url, *other_urls) if u))
        self.base_url = self.urls[0]
        self.timeout = timeout
        self.retries = max(1, retries)
        self.auth = auth
        self.backoff = backoff
        self.session = requests.Session()
        self.session.headers.update({"Accept": "application/json"})
        if auth:
            self.session.auth = auth

    def __repr__(self) -> str:
        return f"ConnectClient({self.base_url!r})"

    def _request(
        self,
        method: str,
        path: str,
        *,
        connector: str | None = None,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        sent_config: Mapping[str, Any] | None = None,
        allow_404: bool = False,
    ) -> requests.Response:
        """Send one request with retries; raise :class:`ConnectError` unless it succeeded.

        ``sent_config`` is the config in the body, so its secrets can be scrubbed from
        Connect's error message.
        """

        def before_sleep(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            reason = type(exc).__name__ if exc else "workers rebalancing (or a concurrent config change)"
            failed_url = self.base_url
            if exc is not None and len(self.urls) > 1:
                self.base_url = self.urls[(self.urls.index(self.base_url) + 1) % len(self.urls)]
            log.warning(
                "Kafka Connect %s %s%s: %s; retrying (attempt %d/%d)%s",
                method,
                failed_url,
                path,
                reason,
                state.attempt_number,
                self.retries,
                f" on {self.base_url}" if self.base_url != failed_url else "",
            )

        def send() -> requests.Response:
            return self.session.request(method, self.base_url + path, params=params, json=json, timeout=self.timeout)

        retrying = Retrying(
            # A rebalance clears by itself, like a refused or timed-out call.
            retry=retry_if_exception_type((requests.ConnectionError, requests.Timeout))
            | retry_if_result(is_rebalancing),
            wait=wait_exponential(multiplier=self.backoff, min=self.backoff, max=10),
            stop=stop_after_attempt(self.retries),
            before_sleep=before_sleep,
            # Out of attempts: hand back the last response, or re-raise the last exception.
            retry_error_callback=lambda state: state.outcome.result() if state.outcome else None,
        )
        try:
            response = retrying(send)
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise ConnectUnavailableError(
                f"Kafka Connect at {', '.join(self.urls)} is unreachable ({method} {path} failed "
                f"{self.retries} times, timeout {self.timeout:g}s each: {type(exc).__name__}). "
                "Check that Connect is up with `make stack-status` and read the Connect log "
                "(.stack/logs/connect.log in the local stack).",
                connector=connector,
            ) from exc

        if response.ok or (allow_404 and response.status_code == 404):
            return response
        message = redact_text(connect_error_message(response), sent_config).rstrip(".")
        about = f" for connector '{connector}'" if connector else ""
        code = response.status_code
        hint = HINTS.get(code, HINTS[500] if code >= 500 else "")
        raise ConnectError(
            f"Kafka Connect {method} {path}{about} failed: HTTP {code}: {message}. {hint}".rstrip(),
            connector=connector,
            status_code=response.status_code,
            connect_message=message,
        )

    @staticmethod
    def _json(response: requests.Response) -> Any:
        return response.json() if response.content else None

    @staticmethod
    def _path(name: str) -> str:
        return "/connectors/" + quote(name, safe="")

    def server_info(self) -> dict[str, Any]:
        """``GET /``: Connect version, commit and Kafka cluster id."""
        return self._json(self._request("GET", "/"))

    def list_plugins(self, connectors_only: bool = True) -> list[dict[str, Any]]:
        """Installed plugins as ``{"class", "type", "version"}``; all kinds unless connectors_only."""
        params = None if connectors_only else {"connectorsOnly": "false"}
        return self._json(self._request("GET", "/connector-plugins", params=params))

    @overload
    def list_connectors(self, expand_status: Literal[False] = ...) -> list[str]: ...
    @overload
    def list_connectors(self, expand_status: Literal[True]) -> dict[str, Any]: ...

    def list_connectors(self, expand_status: bool = False) -> list[str] | dict[str, Any]:
        """Connector names, or ``{name: {"status": …}}`` with ``expand_status``."""
        params = {"expand": "status"} if expand_status else None
        return self._json(self._request("GET", "/connectors", params=params))

    def create_or_update(self, name: str, config: Mapping[str, Any]) -> dict[str, Any]:
        """Create the connector or bring its config to ``config``; safe to call again.

        A PUT restarts the connector even when nothing changed, so an identical config is
        left alone: rerunning a task after a crash does not bounce a streaming connector.
        Returns Connect's connector info (``name``, ``config``, ``tasks``, ``type``).
        """
        desired = {key: _as_connect_value(key, value) for key, value in config.items()}
        found = self._request("GET", self._path(name) + "/config", connector=name, allow_404=True)
        current = None if found.status_code == 404 else found.json()
        changed: list[str] = []
        if current is not None:
            keys = (set(desired) | set(current)) - {"name"}  # Connect adds "name" itself
            changed = sorted(key for key in keys if desired.get(key) != current.get(key))
            if not changed:
                log.info("Connector '%s' already has this config; left unchanged", name)
                return self._json(self._request("GET", self._path(name), connector=name))
        response = self._request("PUT", self._path(name) + "/config", connector=name, json=desired, sent_config=desired)
        if response.status_code == 201 or current is None:
            log.info(
                "Connector '%s' created (class %s, %d keys)",
                name,
                desired.get("connector.class", "?"),
                len(desired),
            )
        else:  # only the changed keys, masked: never the whole config
            log.info("Connector '%s' updated: %s", name, mask_config({k: desired.get(k) for k in changed}))
        return self._json(response)

    def exists(self, name: str) -> bool:
        return self._request("GET", self._path(name), connector=name, allow_404=True).status_code != 404

    def get_config(self, name: str) -> dict[str, str]:
        """The stored config; ``${file:…}`` references come back unresolved."""
        return self._json(self._request("GET", self._path(name) + "/config", connector=name))

    def get_status(self, name: str) -> dict[str, Any]:
        """``{"name", "connector": {"state", "worker_id"}, "tasks": [{"id", "state", "trace"?}]}``."""
        return self._json(self._request("GET", self._path(name) + "/status", connector=name))

    def status_or_none(self, name: str) -> dict[str, Any] | None:
        """`get_status`, or None when the connector does not exist (one request: no exists-then-status race)."""
        response = self._request("GET", self._path(name) + "/status", connector=name, allow_404=True)
        return None if response.status_code == 404 else self._json(response)

    def statuses(self, names: list[str]) -> dict[str, dict[str, Any] | None]:
        """`status_or_none` of each connector, by name (what `connector_status.assess_connectors` reads)."""
        return {name: self.status_or_none(name) for name in names}

    def state_or_missing(self, name: str) -> str:
        """The connector's own state (RUNNING, PAUSED, STOPPED, FAILED, …), or `missing`."""
        status = self.status_or_none(name)
        return "missing" if status is None else status["connector"]["state"]

    def pause(self, name: str) -> None:
        """Pause: tasks stay assigned but stop polling; resume() picks up where it left."""
        self._request("PUT", self._path(name) + "/pause", connector=name)
        log.info("Connector '%s' pause requested", name)

    def resume(self, name: str) -> None:
        """Resume a PAUSED or STOPPED connector."""
        self._request("PUT", self._path(name) + "/resume", connector=name)
        log.info("Connector '%s' resume requested", name)

    def stop(self, name: str) -> None:
        """Stop: shut down the connector and its tasks but keep config and offsets."""
        self._request("PUT", self._path(name) + "/stop", connector=name)
        log.info("Connector '%s' stop requested", name)

    def restart(self, name: str, include_tasks: bool = False, only_failed: bool = False) -> dict[str, Any] | None:
        """Restart the connector (and its tasks with ``include_tasks``, or only FAILED ones).

        Connect returns the resulting status when tasks are involved, nothing otherwise.
        """
        params = {"includeTasks": str(include_tasks).lower(), "onlyFailed": str(only_failed).lower()}
        response = self._request("POST", self._path(name) + "/restart", connector=name, params=params)
        log.info("Connector '%s' restart requested (%s)", name, params)
        return self._json(response)

    def delete(self, name: str) -> bool:
        """Delete the connector; False if it was already gone. Offsets stay in Kafka."""
        response = self._request("DELETE", self._path(name), connector=name, allow_404=True)
        if response.status_code == 404:
            log.info("Connector '%s' does not exist; nothing to delete", name)
            return False
        log.info("Connector '%s' deleted", name)
        return True

    def get_offsets(self, name: str) -> list[dict[str, Any]]:
        """Committed offsets as ``[{"partition": {…}, "offset": {…}}]``."""
        return self._json(self._request("GET", self._path(name) + "/offsets", connector=name))["offsets"]

    def alter_offsets(self, name: str, offsets: list[dict[str, Any]], stop_timeout: float = 60.0) -> str:
        """Overwrite offsets (``[{"partition", "offset"}]``); stops the connector first.

        The connector stays STOPPED afterwards: resume() restarts it from the new offsets.
        Returns Connect's confirmation message.
        """
        self._ensure_stopped(name, stop_timeout, "alter its offsets")
        response = self._request("PATCH", self._path(name) + "/offsets", connector=name, json={"offsets": offsets})
        log.info("Connector '%s' offsets altered for %d partition(s); it stays STOPPED", name, len(offsets))
        return self._json(response).get("message", "")

    def reset_offsets(self, name: str, stop_timeout: float = 60.0) -> str:
        """Delete all offsets; stops the connector first. Next start begins as if new."""
        self._ensure_stopped(name, stop_timeout, "reset its offsets")
        response = self._request("DELETE", self._path(name) + "/offsets", connector=name)
        log.info("Connector '%s' offsets reset; it stays STOPPED", name)
        return self._json(response).get("message", "")

    def _ensure_stopped(self, name: str, timeout: float, purpose: str) -> None:
        """Connect accepts offset changes only for a STOPPED connector (KIP-875)."""
        state = self.get_status(name)["connector"]["state"]
        if state == STOPPED:
            return
        log.warning("Connector '%s' is %s; stopping it to %s (needs STOPPED)", name, state, purpose)
        self.stop(name)
        self.wait_for_state(name, STOPPED, timeout)

    def validate(self, connector_class: str, config: Mapping[str, Any], name: str | None = None) -> list[str]:
        """Ask the plugin to validate ``config``; returns ``"key: message"`` per error.

        Connect demands a ``name`` key here although PUT takes it from the URL, so one is added.
        """
        body = {key: _as_connect_value(key, value) for key, value in config.items()}
        body["connector.class"] = connector_class
        body.setdefault("name", name or "config-validation")
        path = f"/connector-plugins/{quote(connector_class, safe='')}/config/validate"
        result = self._json(self._request("PUT", path, json=body, sent_config=body))
        errors = [
            f"{item['value']['name']}: {message}"
            for item in result.get("configs", [])
            for message in item.get("value", {}).get("errors", [])
        ]
        return [redact_text(error, body) for error in errors]

    def validate_or_raise(self, connector_class: str, config: Mapping[str, Any], name: str | None = None) -> None:
        """Raise :class:`ConnectConfigError` naming every bad key, before anything is created."""
        errors = self.validate(connector_class, config, name)
        if not errors:
            log.info("Config for %s is valid (%d keys)", name or connector_class, len(config))
            return
        about = f"connector '{name}'" if name else connector_class
        raise ConnectConfigError(
            f"Kafka Connect rejected the config of {about} ({len(errors)} error(s)): "
            f"{'; '.join(errors)}. Fix these keys and run again.",
            errors=errors,
            connector=name,
        )

    def wait_for_state(
        self, name: str, state: str, timeout: float = 60.0, poll_interval: float = 1.0
    ) -> dict[str, Any]:
        """Poll until the connector and all its tasks are in ``state``; return the status.

        RUNNING also requires at least one task (Connect reports the connector RUNNING
        before its tasks start). A FAILED connector or task ends the wait at once with its
        trace's first line, since it will not recover on its own.
        """
        deadline = time.monotonic() + timeout
        status: dict[str, Any] = {}
        while True:
            try:
                status = self.get_status(name)
            except ConnectError as exc:
                if exc.status_code != 404:  # 404: just created, status not written yet
                    raise
            else:
                if state not in (STOPPED, FAILED):  # a FAILED connector can still be stopped
                    self._raise_if_failed(name, status)
                tasks = status.get("tasks", [])
                if (
                    status["connector"]["state"] == state
                    and all(task["state"] == state for task in tasks)
                    and (tasks or state != RUNNING)
                ):
                    log.info("Connector '%s' is %s with %d task(s)", name, state, len(tasks))
                    return status
            if time.monotonic() >= deadline:
                raise ConnectError(
                    f"Connector '{name}' did not reach {state} within {timeout:g}s; last status: "
                    f"{_summary(status)}. Check the Connect worker log.",
                    connector=name,
                )
            time.sleep(poll_interval)

    @staticmethod
    def _raise_if_failed(name: str, status: dict[str, Any]) -> None:
        for part in [status["connector"], *status.get("tasks", [])]:
            if part.get("state") == FAILED:
                what = f"task {part['id']}" if "id" in part else "connector"
                trace = (part.get("trace") or "no trace").strip().splitlines()[0]
                raise ConnectError(
                    f"Connector '{name}' {what} FAILED: {trace}. Fix the cause, then restart with "
                    "restart(name, include_tasks=True, only_failed=True).",
                    connector=name,
                    connect_message=trace,
                )


def _summary(status: dict[str, Any]) -> str:
    if not status:
        return "no status yet"
    tasks = ", ".join(f"task {t['id']} {t['state']}" for t in status.get("tasks", [])) or "no tasks"
    return f"connector {status['connector']['state']}, {tasks}"
