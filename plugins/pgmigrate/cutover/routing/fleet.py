"""Every PgBouncer in front of the migrated database, moved as one.

Production runs several PgBouncers behind a load balancer; one left on the source while the others send
clients to the target would split the writes. So the cutover pauses all of them, checks that all are
paused, switches each (confirmed by SHOW DATABASES), and resumes all; if any switch fails, every instance
goes back to the origin before anything resumes. Each instance is a `PgBouncerRouteSwitch` reached by its
Airflow connection; `held()` keeps their admin connections open through the pause, so the commands that end
it need no new login: clients queued in a pause can exhaust PgBouncer's file descriptors, and then it accepts
no login at all (its admin database is exempt from `max_client_conn`, not from the process's file limit).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass

from pgmigrate.cutover.routing.routes import Route
from pgmigrate.cutover.routing.switch import PgBouncerRouteSwitch
from pgmigrate.cutover.routing.switch_contract import RouteSwitchError

log = logging.getLogger(__name__)


@dataclass
class PgBouncerInstance:
    conn_id: str  # the Airflow connection of its admin console: how logs and the lease name it
    switch: PgBouncerRouteSwitch


class ClientRouting:
    def __init__(self, instances: list[PgBouncerInstance], database: str) -> None:
        if not instances:
            raise ValueError("no PgBouncer given: list every PgBouncer clients use (pgbouncer_conn_ids)")
        self.instances = instances
        self.database = database

    @property
    def names(self) -> list[str]:
        return [i.conn_id for i in self.instances]

    @contextmanager
    def held(self) -> Iterator[ClientRouting]:
        """Admin connections opened now and reused until the block ends (see the module docstring)."""
        with ExitStack() as stack:
            for i in self.instances:
                stack.enter_context(i.switch.held())
            yield self

    def routes(self) -> dict[str, Route]:
        return {i.conn_id: i.switch.current_route(self.database) for i in self.instances}

    def problems_before_pause(self, origin: Route) -> list[str]:
        """What must be true of every PgBouncer before pausing: it answers, routes the database to the
        origin, is not paused, and its routes file agrees with what it runs."""
        problems = []
        for i in self.instances:
            try:
                try:
                    route = i.switch.current_route(self.database)
                except LookupError:  # no client has used the database there yet: `pin` routes it to the origin
                    continue
                if route != origin:
                    problems.append(f"{i.conn_id} routes {self.database} to {route}, not to {origin}")
                if i.switch.is_paused(self.database):
                    problems.append(f"{i.conn_id} has {self.database} paused already (RESUME it once you know why)")
                disagreement = i.switch.routes_disagreement(self.database)
                if disagreement:
                    problems.append(f"{i.conn_id}: {disagreement}")
            except Exception as exc:  # unreachable, or no route at all: refuse and say which
                problems.append(f"{i.conn_id}: {str(exc).splitlines()[0]}")
        return problems

    def pin(self, origin: Route) -> None:
        """An explicit route to the origin on every instance: it keeps the database listed (and its pause
        visible) while it has no clients. An instance no client has used the database through yet gets it too."""
        for i in self.instances:
            try:
                i.switch.pin_route(self.database)
            except LookupError:
                i.switch.point_to(self.database, origin.host, origin.port, origin.dbname)

    def pause(self, timeout_seconds: float) -> None:
        """PAUSE on every instance; if one fails, resume those already paused and raise."""
        paused: list[PgBouncerInstance] = []
        try:
            for i in self.instances:
                i.switch.pause(self.database, timeout_seconds=timeout_seconds)
                paused.append(i)
        except BaseException:
            for i in paused:
                try:
                    i.switch.resume(self.database)
                except Exception as exc:
                    log.error("could not RESUME %s on %s after a failed pause: %s", self.database, i.conn_id, exc)
            raise

    def not_paused(self) -> list[str]:
        return [i.conn_id for i in self.instances if not i.switch.is_paused(self.database)]

    def server_pids(self) -> set[int]:
        """Backend pids of every server connection the PgBouncers hold (any database): sessions that come
        through PgBouncer, as opposed to connected straight to the server."""
        return {pid for i in self.instances for pid in i.switch.server_pids()}

    def switch_to(self, route: Route) -> None:
        """Point every instance at `route`, each confirmed by SHOW DATABASES (`point_to`). If one fails,
        every instance switched so far goes back to where it was, and RouteSwitchError says so."""
        before = self.routes()
        switched: list[PgBouncerInstance] = []
        try:
            for i in self.instances:
                i.switch.point_to(self.database, route.host, route.port, route.dbname)
                switched.append(i)
        except BaseException as exc:
            undone = []
            for i in switched:
                back = before[i.conn_id]
                try:
                    i.switch.point_to(self.database, back.host, back.port, back.dbname)
                    undone.append(i.conn_id)
                except Exception as undo_exc:
                    log.error("could not put %s on %s back to %s: %s", self.database, i.conn_id, back, undo_exc)
            raise RouteSwitchError(
                f"switching {self.database} to {route} failed ({str(exc).splitlines()[0]}); put back: "
                f"{', '.join(undone) or 'none needed'}"
            ) from exc
        log.info("every PgBouncer (%s) routes %s to %s", ", ".join(self.names), self.database, route)

    def resume(self) -> list[str]:
        """RESUME on every instance (each tried even if another fails); the failures, as text."""
        problems = []
        for i in self.instances:
            try:
                i.switch.resume(self.database)
            except Exception as exc:
                problems.append(f"{i.conn_id}: {str(exc).splitlines()[0]}")
        return problems

    def restore(self, route: Route) -> list[str]:
        """Put every instance back on `route` (where it is not) and resume it: the undo of a pause, used by
        whoever won the pause lease. Each instance is tried even if another fails; the failures, as text."""
        problems = []
        for i in self.instances:
            try:
                if i.switch.current_route(self.database) != route:
                    i.switch.point_to(self.database, route.host, route.port, route.dbname)
            except Exception as exc:
                problems.append(f"{i.conn_id}: route not restored ({str(exc).splitlines()[0]})")
            try:
                i.switch.resume(self.database)
            except Exception as exc:
                problems.append(f"{i.conn_id}: not resumed ({str(exc).splitlines()[0]})")
        return problems
