"""After the switch: prove that clients reach the target. A write through PgBouncer must land on the
target (read back there directly), PgBouncer must hold no server connection to the source (the
runbook's "Expected: 0"), and any session still connected straight to the source is named, because
its writes would not reach the target.
"""

from __future__ import annotations

import logging
import time
import uuid

from psycopg import sql

from pgmigrate.catalog import CONTROL_SCHEMA
from pgmigrate.endpoints import PgEndpoint

log = logging.getLogger(__name__)

_PROBE = sql.Identifier(CONTROL_SCHEMA, "cutover_probe")


def write_through_pgbouncer_lands_on_target(client: PgEndpoint, target: PgEndpoint) -> bool:
    """The probe table exists on the target only, so a write that reached the source fails loudly."""
    with target.connect(autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(CONTROL_SCHEMA)))
        conn.execute(sql.SQL("CREATE TABLE IF NOT EXISTS {} (token text PRIMARY KEY, at timestamptz DEFAULT now())")
                     .format(_PROBE))  # fmt: skip
    token = uuid.uuid4().hex
    # One statement: psycopg prepares nothing (PgBouncer in transaction pooling must not see PREPARE).
    with client.connect(autocommit=True) as conn:
        conn.execute(sql.SQL("INSERT INTO {} (token) VALUES ({})").format(_PROBE, sql.Literal(token)))
    with target.connect(autocommit=True) as conn:
        return bool(conn.execute(sql.SQL("SELECT 1 FROM {} WHERE token = %s").format(_PROBE), (token,)).fetchone())


def direct_source_sessions(source: PgEndpoint) -> list[str]:
    """Client sessions on the source database other than ours and the reverse sink's."""
    with source.connect(autocommit=True) as conn:
        rows = conn.execute(
            "SELECT coalesce(nullif(application_name, ''), '?') || ' from ' || coalesce(client_addr::text, 'local') "
            "FROM pg_stat_activity WHERE datname = current_database() AND backend_type = 'client backend' "
            "AND pid <> pg_backend_pid() AND application_name NOT IN ('pgmigrate', 'PostgreSQL JDBC Driver')"
        ).fetchall()
    return [r[0] for r in rows]


def verify_route(switch, database: str, source: PgEndpoint, target: PgEndpoint, client: PgEndpoint,
                 settle_seconds: float = 10.0) -> dict:  # fmt: skip
    problems = []
    if not write_through_pgbouncer_lands_on_target(client, target):
        problems.append("a write through PgBouncer did not land on the target")
    deadline = time.monotonic() + settle_seconds
    while True:  # PgBouncer closes the old server connections as they are released
        servers = switch.server_connections(database)
        to_source = [c for c in servers if (c.host, int(c.port)) == (source.host, source.port)]
        if not to_source or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    if to_source:
        problems.append(f"PgBouncer still holds {len(to_source)} server connections to the source")
    direct = direct_source_sessions(source)
    if direct:
        log.warning("sessions connected straight to the source (their writes do not reach the target): %s", direct)
    return {"ok": not problems, "problems": problems, "server_connections_to_source": len(to_source),
            "direct_source_sessions": direct}  # fmt: skip
