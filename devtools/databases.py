"""Whole databases on a server: the scratch databases of `make demo`, `make bench` and the tests.

Run through the server's `postgres` maintenance database, since a database cannot drop itself.
"""

from __future__ import annotations

from dataclasses import replace

from psycopg import sql

from pgmigrate.core.endpoints import PgEndpoint


def _maintenance(endpoint: PgEndpoint) -> PgEndpoint:
    return replace(endpoint, dbname="postgres")


def database_exists(endpoint: PgEndpoint) -> bool:
    with _maintenance(endpoint).connect(autocommit=True) as conn:
        row = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (endpoint.dbname,)).fetchone()
    return row is not None


def _drop_subscriptions(endpoint: PgEndpoint) -> None:
    """A database holding a subscription cannot be dropped: detach each from its slot (which lives on the
    publisher, removed by the migration's teardown) and drop it."""
    if not database_exists(endpoint):
        return
    with endpoint.connect(autocommit=True) as conn:
        subscriptions = conn.execute(
            "SELECT s.subname FROM pg_subscription s JOIN pg_database d ON d.oid = s.subdbid "
            "WHERE d.datname = current_database()"
        ).fetchall()
        for (name,) in subscriptions:
            sub = sql.Identifier(name)
            conn.execute(sql.SQL("ALTER SUBSCRIPTION {} DISABLE").format(sub))
            conn.execute(sql.SQL("ALTER SUBSCRIPTION {} SET (slot_name = NONE)").format(sub))
            conn.execute(sql.SQL("DROP SUBSCRIPTION {}").format(sub))


def drop_database(endpoint: PgEndpoint) -> None:
    """Drop it if it exists, disconnecting its sessions (FORCE)."""
    _drop_subscriptions(endpoint)
    with _maintenance(endpoint).connect(autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(endpoint.dbname)))


def recreate_database(endpoint: PgEndpoint) -> None:
    """An empty database of that name, whatever was there before."""
    _drop_subscriptions(endpoint)
    with _maintenance(endpoint).connect(autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(endpoint.dbname)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(endpoint.dbname)))
