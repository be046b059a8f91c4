"""The migration's heartbeat: a one-row table on the source that Debezium updates every second
(`heartbeat.action.query`) and that is itself replicated, so the age of the copy on the target is
the pipeline's end-to-end lag, measured with the source's clock alone.
"""

from __future__ import annotations

from psycopg import sql

from pgmigrate.core.catalog import CONTROL_SCHEMA, TableRef
from pgmigrate.core.endpoints import PgEndpoint
from pgmigrate.core.naming import MigrationNames


def heartbeat_table(names: MigrationNames) -> TableRef:
    return TableRef(CONTROL_SCHEMA, names.heartbeat_table)


def create_heartbeat_table_sql(names: MigrationNames) -> sql.Composed:
    return sql.SQL(
        "CREATE SCHEMA IF NOT EXISTS {schema}; "
        "CREATE TABLE IF NOT EXISTS {table} (id int PRIMARY KEY, ts timestamptz NOT NULL)"
    ).format(schema=sql.Identifier(CONTROL_SCHEMA), table=heartbeat_table(names).ident)


def heartbeat_action_query(names: MigrationNames) -> str:
    """The statement Debezium runs on the source at each heartbeat (a string in the connector config)."""
    return (
        sql.SQL(
            # Only types the pipeline carries exactly (pg_lsn is not one of them).
            "INSERT INTO {table} (id, ts) VALUES (1, now()) ON CONFLICT (id) DO UPDATE SET ts = EXCLUDED.ts"
        )
        .format(table=heartbeat_table(names).ident)
        .as_string(None)
    )


def ensure_heartbeat_table(endpoint: PgEndpoint, names: MigrationNames) -> None:
    """Create the heartbeat table (both servers need it: the sink writes the target's copy)."""
    with endpoint.connect(autocommit=True) as conn:
        conn.execute(create_heartbeat_table_sql(names))


def beat(endpoint: PgEndpoint, names: MigrationNames) -> None:
    """One heartbeat by hand (Debezium does this every second once it runs)."""
    with endpoint.connect(autocommit=True) as conn:
        conn.execute(heartbeat_action_query(names))
