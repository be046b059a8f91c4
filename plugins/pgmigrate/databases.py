"""Whole databases on a server: the scratch databases of `make demo`, `make bench` and the tests.

Run through the server's `postgres` maintenance database, since a database cannot drop itself.
"""

from __future__ import annotations

from dataclasses import replace

from psycopg import sql

from pgmigrate.endpoints import PgEndpoint


def _maintenance(endpoint: PgEndpoint) -> PgEndpoint:
    return replace(endpoint, dbname="postgres")


def database_exists(endpoint: PgEndpoint) -> bool:
    with _maintenance(endpoint).connect(autocommit=True) as conn:
        row = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (endpoint.dbname,)).fetchone()
    return row is not None


def drop_database(endpoint: PgEndpoint) -> None:
    """Drop it if it exists, disconnecting its sessions (FORCE)."""
    with _maintenance(endpoint).connect(autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(endpoint.dbname)))


def recreate_database(endpoint: PgEndpoint) -> None:
    """An empty database of that name, whatever was there before."""
    with _maintenance(endpoint).connect(autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(endpoint.dbname)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(endpoint.dbname)))
