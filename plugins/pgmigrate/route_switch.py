"""Where clients connect: the switch the cutover flips, kept behind a small interface.

Applications reach the database through PgBouncer and never change their connection string; the
cutover pauses one database in PgBouncer (in-flight transactions finish, new ones wait), points its
route at the target, and resumes. `RouteSwitch` is what the cutover calls, so a DNS or proxy switch
can replace PgBouncer later without touching the DAG. `PgBouncerRouteSwitch` implements it with
PgBouncer's admin console and the routes file of `pgmigrate.pgbouncer_routes`.

The admin console speaks only the simple query protocol and has no transactions: connections are
autocommit with server-side prepared statements disabled, and commands carry no parameters. Every
database name is checked against a strict pattern before it is quoted into a command.
"""

from __future__ import annotations

import logging
import select
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import psycopg
from psycopg import pq

from pgmigrate.endpoints import PgEndpoint
from pgmigrate.pgbouncer_routes import Route, locked_routes, read_routes_file, validate_database_name

log = logging.getLogger(__name__)


class RouteSwitchError(RuntimeError):
    """A route change or pause did not happen as asked; the message says what state clients are in."""


class PauseTimeoutError(RouteSwitchError):
    """PAUSE did not complete in time (a long transaction holds a server connection); already resumed."""


class AdminCommandError(RouteSwitchError):
    """PgBouncer's admin console refused a command."""


@dataclass(frozen=True)
class ServerConnection:
    """One connection PgBouncer holds open to a PostgreSQL server for a database."""

    host: str
    port: int
    user: str
    state: str


@runtime_checkable
class RouteSwitch(Protocol):
    """The cutover's view of "where clients connect". Implementations must make `resume` idempotent
    and `point_to` durable (it survives a restart of whatever does the routing)."""

    def pause(self, database: str, timeout_seconds: float) -> float:
        """Hold new transactions of `database`; returns seconds until in-flight ones finished."""
        ...

    def resume(self, database: str) -> bool:
        """Let clients continue; True if it was paused. Never fails because it was not paused."""
        ...

    def is_paused(self, database: str) -> bool: ...

    def current_route(self, database: str) -> Route: ...

    def point_to(self, database: str, host: str, port: int, dbname: str) -> Route: ...

    def server_connections(self, database: str) -> list[ServerConnection]: ...

    def client_count(self, database: str) -> int: ...


def quote_admin_identifier(name: str) -> str:
    """A database name as PgBouncer's admin parser reads it: validated, then double-quoted."""
    validate_database_name(name)
    return '"' + name.replace('"', '""') + '"'


class PgBouncerRouteSwitch:
    """`RouteSwitch` over PgBouncer's admin console (`admin`, database `pgbouncer`) and routes file.

    `routes_file` is the file included into pgbouncer.ini's `[databases]`; it must be on a filesystem
    this process can write and PgBouncer can read. Without it, everything but `point_to` works (the
    pause watchdog only needs `resume`).
    """

    def __init__(self, admin: PgEndpoint, routes_file: Path | str | None = None, lock_timeout: float = 10.0) -> None:
        self.admin = admin
        self.routes_file = Path(routes_file) if routes_file else None
        # How long a route change waits for another writer of the routes file (inside a pause: what is left of it).
        self.lock_timeout = lock_timeout
        self._paused_at: dict[str, float] = {}

    # -- admin console plumbing -------------------------------------------------------------

    def _connect(self) -> psycopg.Connection:
        # prepare_threshold=None: psycopg would otherwise prepare a query run 5 times, and the
        # admin console cannot parse the extended protocol.
        return psycopg.connect(self.admin.conninfo(), autocommit=True, prepare_threshold=None)

    def _command(self, command: str) -> None:
        try:
            with self._connect() as conn:
                conn.execute(command, prepare=False)
        except psycopg.Error as exc:
            raise AdminCommandError(f"PgBouncer at {self.admin.label} refused `{command}`: {exc}") from exc

    def _show(self, what: str) -> list[dict[str, Any]]:
        with self._connect() as conn:
            cur = conn.execute(f"SHOW {what}", prepare=False)
            names = [column.name for column in cur.description or []]
            return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    def _database_row(self, name: str) -> dict[str, Any] | None:
        return next((row for row in self._show("DATABASES") if row["name"] == name), None)

    # -- pause / resume ---------------------------------------------------------------------

    def pause(self, database: str, timeout_seconds: float) -> float:
        """PAUSE `database` and wait until its in-flight transactions have finished.

        PgBouncer marks the database paused at once and answers when no server connection is busy
        any more; if that takes longer than `timeout_seconds`, a RESUME follows at once (clients would
        otherwise wait behind a transaction that may never end) and PauseTimeoutError says which
        servers were still busy. Arm `pgmigrate.pause_watchdog` *before* calling this: the database
        is paused from the moment PgBouncer receives the command, even if this process dies waiting.
        """
        name = validate_database_name(database)
        command = f"PAUSE {quote_admin_identifier(name)}"
        log.info("PgBouncer %s: %s (in-flight transactions finish, new ones wait; gives up after %.1f s)",
                 self.admin.label, command, timeout_seconds)
        started = time.monotonic()
        conn = self._connect()
        try:
            completed = _execute_until(conn, command, started + timeout_seconds)
        finally:
            conn.close()  # not `with`: its exit would send COMMIT behind a still-pending PAUSE
        waited = time.monotonic() - started
        if not completed:
            busy = self._busy_servers_or_unknown(name)
            log.error("PgBouncer: PAUSE %s not complete after %.1f s (busy server connections: %s); resuming",
                      name, waited, busy)
            self.resume(name)
            raise PauseTimeoutError(
                f"PAUSE {name} did not complete within {timeout_seconds:.1f} s: server connections still in a "
                f"transaction: {busy}. The database was resumed, clients continue on the old route. Find the long "
                f"transaction (SHOW SERVERS on the admin console, pg_stat_activity on the server), end it, retry."
            )
        self._paused_at[name] = time.monotonic()
        if self.routes_file is not None and not self.is_pinned(name):
            log.warning("PgBouncer: %s follows the * fallback; SHOW DATABASES hides it (and its pause) when idle. "
                        "Pin it with pin_route() before pausing.", name)
        log.info("PgBouncer: %s paused; in-flight transactions finished in %.2f s; new ones wait from now on",
                 name, waited)
        return waited

    def _busy_servers_or_unknown(self, name: str) -> str:
        try:
            busy = [s for s in self.server_connections(name) if s.state == "active"]
        except psycopg.Error as exc:
            return f"unknown ({exc})"
        return ", ".join(f"{s.user}@{s.host}:{s.port}" for s in busy) or "none left"

    def resume(self, database: str) -> bool:
        """RESUME `database`; True if it was paused. PgBouncer answers "database … is not paused" (or
        "no such database" for one no client has used) when there is nothing to resume: not an error
        here, so every failure path may call this unconditionally."""
        name = validate_database_name(database)
        command = f"RESUME {quote_admin_identifier(name)}"
        try:
            self._command(command)
        except AdminCommandError as exc:
            text = str(exc)
            if "is not paused" in text or "no such database" in text:
                log.info("PgBouncer: %s was not paused; nothing to resume", name)
                return False
            raise
        paused_at = self._paused_at.pop(name, None)
        if paused_at is None:
            log.info("PgBouncer: %s resumed; waiting clients continue", name)
        else:
            log.info("PgBouncer: %s resumed after %.2f s paused; waiting clients continue",
                     name, time.monotonic() - paused_at)
        return True

    def is_paused(self, database: str) -> bool:
        """From SHOW DATABASES: PgBouncer's own flag, set the moment PAUSE arrives.

        Caveat (PgBouncer 1.18): a database that only follows the `*` fallback and has had no client for
        a few seconds moves to an internal idle list that SHOW DATABASES does not print, paused flag
        included, so this reads False for it. Databases with an explicit route never move there: call
        `pin_route` before a cutover.
        """
        row = self._database_row(validate_database_name(database))
        return bool(row and row["paused"])

    # -- routes -----------------------------------------------------------------------------

    def current_route(self, database: str) -> Route:
        """The route PgBouncer uses now (SHOW DATABASES); for a database no client has used yet and
        that has no live entry, the explicit route of the routes file."""
        name = validate_database_name(database)
        row = self._database_row(name)
        if row is not None:
            if not row["host"]:
                raise RouteSwitchError(f"PgBouncer routes {name} over a Unix socket; only TCP routes are handled")
            return Route(host=row["host"], port=int(row["port"]), dbname=row["database"])
        if self.routes_file is not None:
            explicit = read_routes_file(self.routes_file).get(name)
            if explicit is not None:
                return explicit
        raise LookupError(
            f"PgBouncer has no entry for {name} yet: no client has connected through it and it has no explicit "
            "route, so it will follow the `*` fallback of pgbouncer.ini"
        )

    def point_to(self, database: str, host: str, port: int, dbname: str) -> Route:
        """Route `database` to host:port/dbname: write it to the routes file (atomic rename, so a
        PgBouncer restart reads it too), RELOAD, and check that PgBouncer took it.

        If PgBouncer did not take it (config did not load), the file is put back as it was and
        reloaded, so the file and the running PgBouncer never disagree. Call while the database is
        paused: PAUSE closed its idle server connections, so after RESUME every new server connection
        goes to the new route.
        """
        name = validate_database_name(database)
        route = Route(host=host, port=port, dbname=dbname)
        routes_file = self._require_routes_file()
        with locked_routes(routes_file, self.lock_timeout) as routes:
            previous = routes.get(name)
            routes[name] = route
        log.info("PgBouncer: route %s -> %s written to %s (was %s); RELOAD",
                 name, route, routes_file, previous or "the * fallback")
        self._command("RELOAD")
        live = self._live_route_or_none(name)
        if live != route:
            with locked_routes(routes_file, self.lock_timeout) as routes:
                if previous is None:
                    routes.pop(name, None)
                else:
                    routes[name] = previous
            self._command("RELOAD")
            raise RouteSwitchError(
                f"PgBouncer did not take route {name} -> {route} after RELOAD (it reports {live}); the routes file "
                f"is back to {previous or 'no explicit route'}. Check .stack/logs/pgbouncer.log (or PgBouncer's log) "
                f"for a config error and that pgbouncer.ini includes {routes_file}."
            )
        log.info("PgBouncer: %s now routes to %s", name, route)
        return route

    def pin_route(self, database: str) -> Route:
        """Make the route `database` uses now explicit in the routes file (same host and port, so
        PgBouncer keeps its connections). Do it before pausing: an explicitly routed database stays
        visible in SHOW DATABASES while idle (see `is_paused`), and the later switch changes one line."""
        live = self.current_route(database)
        return self.point_to(database, live.host, live.port, live.dbname)

    def is_pinned(self, database: str) -> bool:
        """True if `database` has an explicit route in the routes file."""
        name = validate_database_name(database)
        return name in read_routes_file(self._require_routes_file())

    def remove_route(self, database: str) -> bool:
        """Drop the explicit route so `database` follows the `*` fallback again; True if there was one.

        PgBouncer forgets a database whose entry disappears and disconnects its clients: for cleaning
        up test or retired routes, not for a switch under load (use `point_to` for that).
        """
        name = validate_database_name(database)
        with locked_routes(self._require_routes_file(), self.lock_timeout) as routes:
            removed = routes.pop(name, None)
        if removed is None:
            return False
        log.info("PgBouncer: explicit route %s -> %s removed; RELOAD", name, removed)
        self._command("RELOAD")
        return True

    def _require_routes_file(self) -> Path:
        if self.routes_file is None:
            raise RouteSwitchError(
                "no routes file configured: set `routes_file` in the pgbouncer_admin connection's extra to the file "
                "pgbouncer.ini includes in [databases] (local stack: .stack/pgbouncer/routes.ini)"
            )
        return self.routes_file

    def _live_route_or_none(self, name: str) -> Route | None:
        row = self._database_row(name)
        if row is None or not row["host"]:
            return None
        return Route(host=row["host"], port=int(row["port"]), dbname=row["database"])

    # -- who is connected -------------------------------------------------------------------

    def server_connections(self, database: str) -> list[ServerConnection]:
        """SHOW SERVERS for `database`: where its server connections go (after a switch, none should
        point at the old server once the in-flight work has moved)."""
        name = validate_database_name(database)
        return [
            ServerConnection(host=row["addr"], port=int(row["port"]), user=row["user"], state=row["state"])
            for row in self._show("SERVERS")
            if row["database"] == name
        ]

    def client_count(self, database: str) -> int:
        """Clients of `database` connected to PgBouncer (SHOW CLIENTS), whatever their state: active,
        waiting behind a PAUSE, or idle between transactions."""
        name = validate_database_name(database)
        return sum(1 for row in self._show("CLIENTS") if row["database"] == name)


def _execute_until(conn: psycopg.Connection, command: str, deadline: float) -> bool:
    """Send `command` and wait for its answer until `deadline` (time.monotonic()); False when it did not
    come in time. psycopg's blocking execute cannot be interrupted, so this drives libpq directly. The
    caller closes the connection afterwards, which abandons the still-pending command on PgBouncer."""
    pgconn = conn.pgconn
    pgconn.send_query(command.encode())
    while pgconn.flush() != 0:
        select.select([], [pgconn.socket], [], 1.0)
    while True:
        pgconn.consume_input()
        if not pgconn.is_busy():
            break
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        select.select([pgconn.socket], [], [], min(remaining, 1.0))
    error = None
    while (result := pgconn.get_result()) is not None:
        if result.status == pq.ExecStatus.FATAL_ERROR:
            error = (result.error_message or b"").decode(errors="replace").strip()
    if error:
        raise AdminCommandError(f"PgBouncer refused `{command}`: {error}")
    return True
