"""After the switch: prove that clients reach the target. A write through PgBouncer must land on the
target (read back there directly), PgBouncer must hold no server connection to the source (the
runbook's "Expected: 0"), and any session still connected straight to the source is named, because
its writes would not reach the target. The probe logs in through PgBouncer as the migration's source
role, else as PgBouncer's admin login; when PgBouncer accepts neither, its reported route is checked.
"""

from __future__ import annotations

import logging
import time
import uuid

import psycopg
from psycopg import sql

from pgmigrate.core.catalog import CONTROL_SCHEMA
from pgmigrate.core.endpoints import PgEndpoint

log = logging.getLogger(__name__)

_PROBE = sql.Identifier(CONTROL_SCHEMA, "cutover_probe")


def write_through_pgbouncer_lands_on_target(client: PgEndpoint, target: PgEndpoint) -> bool:
    """The probe table exists on the target only, so a write that reached the source fails loudly."""
    with target.connect(autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(CONTROL_SCHEMA)))
        conn.execute(
            sql.SQL("CREATE TABLE IF NOT EXISTS {} (token text PRIMARY KEY, at timestamptz DEFAULT now())").format(
                _PROBE
            )
        )
    token = uuid.uuid4().hex
    # One statement: psycopg prepares nothing (PgBouncer in transaction pooling must not see PREPARE).
    with client.connect(autocommit=True) as conn:
        conn.execute(sql.SQL("INSERT INTO {} (token) VALUES ({})").format(_PROBE, sql.Literal(token)))
    with target.connect(autocommit=True) as conn:
        return bool(conn.execute(sql.SQL("SELECT 1 FROM {} WHERE token = %s").format(_PROBE), (token,)).fetchone())


def direct_source_sessions(source: PgEndpoint, pgbouncer_pids: set[int]) -> list[str]:
    """Client sessions on the source database that come neither through PgBouncer nor from the platform."""
    from pgmigrate.cutover.fence import direct_sessions

    with source.connect(autocommit=True) as conn:
        return [s.describe() for s in direct_sessions(conn, pgbouncer_pids, source.user)]


def verify_route(
    switch,
    database: str,
    source: PgEndpoint,
    target: PgEndpoint,
    clients: list[PgEndpoint],
    settle_seconds: float = 10.0,
) -> dict:
    """`clients`: logins to try for the write probe through this PgBouncer, in order (its auth file may know
    only some roles); when none may log in, the route it reports (SHOW DATABASES) is what is checked."""
    problems = []
    probed_as = None
    for client in clients:
        try:
            if not write_through_pgbouncer_lands_on_target(client, target):
                problems.append("a write through PgBouncer did not land on the target")
            probed_as = client.user
            break
        except psycopg.OperationalError as exc:
            if "authentication failed" not in str(exc) and "password" not in str(exc):
                raise
            log.info("PgBouncer does not accept %s (%s); trying the next login", client.user, str(exc).strip())
    if probed_as is None:
        route = switch.current_route(database)
        log.warning(
            "no login of %s is accepted by PgBouncer, so no write probe: checking its route instead (%s)",
            ", ".join(c.user for c in clients),
            route,
        )
        if (route.host, route.port, route.dbname) != (target.host, target.port, target.dbname):
            problems.append(f"PgBouncer routes {database} to {route}, not to the target")
    deadline = time.monotonic() + settle_seconds
    while True:  # PgBouncer closes the old server connections as they are released
        servers = switch.server_connections(database)
        to_source = [c for c in servers if (c.host, int(c.port)) == (source.host, source.port)]
        if not to_source or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    if to_source:
        problems.append(f"PgBouncer still holds {len(to_source)} server connections to the source")
    direct = direct_source_sessions(source, switch.server_pids())
    if direct:
        log.warning("sessions connected straight to the source (their writes do not reach the target): %s", direct)
    return {
        "ok": not problems,
        "problems": problems,
        "server_connections_to_source": len(to_source),
        "direct_source_sessions": direct,
        "probed_as": probed_as,
    }
