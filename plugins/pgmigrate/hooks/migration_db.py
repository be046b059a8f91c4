"""Airflow hook that turns a postgres connection into a `PgEndpoint` for the migration logic.

The migration modules speak psycopg 3 (streamed COPY, replication connections) and take a plain
`PgEndpoint`; this hook is the only place that reads the Airflow connection's fields, and it masks
the password so it never reaches a task log.
"""

from __future__ import annotations

from airflow.sdk import BaseHook
from airflow.sdk.log import mask_secret

from pgmigrate.core.endpoints import PgEndpoint


class MigrationDatabaseHook(BaseHook):
    """A source, target or control database of a migration, by Airflow connection id."""

    conn_name_attr = "postgres_conn_id"
    default_conn_name = "migration_source"
    conn_type = "postgres"
    hook_name = "Migration database (PostgreSQL)"

    def __init__(self, postgres_conn_id: str = default_conn_name) -> None:
        super().__init__()
        self.postgres_conn_id = postgres_conn_id

    def get_conn(self) -> PgEndpoint:
        try:
            conn = self.get_connection(self.postgres_conn_id)
        except Exception as exc:
            raise LookupError(
                f"Airflow connection {self.postgres_conn_id!r} does not exist ({exc}). Create it in Admin > "
                f"Connections (type postgres, Schema = database name), or pass another conn id in the params."
            ) from exc
        if conn.password:
            mask_secret(conn.password)
        return PgEndpoint.from_airflow_connection(conn)

    def test_connection(self) -> tuple[bool, str]:
        try:
            endpoint = self.get_conn()
            with endpoint.connect(autocommit=True) as pg:
                version = pg.execute("SHOW server_version").fetchone()[0]
        except Exception as exc:
            return False, str(exc)
        return True, f"PostgreSQL {version} at {endpoint.label}"
