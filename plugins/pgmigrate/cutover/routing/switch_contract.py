"""The contract between the route switch and its callers: the `RouteSwitch` interface the cutover calls, the
errors it raises (each says what state clients are in), what it reports about server connections, and the
checks on what it is handed: a database name fit for an admin command, and whether the routes file's
explicit route agrees with the one PgBouncer runs. `switch.PgBouncerRouteSwitch` implements it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from pgmigrate.cutover.routing.routes import Route, validate_database_name


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

    def server_pids(self) -> set[int]: ...

    def client_count(self, database: str) -> int: ...


def quote_admin_identifier(name: str) -> str:
    """A database name as PgBouncer's admin parser reads it: validated, then double-quoted."""
    validate_database_name(name)
    return '"' + name.replace('"', '""') + '"'


def describe_routes_disagreement(name: str, explicit: Route | None, live_row: Mapping[str, Any] | None) -> str | None:
    """One line saying how the routes file's explicit route for `name` and PgBouncer's live entry (its
    SHOW DATABASES row, None when not listed) disagree; None when they agree.

    Why it matters: PgBouncer reads the routes file again at the next RELOAD or restart, so a file that
    differs from what PgBouncer runs moves clients at a moment nobody chose. Without an explicit route
    the database follows the `*` fallback of pgbouncer.ini, which the routes file says nothing about:
    None then, listed or not.
    """
    if explicit is None:
        return None
    if live_row is None:
        return (
            f"the routes file routes {name} to {explicit} but PgBouncer has no entry for it: it has not loaded "
            f"that route (a failed RELOAD, or pgbouncer.ini does not %include the file); the next RELOAD or "
            f"restart moves its clients to {explicit}"
        )
    if not live_row["host"]:
        return (
            f"the routes file routes {name} to {explicit} but PgBouncer reaches it over a Unix socket (port "
            f"{live_row['port']}); the next RELOAD or restart moves its clients to {explicit}"
        )
    live = Route(host=live_row["host"], port=int(live_row["port"]), dbname=live_row["database"])
    if live == explicit:
        return None
    return (
        f"the routes file routes {name} to {explicit} but PgBouncer uses {live}; the next RELOAD or restart "
        f"moves its clients to {explicit}"
    )
