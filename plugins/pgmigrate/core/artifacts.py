"""Where the platform's artifacts go: reports, backups, alert files and the Great Expectations context.

On a cluster every Celery worker has its own disk, so a file one task writes is not where the next task (or
the on-call engineer) looks. `$PGMIGRATE_ARTIFACTS_URL` names one shared location for all of them, any
fsspec URL Airflow's `ObjectStoragePath` can open (`s3://bucket/pgmigrate`, `gs://…`, `abfs://…`, or
`file:///var/lib/pgmigrate` for a shared mount); each kind gets its own folder there (`reports/`, `backups/`,
`alerts/`, `great_expectations/`). Credentials come from an Airflow connection: `$PGMIGRATE_ARTIFACTS_CONN_ID`
(e.g. `aws_default`) or ObjectStoragePath's own form `s3://aws_default@bucket/pgmigrate`; never from the URL.

Without the variable every kind stays in today's local directory (`$PGMIGRATE_REPORT_DIR`,
`$PGMIGRATE_BACKUP_DIR`, `$PGMIGRATE_ALERT_LOG`, `include/great_expectations`), so the local stack and the
tests see the same files as before. With it, the URL wins over those variables.

A local location is a `pathlib.Path`; a remote one an `ObjectStoragePath`, imported inside a function (this is a
plain module: it must import without Airflow). Both answer the small `ArtifactPath` API the writers use.
Writers that produce files locally by nature (pg_dump, Great Expectations) work in a local directory and
upload it (`working_dir`, `upload_dir`); `location()` is the text every log line and report shows.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol
from urllib.parse import unquote, urlsplit

from pgmigrate.core.project import PROJECT_ROOT

URL_VARIABLE = "PGMIGRATE_ARTIFACTS_URL"
CONN_ID_VARIABLE = "PGMIGRATE_ARTIFACTS_CONN_ID"
KINDS = ("reports", "backups", "alerts", "great_expectations")
LOCAL_SCHEMES = ("file", "local")
# Schemes whose Airflow filesystem comes with a provider, for the error that names what to install.
PROVIDERS = {
    "s3": "apache-airflow-providers-amazon",
    "gs": "apache-airflow-providers-google",
    "gcs": "apache-airflow-providers-google",
    "abfs": "apache-airflow-providers-microsoft-azure",
    "az": "apache-airflow-providers-microsoft-azure",
    "adl": "apache-airflow-providers-microsoft-azure",
}
_FIX = (
    f"set {URL_VARIABLE} to an fsspec URL such as s3://bucket/pgmigrate, gs://bucket/pgmigrate or "
    f"file:///var/lib/pgmigrate (credentials in an Airflow connection named by {CONN_ID_VARIABLE}), "
    "or unset it for the local directories"
)


class ArtifactsConfigError(ValueError):
    """`$PGMIGRATE_ARTIFACTS_URL` (or `$PGMIGRATE_ARTIFACTS_CONN_ID`) cannot be used; the message says how to fix it."""


class ArtifactPath(Protocol):
    """The part of `pathlib.Path` the artifact writers use; `ObjectStoragePath` has it too."""

    @property
    def name(self) -> str: ...

    @property
    def parent(self) -> Any: ...

    def __truediv__(self, key: str) -> Any: ...

    def joinpath(self, *parts: str) -> Any: ...

    def open(self, mode: str = "r", **kwargs: Any) -> IO[Any]: ...

    def mkdir(self, parents: bool = False, exist_ok: bool = False) -> None: ...

    def exists(self) -> bool: ...

    def is_dir(self) -> bool: ...

    def iterdir(self) -> Iterator[Any]: ...

    def read_text(self, encoding: str | None = None) -> str: ...

    def write_text(self, data: str, encoding: str | None = None) -> int: ...

    def write_bytes(self, data: bytes) -> int: ...


@dataclass(frozen=True)
class ArtifactsUrl:
    """A parsed remote location: `url` without any user part (safe to log), the connection for credentials."""

    url: str
    scheme: str
    conn_id: str | None = None


def parse_location(text: str, conn_id: str | None = None, variable: str = URL_VARIABLE) -> Path | ArtifactsUrl:
    """`file://` URLs and absolute paths as a local `Path`; other URLs checked against fsspec's known schemes.

    The conn id may also be the URL's user part (ObjectStoragePath's convention); a user part with a `:` is a
    password and refused, so no secret ever sits in a logged URL."""
    text = text.strip()
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    if not scheme:
        if not Path(text).is_absolute():
            raise ArtifactsConfigError(f"{variable}={text!r} is neither a URL nor an absolute path: {_FIX}")
        return Path(text)
    if scheme in LOCAL_SCHEMES:
        if parts.netloc not in ("", "localhost"):
            raise ArtifactsConfigError(
                f"{variable}: a file URL names a local path (file:///var/lib/pgmigrate), not a host ({parts.hostname})"
            )
        return Path(unquote(parts.path))
    if not _fsspec_knows(scheme):
        raise ArtifactsConfigError(f"{variable}: unknown URL scheme {scheme!r}:// (fsspec has none): {_FIX}")
    user, has_user, host = parts.netloc.rpartition("@")
    if has_user and ":" in user:
        raise ArtifactsConfigError(
            f"{variable} holds credentials in its URL: put them in an Airflow connection and name it in "
            f"{CONN_ID_VARIABLE} (or as {scheme}://<conn_id>@{host}{parts.path})"
        )
    if has_user and user and conn_id and user != conn_id:
        raise ArtifactsConfigError(
            f"{variable} names connection {user!r} but {CONN_ID_VARIABLE} says {conn_id!r}: keep one of them"
        )
    if not host:
        raise ArtifactsConfigError(f"{variable}={text!r} names no bucket or container: {_FIX}")
    url = parts._replace(netloc=host, scheme=scheme).geturl().rstrip("/")
    return ArtifactsUrl(url=url, scheme=scheme, conn_id=(user if has_user and user else None) or conn_id or None)


def _fsspec_knows(scheme: str) -> bool:
    from fsspec.registry import known_implementations, registry

    return scheme in known_implementations or scheme in registry


def configured() -> Path | ArtifactsUrl | None:
    """The artifact base from the environment; None when `$PGMIGRATE_ARTIFACTS_URL` is unset (local defaults)."""
    text = os.environ.get(URL_VARIABLE, "").strip()
    if not text:
        return None
    return parse_location(text, os.environ.get(CONN_ID_VARIABLE, "").strip() or None)


def local_default(kind: str) -> Path:
    """Today's local directory of each kind, used when no URL is configured."""
    backups = os.environ.get("PGMIGRATE_BACKUP_DIR")
    if kind == "backups":
        return Path(backups or Path.home() / "pgmigrate-backups")
    if kind == "reports":
        if os.environ.get("PGMIGRATE_REPORT_DIR"):
            return Path(os.environ["PGMIGRATE_REPORT_DIR"])
        return Path(backups).parent / "reports" if backups else Path.cwd() / "reports"
    if kind == "alerts":
        return local_alert_log().parent
    if kind == "great_expectations":
        return PROJECT_ROOT / "include" / "great_expectations"
    raise ValueError(f"unknown artifact kind {kind!r}: one of {', '.join(KINDS)}")


def local_alert_log() -> Path:
    """The JSON-lines alert file when no URL is configured: `$PGMIGRATE_ALERT_LOG`, else `alerts/alerts.log`
    beside `$PGMIGRATE_BACKUP_DIR` (derived from a variable running Airflow processes already have), else
    under the repo's `.stack`."""
    if os.environ.get("PGMIGRATE_ALERT_LOG"):
        return Path(os.environ["PGMIGRATE_ALERT_LOG"])
    if os.environ.get("PGMIGRATE_BACKUP_DIR"):
        return Path(os.environ["PGMIGRATE_BACKUP_DIR"]).parent / "alerts" / "alerts.log"
    return PROJECT_ROOT / ".stack" / "alerts" / "alerts.log"


def artifact_dir(kind: str) -> ArtifactPath:
    """Where artifacts of `kind` (one of KINDS) go: `<base>/<kind>` with a URL, else the local default."""
    if kind not in KINDS:
        raise ValueError(f"unknown artifact kind {kind!r}: one of {', '.join(KINDS)}")
    base = configured()
    if base is None:
        return local_default(kind)
    return open_location(base) / kind


def open_location(location: Path | ArtifactsUrl) -> ArtifactPath:
    """A `Path` as it is; a URL as an `ObjectStoragePath` with its connection. A scheme Airflow has no
    filesystem for is opened with fsspec's own implementation when no connection is asked for (credentials
    from that library's usual environment, e.g. memory:// in tests)."""
    if isinstance(location, Path):
        return location
    try:
        from airflow.sdk import ObjectStoragePath
        from airflow.sdk.io import attach, has_fs
    except ImportError as exc:
        raise ArtifactsConfigError(
            f"{URL_VARIABLE}={location.url} needs Airflow's ObjectStoragePath, not importable here ({exc}); "
            "run this where Airflow is installed or unset it"
        ) from None
    if not has_fs(location.scheme):
        provider = PROVIDERS.get(location.scheme, "the Airflow provider for it")
        if location.conn_id:
            raise ArtifactsConfigError(
                f"{URL_VARIABLE}: Airflow has no filesystem for {location.scheme}:// to use connection "
                f"{location.conn_id!r}: install {provider}"
            )
        import fsspec

        try:
            attach(protocol=location.scheme, fs=fsspec.filesystem(location.scheme))
        except ImportError as exc:
            raise ArtifactsConfigError(
                f"{URL_VARIABLE}: no filesystem for {location.scheme}:// ({exc}): install {provider}"
            ) from None
    return ObjectStoragePath(location.url, conn_id=location.conn_id)


def resolve(text: str, variable: str) -> ArtifactPath:
    """A location given on a command line: a URL (with `$PGMIGRATE_ARTIFACTS_CONN_ID`) or any path."""
    if "://" not in text:
        return Path(text)
    return open_location(parse_location(text, os.environ.get(CONN_ID_VARIABLE, "").strip() or None, variable))


def is_local(path: ArtifactPath) -> bool:
    return isinstance(path, Path)


def location(path: ArtifactPath) -> str:
    """What logs, events and reports show: the local path as today, or the URL without its connection id."""
    if is_local(path):
        return str(path)
    parts = urlsplit(str(path))
    return parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()


def upload_dir(local: Path, dest: ArtifactPath) -> int:
    """Copy every file under `local` to the same relative key under `dest`; returns how many."""
    count = 0
    for file in sorted(p for p in local.rglob("*") if p.is_file()):
        target = dest.joinpath(*file.relative_to(local).parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        with file.open("rb") as src, target.open("wb") as out:
            shutil.copyfileobj(src, out, 1 << 20)
        count += 1
    return count


def download_dir(src: ArtifactPath, local: Path) -> int:
    """Copy everything under `src` into `local` (nothing when `src` does not exist); returns how many files."""
    if not src.exists():
        return 0
    count = 0
    local.mkdir(parents=True, exist_ok=True)
    for child in src.iterdir():
        if child.is_dir():
            count += download_dir(child, local / child.name)
        else:
            with child.open("rb") as data, (local / child.name).open("wb") as out:
                shutil.copyfileobj(data, out, 1 << 20)
            count += 1
    return count


@contextmanager
def working_dir(dest: ArtifactPath) -> Iterator[Path]:
    """A local directory for a writer that needs one: `dest` itself when local; else a temporary directory
    named like `dest`, holding `dest`'s content, uploaded back when the block ends without an error (a failed
    writer leaves the stored copy as it was)."""
    if is_local(dest):
        assert isinstance(dest, Path)
        dest.mkdir(parents=True, exist_ok=True)
        yield dest
        return
    with tempfile.TemporaryDirectory(prefix="pgmigrate-artifacts-") as tmp:
        local = Path(tmp) / dest.name
        download_dir(dest, local)
        local.mkdir(parents=True, exist_ok=True)
        yield local
        upload_dir(local, dest)


def stored_location(local_file: str | Path, local_dir: Path, dest: ArtifactPath) -> str:
    """`location()` of a file of a `working_dir` once uploaded: its path relative to `local_dir` under `dest`."""
    relative = Path(local_file).resolve().relative_to(local_dir.resolve())
    return location(dest.joinpath(*relative.parts))
