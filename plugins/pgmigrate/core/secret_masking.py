"""Masking of secrets in connector configs and in the messages built from them.

Connector configs carry database passwords, and Kafka Connect echoes configs back in some
error messages. Everything that logs a config or raises with one goes through here, so a
password never reaches a task log, an exception or an alert.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

MASK = "***"

# Keys whose values are secrets: *password*, *secret*, *credential*, *token*, keys ending in
# ".key" (ssl.key, …) and JAAS configs, which embed a password inside the value.
_SECRET_KEY = re.compile(
    r"(passw(or)?d|secret|credential|token|\.key$|sasl\.jaas\.config)",
    re.IGNORECASE,
)
# A config-provider reference such as ${file:/path/secrets.properties:password}: Connect
# resolves it on the worker, so the reference itself is safe to show (and useful on call).
_PROVIDER_REFERENCE = re.compile(r"^\$\{[A-Za-z0-9_.-]+:[^}]*\}$")


def is_secret_key(key: str) -> bool:
    """Whether a config key holds a secret, judged by its name."""
    return bool(_SECRET_KEY.search(key))


def is_provider_reference(value: Any) -> bool:
    """Whether a value is a ``${provider:…}`` reference rather than the secret itself."""
    return isinstance(value, str) and bool(_PROVIDER_REFERENCE.match(value.strip()))


def mask_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """Return a copy of ``config`` that is safe to log: secret values become ``***``.

    ``${file:…}`` (and other config-provider) references are kept, since they name where
    the secret lives, not the secret.
    """
    return {
        key: MASK if is_secret_key(key) and value not in (None, "") and not is_provider_reference(value) else value
        for key, value in config.items()
    }


def secret_values(config: Mapping[str, Any] | None) -> list[str]:
    """The literal secret values in ``config`` (references and empty values excluded)."""
    if not config:
        return []
    return [
        str(value)
        for key, value in config.items()
        if is_secret_key(key) and value not in (None, "") and not is_provider_reference(value)
    ]


def redact_text(text: str, config: Mapping[str, Any] | None) -> str:
    """Replace every literal secret of ``config`` that occurs in ``text`` with ``***``.

    Kafka Connect includes the submitted config in some error messages (e.g. "Connector
    config {...} contains no connector type"), so its messages are scrubbed before we raise
    or log them. Longest values first, so a secret containing another is masked whole.
    """
    for value in sorted(secret_values(config), key=len, reverse=True):
        text = text.replace(value, MASK)
    return text
