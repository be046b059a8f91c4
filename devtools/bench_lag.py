"""Exact apply lag for `make bench`, measured on the target as rows arrive.

The JDBC sink writes with `session_replication_role=replica`, so only triggers set `ENABLE ALWAYS`
fire for replicated rows. Two such triggers record `clock_timestamp()` minus the time the row got on
the source, into `bench.lag_sample` on the target:
- the migration's heartbeat row (`ts` = `now()` of the heartbeat write on the source, every second);
- `pgbench_history` rows (`mtime` = the pgbench transaction's `CURRENT_TIMESTAMP`, one per transaction;
  a `timestamp` without zone, so pgbench runs with `PGTZ=UTC` and the trigger reads the clock in UTC).
Source and target run on one machine, so both sides read the same clock. The time measured ends when
the sink writes the row (its transaction commits right after the batch).
"""

from __future__ import annotations

from psycopg import sql

from pgmigrate.core.catalog import TableRef
from pgmigrate.core.endpoints import PgEndpoint
from pgmigrate.core.naming import MigrationNames
from pgmigrate.stream.heartbeat import heartbeat_table

BENCH_SCHEMA = "bench"
SAMPLES = TableRef(BENCH_SCHEMA, "lag_sample")
HISTORY = TableRef("public", "pgbench_history")
TRIGGER = "bench_lag"
# The time zone pgbench's sessions run in (PGTZ), so pgbench_history.mtime reads as UTC.
PGBENCH_TIMEZONE = "UTC"


def install_lag_triggers(target: PgEndpoint, names: MigrationNames) -> None:
    """Create the samples table and both ALWAYS triggers on the target (idempotent)."""
    heartbeat_fn = TableRef(BENCH_SCHEMA, "heartbeat_lag")
    history_fn = TableRef(BENCH_SCHEMA, "history_lag")
    statements = [
        sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(BENCH_SCHEMA)),
        sql.SQL(
            "CREATE TABLE IF NOT EXISTS {} (kind text NOT NULL, lag_ms double precision NOT NULL, "
            "arrived_at timestamptz NOT NULL DEFAULT clock_timestamp())"
        ).format(SAMPLES.ident),
        sql.SQL(
            "CREATE OR REPLACE FUNCTION {fn}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            "INSERT INTO {samples} (kind, lag_ms) "
            "VALUES ('heartbeat', 1000 * extract(epoch FROM clock_timestamp() - NEW.ts)); "
            "RETURN NEW; END $$"
        ).format(fn=heartbeat_fn.ident, samples=SAMPLES.ident),
        sql.SQL(
            "CREATE OR REPLACE FUNCTION {fn}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            "INSERT INTO {samples} (kind, lag_ms) "
            "VALUES ('history', 1000 * extract(epoch FROM (clock_timestamp() AT TIME ZONE {tz}) - NEW.mtime)); "
            "RETURN NEW; END $$"
        ).format(fn=history_fn.ident, samples=SAMPLES.ident, tz=sql.Literal(PGBENCH_TIMEZONE)),
    ]
    for table, fn, events in (
        (heartbeat_table(names), heartbeat_fn, sql.SQL("INSERT OR UPDATE")),
        (HISTORY, history_fn, sql.SQL("INSERT")),
    ):
        statements += [
            sql.SQL("DROP TRIGGER IF EXISTS {trigger} ON {table}").format(
                trigger=sql.Identifier(TRIGGER), table=table.ident
            ),
            sql.SQL("CREATE TRIGGER {trigger} AFTER {events} ON {table} FOR EACH ROW EXECUTE FUNCTION {fn}()").format(
                trigger=sql.Identifier(TRIGGER), events=events, table=table.ident, fn=fn.ident
            ),
            # Only ALWAYS triggers fire in the sink's session (session_replication_role=replica).
            sql.SQL("ALTER TABLE {table} ENABLE ALWAYS TRIGGER {trigger}").format(
                table=table.ident, trigger=sql.Identifier(TRIGGER)
            ),
        ]
    with target.connect(autocommit=True) as conn, conn.transaction():
        for statement in statements:
            conn.execute(statement)


def clear_samples(target: PgEndpoint) -> None:
    with target.connect(autocommit=True) as conn:
        conn.execute(sql.SQL("TRUNCATE {}").format(SAMPLES.ident))


def read_samples(target: PgEndpoint, kind: str) -> list[float]:
    """Lag samples of one kind (`heartbeat` or `history`), in seconds."""
    with target.connect(autocommit=True) as conn:
        rows = conn.execute(
            sql.SQL("SELECT lag_ms / 1000.0 FROM {} WHERE kind = %s").format(SAMPLES.ident), (kind,)
        ).fetchall()
    return [row[0] for row in rows]


def count_rows(endpoint: PgEndpoint, table: TableRef) -> int:
    with endpoint.connect(autocommit=True) as conn:
        return conn.execute(sql.SQL("SELECT count(*) FROM {}").format(table.ident)).fetchone()[0]
