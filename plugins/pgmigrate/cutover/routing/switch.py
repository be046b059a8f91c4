"""Where clients connect: the switch the cutover flips, kept behind a small interface.

Applications reach the database through PgBouncer and never change their connection string; the
cutover pauses one database in PgBouncer (in-flight transactions finish, new ones wait), points its
route at the target, and resumes. `RouteSwitch` is what the cutover calls, so a DNS or proxy switch
can replace PgBouncer later without touching the DAG. `PgBouncerRouteSwitch` implements it with
PgBouncer's admin console and the routes file of `pgmigrate.cutover.routing.routes`; the interface, its
errors and the checks of names and routes it relies on are `pgmigrate.cutover.routing.switch_contract`.

Commands go through `pgmigrate.cutover.routing.admin.AdminConsole`: one connection per command, except
inside `PgBouncerRouteSwitch.held()`, which opens two once and reuses them (see `held`). Every database
name is checked against a strict pattern before it is quoted into a command.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg

from pgmigrate.core.endpoints import PgEndpoint
from pgmigrate.cutover.routing.admin import AdminConsole, CommandRefused, execute_until
from pgmigrate.cutover.routing.routes import Route, locked_routes, read_routes_file, validate_database_name
from pgmigrate.cutover.routing.switch_contract import (
    AdminCommandError,
    PauseTimeoutError,
    RouteSwitchError,
    ServerConnection,
    describe_routes_disagreement,
    quote_admin_identifier,
)

log = logging.getLogger(__name__)


class PgBouncerRouteSwitch:
    """`RouteSwitch` over PgBouncer's admin console (`admin`, database `pgbouncer`) and routes file.

    `routes_file` is the file included into pgbouncer.ini's `[databases]`; it must be on a filesystem
    this process can write and PgBouncer can read. Without it, everything but `point_to` works (the
    pause's enforcers only need `resume`).
    """

    def __init__(self, admin: PgEndpoint, routes_file: Path | str | None = None, lock_timeout: float = 10.0) -> None:
        self.admin = admin
        self.routes_file = Path(routes_file) if routes_file else None
        # How long a route change waits for another writer of the routes file (inside a pause: what is left of it).
        self.lock_timeout = lock_timeout
        self._paused_at: dict[str, float] = {}
        self._console = AdminConsole(admin)

    # -- admin console plumbing -------------------------------------------------------------

    def _connect(self) -> psycopg.Connection:
        return self._console.connect()

    @contextmanager
    def held(self) -> Iterator[PgBouncerRouteSwitch]:
        """Open two admin connections now and use them for every command until the block ends: one only
        for PAUSE, one for everything else (RESUME, RELOAD, SHOW ...). Enter it before pausing.

        Why: while a database is paused its clients queue, and new ones keep arriving. Once PgBouncer
        cannot take another connection it refuses logins; a switch that opened a connection per command
        could then neither RELOAD nor RESUME, and clients would wait until the pause's deadline enforcer acts.
        (PgBouncer 1.18 exempts logins to its admin database from `max_client_conn`, but not from the
        file-descriptor limit: at `ulimit -n` it accepts no connection at all.) PAUSE has a connection of
        its own because a PAUSE that does not complete in time is abandoned with its connection, and the
        RESUME that follows must not queue behind it.

        A held connection found broken is replaced by a new one (logged), which needs a login again; see
        `AdminConsole.execute` and `AdminConsole.pause_connection`. Outside the block every command opens
        its own connection, as before. An inner `held()` reuses the outer block's connections. Raises
        AdminCommandError, with nothing paused, when PgBouncer refuses the logins.
        """
        try:
            self._console.hold()
        except psycopg.Error as exc:
            raise AdminCommandError(
                f"PgBouncer at {self.admin.label} refused the admin logins to hold: {exc}. Nothing was paused."
            ) from exc
        try:
            yield self
        finally:
            self._console.release()

    def _command(self, command: str) -> None:
        try:
            self._console.execute(command)
        except psycopg.Error as exc:
            raise AdminCommandError(f"PgBouncer at {self.admin.label} refused `{command}`: {exc}") from exc

    def _show(self, what: str) -> list[dict[str, Any]]:
        return self._console.execute(f"SHOW {what}")

    def _database_row(self, name: str) -> dict[str, Any] | None:
        return next((row for row in self._show("DATABASES") if row["name"] == name), None)

    # -- pause / resume ---------------------------------------------------------------------

    def pause(self, database: str, timeout_seconds: float) -> float:
        """PAUSE `database` and wait until its in-flight transactions have finished.

        PgBouncer marks the database paused at once and answers when no server connection is busy
        any more; if that takes longer than `timeout_seconds`, a RESUME follows at once (clients would
        otherwise wait behind a transaction that may never end) and PauseTimeoutError says which
        servers were still busy. Arm the pause lease (`pgmigrate.control.pause_lease`) *before* calling
        this: the database is paused from the moment PgBouncer receives the command, even if this process
        dies waiting.
        """
        name = validate_database_name(database)
        command = f"PAUSE {quote_admin_identifier(name)}"
        log.info(
            "PgBouncer %s: %s (in-flight transactions finish, new ones wait; gives up after %.1f s)",
            self.admin.label,
            command,
            timeout_seconds,
        )
        conn = self._console.pause_connection()
        started = time.monotonic()
        idle = False  # PgBouncer answered, so a held connection can take the next PAUSE
        try:
            completed = idle = execute_until(conn, command, started + timeout_seconds)
        except CommandRefused as exc:
            idle = True
            raise AdminCommandError(f"PgBouncer at {self.admin.label} refused `{command}`: {exc}") from exc
        finally:
            self._console.done_with_pause_connection(conn, idle)
        waited = time.monotonic() - started
        if not completed:
            busy = self._busy_servers_or_unknown(name)
            log.error(
                "PgBouncer: PAUSE %s not complete after %.1f s (busy server connections: %s); resuming",
                name,
                waited,
                busy,
            )
            self.resume(name)
            raise PauseTimeoutError(
                f"PAUSE {name} did not complete within {timeout_seconds:.1f} s: server connections still in a "
                f"transaction: {busy}. The database was resumed, clients continue on the old route. Find the long "
                f"transaction (SHOW SERVERS on the admin console, pg_stat_activity on the server), end it, retry."
            )
        self._paused_at[name] = time.monotonic()
        if self.routes_file is not None and not self.is_pinned(name):
            log.warning(
                "PgBouncer: %s follows the * fallback; SHOW DATABASES hides it (and its pause) when idle. "
                "Pin it with pin_route() before pausing.",
                name,
            )
        log.info(
            "PgBouncer: %s paused; in-flight transactions finished in %.2f s; new ones wait from now on", name, waited
        )
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
            log.info(
                "PgBouncer: %s resumed after %.2f s paused; waiting clients continue",
                name,
                time.monotonic() - paused_at,
            )
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

        If the RELOAD fails (refused, connection lost) or PgBouncer did not take the route (config did
        not load), the file is put back as it was and reloaded (best effort), and RouteSwitchError says
        where PgBouncer routes the clients now: a file left on the new route would move them at the next
        restart, unannounced. Call while the database is paused: PAUSE closed its idle server
        connections, so after RESUME every new server connection goes to the new route.
        """
        name = validate_database_name(database)
        route = Route(host=host, port=port, dbname=dbname)
        routes_file = self._require_routes_file()
        with locked_routes(routes_file, self.lock_timeout) as routes:
            previous = routes.get(name)
            routes[name] = route
        log.info(
            "PgBouncer: route %s -> %s written to %s (was %s); RELOAD",
            name,
            route,
            routes_file,
            previous or "the * fallback",
        )
        try:
            self._command("RELOAD")
        except AdminCommandError as exc:
            log.error(
                "PgBouncer: RELOAD after writing route %s -> %s failed: %s; putting the routes file back",
                name,
                route,
                exc,
            )
            state = self._put_route_back(name, route, previous, routes_file)
            raise RouteSwitchError(f"RELOAD after writing route {name} -> {route} failed ({exc}). {state}") from exc
        live = self._live_route_or_none(name)
        if live != route:
            state = self._put_route_back(name, route, previous, routes_file)
            raise RouteSwitchError(
                f"PgBouncer did not take route {name} -> {route} after RELOAD (it reports {live}). {state} Check "
                f".stack/logs/pgbouncer.log (or PgBouncer's log) for a config error and that pgbouncer.ini includes "
                f"{routes_file}."
            )
        log.info("PgBouncer: %s now routes to %s", name, route)
        return route

    def _put_route_back(self, name: str, route: Route, previous: Route | None, routes_file: Path) -> str:
        """Undo a route change PgBouncer did not confirm: restore the file, RELOAD, read the live route,
        each step best effort. Returns what state clients are in, for the error the caller raises."""
        old = str(previous) if previous else "the * fallback"
        try:
            with locked_routes(routes_file, self.lock_timeout) as routes:
                if previous is None:
                    routes.pop(name, None)
                else:
                    routes[name] = previous
        except Exception as exc:  # the lock, the disk: whatever it is, the file still holds the new route
            log.error("PgBouncer: could not put %s back in %s: %s", name, routes_file, exc)
            return (
                f"Putting {routes_file} back failed too ({exc}): it still routes {name} to {route}, so the next "
                f"RELOAD or restart moves its clients there. Restore the line (was: {old}) by hand, then RELOAD."
            )
        try:
            self._command("RELOAD")
            reloaded = "RELOAD again: done"
        except AdminCommandError as exc:
            reloaded = f"RELOAD again failed: {exc.__cause__ or exc}"
        restored = f"The routes file is back to {previous or 'no explicit route'} ({reloaded})"
        try:
            live = self._live_route_or_none(name)
        except psycopg.Error as exc:
            return (
                f"{restored}; PgBouncer's live route is unknown (SHOW DATABASES failed: {exc}). It took no RELOAD "
                f"it confirmed, so clients most likely stay on {old}: check SHOW DATABASES on the admin console "
                f"and RELOAD there once it answers."
            )
        if live != route and (previous is None or live == previous):
            return f"{restored}; PgBouncer routes {name} to {live or old}: clients stay on the old route."
        return (
            f"{restored}, but PgBouncer routes {name} to {live or 'nothing it lists'}: the file and PgBouncer "
            f"disagree. RELOAD on the admin console and check SHOW DATABASES before resuming clients."
        )

    def routes_disagreement(self, database: str) -> str | None:
        """One line when the routes file's explicit route for `database` and the route PgBouncer runs
        (SHOW DATABASES) differ, else None (also when the file has no explicit route for it: it follows
        the `*` fallback). A pre-cutover checklist refuses on it before pausing: the next RELOAD or
        restart would move the clients, and a switch would start from a state nobody knows. Raises
        psycopg.Error when the admin console does not answer."""
        name = validate_database_name(database)
        explicit = read_routes_file(self._require_routes_file()).get(name)
        problem = describe_routes_disagreement(name, explicit, self._database_row(name))
        return None if problem is None else f"PgBouncer at {self.admin.label}: {problem}"

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

    def server_pids(self) -> set[int]:
        """Backend pids on the servers of every connection PgBouncer holds (SHOW SERVERS' `remote_pid`): the
        sessions that come through PgBouncer, told apart exactly from those connected straight to a server."""
        return {int(row["remote_pid"]) for row in self._show("SERVERS") if row.get("remote_pid")}

    def client_count(self, database: str) -> int:
        """Clients of `database` connected to PgBouncer (SHOW CLIENTS), whatever their state: active,
        waiting behind a PAUSE, or idle between transactions."""
        name = validate_database_name(database)
        return sum(1 for row in self._show("CLIENTS") if row["database"] == name)
