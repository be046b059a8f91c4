"""Airflow hook for PgBouncer's admin console: hands the cutover a `PgBouncerRouteSwitch`.

The connection (type postgres) points at the admin console: host and port of PgBouncer, an
`admin_users` login, Schema `pgbouncer`. Its extra says where the routes file is (the file
pgbouncer.ini includes into `[databases]`). Operators never read these fields themselves. A deployment
with several PgBouncers has one connection each (the cutover's `pgbouncer_conn_ids`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from airflow.sdk import BaseHook
from airflow.sdk.log import mask_secret

from pgmigrate.core.endpoints import PgEndpoint
from pgmigrate.cutover.routing.switch import PgBouncerRouteSwitch


def switch_from_connection(conn: Any) -> PgBouncerRouteSwitch:
    """A `PgBouncerRouteSwitch` from an Airflow connection object (also used by the pause guard trigger,
    which reads connections asynchronously)."""
    if conn.password:
        mask_secret(conn.password)
    routes_file = (conn.extra_dejson or {}).get("routes_file")
    if not routes_file:
        raise ValueError(
            f"connection {conn.conn_id!r} has no `routes_file` in its extra: set it to the file that pgbouncer.ini "
            "includes in [databases] (local stack: .stack/pgbouncer/routes.ini)"
        )
    admin = PgEndpoint(
        host=conn.host or "127.0.0.1",
        port=int(conn.port or 6432),
        dbname=conn.schema or "pgbouncer",
        user=conn.login or "postgres",
        password=conn.password or "",
    )
    return PgBouncerRouteSwitch(admin, routes_file=Path(routes_file))


class PgBouncerHook(BaseHook):
    """PgBouncer in front of the migrated database, by Airflow connection id."""

    conn_name_attr = "pgbouncer_conn_id"
    default_conn_name = "pgbouncer_admin"
    conn_type = "postgres"
    hook_name = "PgBouncer admin console (migration)"

    def __init__(self, pgbouncer_conn_id: str = default_conn_name) -> None:
        super().__init__()
        self.pgbouncer_conn_id = pgbouncer_conn_id

    def _connection(self) -> Any:
        try:
            conn = self.get_connection(self.pgbouncer_conn_id)
        except Exception as exc:
            raise LookupError(
                f"Airflow connection {self.pgbouncer_conn_id!r} does not exist ({exc}). Create it in Admin > "
                "Connections: type postgres, PgBouncer's host and port, an admin_users login, Schema pgbouncer, "
                'extra {"routes_file": "/path/to/routes.ini"}.'
            ) from exc
        if conn.password:
            mask_secret(conn.password)
        return conn

    def get_conn(self) -> PgEndpoint:
        """The admin console as an endpoint (database `pgbouncer` unless the connection says otherwise)."""
        conn = self._connection()
        return PgEndpoint(
            host=conn.host or "127.0.0.1",
            port=int(conn.port or 6432),
            dbname=conn.schema or "pgbouncer",
            user=conn.login or "postgres",
            password=conn.password or "",
        )

    def routes_file(self) -> Path:
        extra = self._connection().extra_dejson
        if not extra.get("routes_file"):
            raise ValueError(
                f"connection {self.pgbouncer_conn_id!r} has no `routes_file` in its extra: set it to the file that "
                "pgbouncer.ini includes in [databases] (local stack: .stack/pgbouncer/routes.ini)"
            )
        return Path(extra["routes_file"])

    def get_switch(self) -> PgBouncerRouteSwitch:
        return switch_from_connection(self._connection())

    def test_connection(self) -> tuple[bool, str]:
        try:
            endpoint = self.get_conn()
            switch = PgBouncerRouteSwitch(endpoint)
            with switch._connect() as conn:
                version = conn.execute("SHOW VERSION", prepare=False).fetchone()[0]
        except Exception as exc:
            return False, str(exc)
        return True, f"{version} at {endpoint.label}"
