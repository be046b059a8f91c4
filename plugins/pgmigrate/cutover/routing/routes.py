"""PgBouncer's routes file: the explicit `[databases]` entries that override the `*` fallback.

The main pgbouncer.ini holds `%include <state>/pgbouncer/routes.ini` inside its `[databases]` section,
so a route change rewrites only this small file and never the main config. The file is replaced
atomically (temp file + rename in the same directory), so PgBouncer's RELOAD or a restart always reads
either the old or the new routes, never half a file.

Everything that goes into the file is validated against strict patterns first: a database name or
host that could carry `=`, spaces, quotes or a newline would otherwise change what PgBouncer parses.
"""

from __future__ import annotations

import fcntl
import os
import re
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

# Stricter than PgBouncer itself ([0-9A-Za-z_.-] unquoted): these names also appear in admin
# commands and in log lines, and every database the migration handles so far fits.
DATABASE_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
# Host names, IPv4 and IPv6 literals: no spaces, quotes, `=` or newlines.
HOST_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,252}$")

HEADER = (
    "; Explicit PgBouncer routes, managed by pgmigrate.cutover.routing.switch (PgBouncerRouteSwitch.point_to).\n"
    "; Included into the [databases] section of pgbouncer.ini; an entry here overrides the `*` fallback.\n"
    "; Edit by hand only in an emergency, then RELOAD on the admin console.\n"
)


class RouteError(ValueError):
    """A database name, host or port that must not reach PgBouncer's config or admin console."""


@dataclass(frozen=True)
class Route:
    """Where PgBouncer sends the clients of one database."""

    host: str
    port: int
    dbname: str

    def __post_init__(self) -> None:
        validate_host(self.host)
        validate_port(self.port)
        validate_database_name(self.dbname)

    def ini_value(self) -> str:
        return f"host={self.host} port={self.port} dbname={self.dbname}"

    def __str__(self) -> str:
        return f"{self.host}:{self.port}/{self.dbname}"


def validate_database_name(name: str) -> str:
    """Return `name` if it is safe to write into the ini and the admin console, else raise."""
    if not isinstance(name, str) or not DATABASE_NAME_RE.match(name):
        raise RouteError(
            f"database name {name!r} is not accepted for a PgBouncer route: use letters, digits and "
            "underscores, starting with a letter or underscore, at most 63 characters"
        )
    return name


def validate_host(host: str) -> str:
    if not isinstance(host, str) or not HOST_RE.match(host):
        raise RouteError(f"host {host!r} is not a plain host name or IP address")
    return host


def validate_port(port: int) -> int:
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise RouteError(f"port {port!r} is not a TCP port (1-65535)")
    return port


def render_routes(routes: Mapping[str, Route]) -> str:
    """The routes file's text: a header comment, then one `name = host=… port=… dbname=…` per line,
    sorted by name so a rewrite with the same routes produces the same bytes."""
    lines = [HEADER]
    for name in sorted(routes):
        lines.append(f"{validate_database_name(name)} = {routes[name].ini_value()}\n")
    return "".join(lines)


def parse_routes(text: str) -> dict[str, Route]:
    """Read a routes file back. Only what `render_routes` writes is accepted (plus blank and comment
    lines): anything else is an error, so a hand edit gone wrong is noticed instead of half-used."""
    routes: dict[str, Route] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith((";", "#")):
            continue
        name, sep, value = line.partition("=")
        if not sep:
            raise RouteError(f"routes file line {number}: expected `name = host=… port=… dbname=…`, got {raw!r}")
        name = name.strip()
        try:
            validate_database_name(name)
            routes[name] = _parse_route_value(value)
        except RouteError as exc:
            raise RouteError(f"routes file line {number}: {exc}") from exc
    return routes


def _parse_route_value(value: str) -> Route:
    params: dict[str, str] = {}
    for item in value.split():
        key, sep, val = item.partition("=")
        if not sep or key not in ("host", "port", "dbname") or key in params:
            raise RouteError(f"unexpected connection parameter {item!r} (only host, port, dbname, once each)")
        params[key] = val
    missing = {"host", "port", "dbname"} - params.keys()
    if missing:
        raise RouteError(f"route lacks {', '.join(sorted(missing))}")
    if not params["port"].isdigit():
        raise RouteError(f"port {params['port']!r} is not a number")
    return Route(host=params["host"], port=int(params["port"]), dbname=params["dbname"])


def read_routes_file(path: Path) -> dict[str, Route]:
    """The explicit routes; a missing file means none (every database follows the `*` fallback)."""
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        return {}
    return parse_routes(text)


def write_routes_file(path: Path, routes: Mapping[str, Route]) -> None:
    """Replace the file atomically: write a temp file in the same directory, fsync, rename over.

    Mode 0644: PgBouncer runs as its own OS user (postgres) and must read the file; it holds no secret.
    """
    path = Path(path)
    text = render_routes(routes)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # the rename itself survives a crash
    finally:
        os.close(dir_fd)


class RoutesFileBusy(RuntimeError):
    """Another process holds the routes file's lock longer than the caller can wait."""


@contextmanager
def locked_routes(path: Path, timeout: float = 10.0) -> Iterator[dict[str, Route]]:
    """Read-modify-write under an exclusive lock (`<file>.lock` beside it), so two route changes at
    the same time cannot drop each other's entry. Yields the current routes; whatever the caller leaves
    in the dict is written back when the block ends without an error. Waits at most `timeout` seconds
    for the lock: a switch inside a write pause must fail (and be undone), not hang."""
    path = Path(path)
    lock_path = path.with_name(path.name + ".lock")
    with open(lock_path, "a") as lock:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise RoutesFileBusy(
                        f"another process has held {lock_path} for over {timeout:g}s (find it with "
                        f"`fuser {lock_path}`); the routes were not changed"
                    ) from None
                time.sleep(0.05)
        routes = read_routes_file(path)
        before = dict(routes)
        yield routes
        if routes != before:
            write_routes_file(path, routes)
