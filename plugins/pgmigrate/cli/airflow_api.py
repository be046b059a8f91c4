"""A small client of Airflow 3's REST API (v2), for the on-call CLI, `make demo` and the tests.

Triggering and following a DAG run over the API exercises the same path as the UI: the scheduler,
the executor and the triggerer all take part, unlike `airflow dags test`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import requests

from pgmigrate.core.endpoints import PgEndpoint

log = logging.getLogger(__name__)

FINISHED_STATES = {"success", "failed"}


class AirflowApiError(RuntimeError):
    """The Airflow API answered with an error, or could not be reached."""


class AirflowApiClient:
    """Airflow REST API v2 with the simple auth manager's token login (`POST /auth/token`)."""

    def __init__(self, base_url: str, username: str, password: str, timeout: float = 15.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._username = username
        self._password = password
        self._session = requests.Session()
        self._token: str | None = None

    def _login(self) -> None:
        url = f"{self.base_url}/auth/token"
        try:
            response = self._session.post(
                url, json={"username": self._username, "password": self._password}, timeout=self.timeout
            )
        except requests.RequestException as exc:
            raise AirflowApiError(
                f"Airflow API at {self.base_url} is not reachable ({exc}); check `make stack-status`"
            ) from exc
        if response.status_code >= 300:
            raise AirflowApiError(
                f"Airflow login as {self._username!r} failed: HTTP {response.status_code}. "
                "The local stack's login is admin / admin."
            )
        self._token = response.json()["access_token"]

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """Call `/api/v2{path}`; logs in on first use and again when the token expired."""
        if self._token is None:
            self._login()
        url = f"{self.base_url}/api/v2{path}"
        for attempt in (1, 2):
            headers = {"Authorization": f"Bearer {self._token}"}
            try:
                response = self._session.request(method, url, headers=headers, timeout=self.timeout, **kwargs)
            except requests.RequestException as exc:
                raise AirflowApiError(f"Airflow API {method} {path} failed: {exc}") from exc
            if response.status_code == 401 and attempt == 1:
                self._login()
                continue
            if response.status_code >= 300:
                raise AirflowApiError(
                    f"Airflow API {method} {path} failed: HTTP {response.status_code}: {response.text[:500]}"
                )
            return response.json() if response.content else None
        raise AirflowApiError(f"Airflow API {method} {path}: not authorized after a fresh login")

    def trigger_dag(self, dag_id: str, conf: dict[str, Any] | None = None, run_id: str | None = None) -> str:
        """Start a manual run; returns its dag_run_id."""
        body: dict[str, Any] = {"conf": conf or {}, "logical_date": None}
        if run_id:
            body["dag_run_id"] = run_id
        run = self.request("POST", f"/dags/{dag_id}/dagRuns", json=body)
        log.info("triggered %s run %s", dag_id, run["dag_run_id"])
        return run["dag_run_id"]

    def get_dag_run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        return self.request("GET", f"/dags/{dag_id}/dagRuns/{run_id}")

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        return self.request("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances")["task_instances"]

    def wait_for_dag_run(
        self,
        dag_id: str,
        run_id: str,
        timeout: float,
        poll_seconds: float = 3.0,
        on_poll: Callable[[dict[str, Any], list[dict[str, Any]]], None] | None = None,
    ) -> dict[str, Any]:
        """Poll until the run finished (success or failed) and return it; raise after `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            run = self.get_dag_run(dag_id, run_id)
            if on_poll is not None:
                on_poll(run, self.task_instances(dag_id, run_id))
            if run["state"] in FINISHED_STATES:
                return run
            if time.monotonic() > deadline:
                raise AirflowApiError(
                    f"{dag_id} run {run_id} still {run['state']} after {timeout:.0f}s; "
                    f"see its task logs in the UI ({self.base_url}/dags/{dag_id}/runs/{run_id})."
                )
            time.sleep(poll_seconds)


def put_postgres_connection(api: AirflowApiClient, conn_id: str, endpoint: PgEndpoint) -> None:
    """Create or replace an Airflow connection of type postgres (Schema = the database) for `endpoint`."""
    try:
        api.request("DELETE", f"/connections/{conn_id}")
    except AirflowApiError:
        pass  # did not exist
    api.request(
        "POST",
        "/connections",
        json={
            "connection_id": conn_id,
            "conn_type": "postgres",
            "host": endpoint.host,
            "port": endpoint.port,
            "login": endpoint.user,
            "password": endpoint.password,
            "schema": endpoint.dbname,
        },
    )
