"""PgBouncer's admin console: the connections the route switch sends its commands on.

The console speaks only the simple query protocol and has no transactions: connections are autocommit
with server-side prepared statements disabled, and commands carry no parameters.

By default every command opens its own connection and closes it, which is all the pause's enforcers and
one-off calls need. Between `hold()` and `release()` (what `PgBouncerRouteSwitch.held()` wraps) two
connections are opened once and reused instead: one only for PAUSE, one for everything else. The switch
inside a write pause must not depend on PgBouncer accepting a new login while clients queue.
"""

from __future__ import annotations

import logging
import select
import time
from typing import Any

import psycopg
from psycopg import pq

from pgmigrate.core.endpoints import PgEndpoint

log = logging.getLogger(__name__)


class AdminConsole:
    """The admin console of one PgBouncer (`admin`: its host and port, an admin_users login, database
    `pgbouncer`). For one thread at a time."""

    def __init__(self, admin: PgEndpoint) -> None:
        self.admin = admin
        self._depth = 0  # open hold() calls
        self._pause_conn: psycopg.Connection | None = None
        self._other_conn: psycopg.Connection | None = None

    @property
    def holding(self) -> bool:
        return self._depth > 0

    def connect(self) -> psycopg.Connection:
        # prepare_threshold=None: psycopg would otherwise prepare a query run 5 times, and the
        # admin console cannot parse the extended protocol.
        return psycopg.connect(self.admin.conninfo(), autocommit=True, prepare_threshold=None)

    def hold(self) -> None:
        """Open the two held connections (the first call only; calls nest). Raises psycopg.Error,
        holding nothing, when PgBouncer refuses a login."""
        if self._depth == 0:
            try:
                self._pause_conn = self.connect()
                self._other_conn = self.connect()
            except psycopg.Error:
                self._close_all()
                raise
            log.info(
                "PgBouncer %s: holding 2 admin connections (PAUSE; RESUME, RELOAD, SHOW) until the switch ends",
                self.admin.label,
            )
        self._depth += 1

    def release(self) -> None:
        """End one hold(); the last one closes the held connections."""
        self._depth -= 1
        if self._depth == 0:
            self._close_all()

    def _close_all(self) -> None:
        for conn in (self._pause_conn, self._other_conn):
            if conn is not None:
                conn.close()
        self._pause_conn = self._other_conn = None

    def execute(self, command: str) -> list[dict[str, Any]]:
        """Run an admin command other than PAUSE; its rows as dicts ([] for a command without rows).

        Held: on the held connection; if that one is broken, or breaks during the command, a new one is
        opened (logged) and the command is sent once more on it. Safe for what goes this way: RELOAD and
        SHOW can be repeated, and a repeated RESUME answers "is not paused". An error PgBouncer answers
        (the connection still open) is raised as it is."""
        if not self.holding:
            with self.connect() as conn:
                return _rows(conn.execute(command, prepare=False))
        conn = self._other_conn
        if conn is not None and not conn.closed and not conn.broken:
            try:
                return _rows(conn.execute(command, prepare=False))
            except psycopg.Error as exc:
                if not (conn.closed or conn.broken):
                    raise  # PgBouncer answered with an error: a refusal, not a lost connection
                reason = f"broke during `{command}` ({exc})"
        else:
            reason = "was closed or broken"
        log.warning(
            "PgBouncer %s: the held admin connection %s; opening a new one for `%s`", self.admin.label, reason, command
        )
        if conn is not None:
            conn.close()
        self._other_conn = None
        self._other_conn = self.connect()
        return _rows(self._other_conn.execute(command, prepare=False))

    def pause_connection(self) -> psycopg.Connection:
        """The connection to send PAUSE on. Not held: a new one, the caller closes it. Held: the held
        one, checked with SHOW VERSION first (once PAUSE is sent it cannot be safely sent again, so a
        dead connection must be found before), or a new one (logged) if it does not answer."""
        if not self.holding:
            return self.connect()
        conn = self._pause_conn
        if conn is not None and _answers(conn):
            return conn
        log.warning(
            "PgBouncer %s: the held PAUSE connection is %s; opening a new one",
            self.admin.label,
            "gone (abandoned with a PAUSE that did not complete)" if conn is None else "broken",
        )
        if conn is not None:
            conn.close()
        self._pause_conn = None
        self._pause_conn = self.connect()
        return self._pause_conn

    def done_with_pause_connection(self, conn: psycopg.Connection, idle: bool) -> None:
        """After PAUSE: keep a held connection that is `idle` (PgBouncer answered) for the next PAUSE;
        close any other, which abandons a still-pending PAUSE on PgBouncer."""
        if self.holding and idle and conn is self._pause_conn:
            return
        conn.close()  # not `with`: its exit would send COMMIT behind a still-pending PAUSE
        if conn is self._pause_conn:
            self._pause_conn = None


def _rows(cur: psycopg.Cursor) -> list[dict[str, Any]]:
    names = [column.name for column in cur.description or []]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()] if names else []


def _answers(conn: psycopg.Connection) -> bool:
    """True if the connection is open and PgBouncer answers on it now."""
    if conn.closed or conn.broken:
        return False
    try:
        conn.execute("SHOW VERSION", prepare=False)
    except psycopg.Error:
        return False
    return True


class CommandRefused(RuntimeError):
    """PgBouncer answered a command sent by `execute_until` with an error (the connection stays usable)."""


def execute_until(conn: psycopg.Connection, command: str, deadline: float) -> bool:
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
        raise CommandRefused(error)
    return True
