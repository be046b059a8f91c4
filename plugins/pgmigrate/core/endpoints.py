"""Where a database is: connection details for the source and target servers.

Plain data, built from an Airflow connection by the hooks (`from_airflow_connection`) or by hand in
the CLI and tests, so the migration logic never reads Airflow itself. The password never appears in
`repr()` or logs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from typing import Any

import psycopg

# For the pipeline's own long sessions (the slot's exporting session, the copy workers, the connectors): a timeout
# set on the database or role for the application (statement_timeout, idle_in_transaction_session_timeout,
# idle_session_timeout) would end them mid-copy ("invalid snapshot identifier" on every rerun) or drop the sink's
# pooled connections. 0 turns each off for that session only.
PIPELINE_SESSION_SETTINGS = (
    ("statement_timeout", "0"),
    ("idle_in_transaction_session_timeout", "0"),
    ("idle_session_timeout", "0"),
)


def session_options(settings: tuple[tuple[str, str], ...]) -> str:
    """libpq's `options` (`-c name=value ...`) for these settings."""
    return " ".join(f"-c {name}={value}" for name, value in settings)


@dataclass(frozen=True)
class PgEndpoint:
    host: str
    port: int
    dbname: str
    user: str
    password: str = field(default="", repr=False)
    # Session settings sent at connect (`options=-c name=value`), e.g. a lock_timeout inside the write pause.
    settings: tuple[tuple[str, str], ...] = ()

    @classmethod
    def from_airflow_connection(cls, conn: Any) -> PgEndpoint:
        """Build from an Airflow Connection (postgres type: `schema` is the database name)."""
        if not conn.schema:
            raise ValueError(
                f"Airflow connection {conn.conn_id!r} has no database name: set its Schema field "
                "to the database to migrate (e.g. shop)."
            )
        return cls(
            host=conn.host or "127.0.0.1",
            port=int(conn.port or 5432),
            dbname=conn.schema,
            user=conn.login or "postgres",
            password=conn.password or "",
        )

    def with_settings(self, **settings: str) -> PgEndpoint:
        """The same server, with these session settings on every connection it opens."""
        return replace(self, settings=(*self.settings, *((k, str(v)) for k, v in settings.items())))

    @property
    def label(self) -> str:
        """For log lines: user@host:port/db, never the password."""
        return f"{self.user}@{self.host}:{self.port}/{self.dbname}"

    def conninfo(self, **overrides: Any) -> str:
        params: dict[str, Any] = {
            "host": self.host,
            "port": self.port,
            "dbname": self.dbname,
            "user": self.user,
            "password": self.password,
            "connect_timeout": 10,
            "application_name": "pgmigrate",
        }
        if self.settings:
            params["options"] = session_options(self.settings)
        params.update(overrides)
        return psycopg.conninfo.make_conninfo(**{k: v for k, v in params.items() if v is not None})

    def connect(self, autocommit: bool = False, **overrides: Any) -> psycopg.Connection:
        return psycopg.connect(self.conninfo(**overrides), autocommit=autocommit)

    def libpq_env(self) -> dict[str, str]:
        """Environment for pg_dump/pg_restore/psql: the password travels in PGPASSWORD, not argv."""
        env = dict(os.environ)
        env.update(
            PGHOST=self.host,
            PGPORT=str(self.port),
            PGDATABASE=self.dbname,
            PGUSER=self.user,
            PGPASSWORD=self.password,
            PGCONNECT_TIMEOUT="10",
            # The cutover's fence tells the platform's own sessions (pg_dump of the backup) by this name.
            PGAPPNAME="pgmigrate",
        )
        return env

    def jdbc_url(self) -> str:
        """JDBC URL for the Debezium JDBC sink. `stringtype=unspecified` lets PostgreSQL cast the
        sink's text parameters to the column's real type (jsonb, inet, enums, ranges)."""
        return f"jdbc:postgresql://{self.host}:{self.port}/{self.dbname}?stringtype=unspecified"
