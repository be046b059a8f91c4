"""The per-migration passwords file that Kafka Connect's file config provider reads.

Connector configs hold `${file:<path>:source.password}` instead of passwords, so neither Connect's
REST API nor its config topic ever carries them. The file lives in a directory that both the
Airflow worker (which writes it) and the Connect worker (which reads it) can reach: the
`secrets_dir` of the `kafka_connect` connection's extra.
"""

from __future__ import annotations

import os
from pathlib import Path

from pgmigrate.core.naming import MigrationNames
from pgmigrate.kafka.connector_configs import SecretRefs


def _escape(value: str) -> str:
    """Java .properties escaping for a value (backslash, and leading spaces, line breaks)."""
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r")


def write_secrets_file(
    secrets_dir: str, names: MigrationNames, source_password: str, target_password: str
) -> SecretRefs:
    directory = Path(secrets_dir)
    if not directory.is_dir():
        raise FileNotFoundError(
            f"secrets_dir {secrets_dir} does not exist. Set `secrets_dir` in the extra of the kafka_connect "
            "connection to a directory that Kafka Connect's workers can read (local stack: .stack/secrets)."
        )
    path = directory / names.secrets_file
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(f"source.password={_escape(source_password)}\ntarget.password={_escape(target_password)}\n")
    os.replace(tmp, path)
    return SecretRefs(str(path))
