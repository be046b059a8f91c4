"""Where the connectors' database passwords come from: connector configs hold references, never passwords, so
neither Connect's REST API nor its config topic carries them. Two ways, chosen by the `kafka_connect` connection's
extra (`ConnectorSecrets`):

- `worker_secrets_dir`: every Connect worker resolves the passwords itself, from a directory it has (a Kubernetes
  secret mounted into each Connect pod, a Vault agent's output): one file per database role, named
  `<host>_<port>_<user>` (`worker_secret_key`), holding that role's password, read by Kafka's
  DirectoryConfigProvider (`${dir:<directory>:<key>}`). The platform writes nothing; the secret is provisioned
  where the database's password is managed.
- `secrets_dir` (otherwise): the platform writes a per-migration properties file there and Kafka's
  FileConfigProvider reads it (`${file:<path>:source.password}`): a directory that both the Airflow workers and
  every Connect worker can reach.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pgmigrate.core.endpoints import PgEndpoint
from pgmigrate.core.naming import MigrationNames
from pgmigrate.kafka.connector_configs import PasswordRefs, SecretRefs, WorkerSecretRefs

_KEY_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def worker_secret_key(endpoint: PgEndpoint) -> str:
    """The file name of a role's password in the workers' secrets directory: `<host>_<port>_<user>`, in the
    characters a Kubernetes secret key may hold (anything else becomes `_`)."""
    return _KEY_UNSAFE.sub("_", f"{endpoint.host}_{endpoint.port}_{endpoint.user}")


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


@dataclass(frozen=True)
class ConnectorSecrets:
    """How this deployment's Connect workers get the passwords (see the module docstring)."""

    secrets_dir: str | None = None
    worker_secrets_dir: str | None = None

    @classmethod
    def from_extra(cls, extra: dict[str, Any], conn_id: str = "kafka_connect") -> ConnectorSecrets:
        if extra.get("worker_secrets_dir"):
            return cls(worker_secrets_dir=str(extra["worker_secrets_dir"]))
        if extra.get("secrets_dir"):
            return cls(secrets_dir=str(extra["secrets_dir"]))
        raise ValueError(
            f"connection {conn_id!r} has neither `worker_secrets_dir` nor `secrets_dir` in its extra. Set "
            "`worker_secrets_dir` to the directory every Connect worker has with one password file per database "
            "role (`<host>_<port>_<user>`, e.g. a mounted Kubernetes secret), or `secrets_dir` to a directory "
            "Airflow writes and the workers read (local stack: .stack/secrets); connector configs then reference "
            "passwords instead of holding them."
        )

    def refs(self, names: MigrationNames, origin: PgEndpoint, destination: PgEndpoint) -> PasswordRefs:
        """References to `origin`'s password (the source connector's) and `destination`'s (the sink's); in the
        `secrets_dir` way, the migration's file is (re)written now."""
        if self.worker_secrets_dir:
            return WorkerSecretRefs(self.worker_secrets_dir, worker_secret_key(origin), worker_secret_key(destination))
        return write_secrets_file(str(self.secrets_dir), names, origin.password, destination.password)

    def describe(self) -> str:
        if self.worker_secrets_dir:
            return f"resolved by each Connect worker from {self.worker_secrets_dir}"
        return f"written for the file config provider to {self.secrets_dir}"
