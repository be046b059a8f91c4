"""The errors of the Kafka Connect client (`connect_client`) and how it reads a failed answer: Connect's own message,
the hint per HTTP status, and which answers mean the workers are rebalancing (retried). Apart from the client so
callers that only catch its errors need not read its requests.
"""

from __future__ import annotations

import requests

HINTS = {
    400: "Connect rejected the request; check the connector config (validate() lists every bad key).",
    404: "No such connector on this Connect cluster; list the existing ones with list_connectors().",
    409: "Connect is rebalancing or applying another config change; retry in a few seconds.",
    500: "Connect failed internally; look for the stack trace in the Connect worker log.",
}


class ConnectError(Exception):
    """A Kafka Connect request failed; ``connect_message`` is Connect's own explanation."""

    def __init__(
        self,
        message: str,
        *,
        connector: str | None = None,
        status_code: int | None = None,
        connect_message: str | None = None,
    ) -> None:
        super().__init__(message)
        self.connector = connector
        self.status_code = status_code
        self.connect_message = connect_message


class ConnectUnavailableError(ConnectError):
    """Connect could not be reached (refused, timed out) within the retries."""


class ConnectConfigError(ConnectError):
    """Connect's validation found errors in a connector config; ``errors`` lists them."""

    def __init__(self, message: str, *, errors: list[str], connector: str | None = None) -> None:
        super().__init__(message, connector=connector)
        self.errors = errors


def is_rebalancing(response: requests.Response) -> bool:
    """Connect answers 409 during a rebalance, but some GETs (e.g. ``/connectors/{name}``)
    surface the same RebalanceNeededException as HTTP 500 "…a rebalance is expected"."""
    code = response.status_code
    return code == 409 or (code >= 500 and "rebalance" in response.text.lower())


def connect_error_message(response: requests.Response) -> str:
    """Connect answers errors as {"error_code": …, "message": …}; anything else is quoted."""
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:500] or response.reason or ""
    if isinstance(body, dict) and "message" in body:
        return str(body["message"])
    return str(body)[:500]
