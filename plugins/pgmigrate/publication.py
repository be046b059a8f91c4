"""The source side of the pipeline: the migration's publication (exactly the selected tables plus
the heartbeat) and its replication slot.

pgoutput decodes each WAL record with the catalog as of that record, so the publication must exist
before the slot is created; otherwise the first changes after the slot's consistent point are not
published. Both the `copy` and the `debezium` paths call `ensure_publication` before any slot exists.
"""

from __future__ import annotations

import logging
import time

from psycopg import sql

from pgmigrate.catalog import TableRef
from pgmigrate.endpoints import PgEndpoint

log = logging.getLogger(__name__)


def publication_tables(conn, publication: str) -> set[TableRef]:
    rows = conn.execute(
        "SELECT pr.prrelid::regclass::text, n.nspname, c.relname FROM pg_publication p "
        "JOIN pg_publication_rel pr ON pr.prpubid = p.oid JOIN pg_class c ON c.oid = pr.prrelid "
        "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE p.pubname = %s",
        (publication,),
    ).fetchall()
    return {TableRef(schema, name) for _, schema, name in rows}


def ensure_publication(source: PgEndpoint, publication: str, tables: list[TableRef]) -> str:
    """Create the publication for exactly `tables`, or bring an existing one to that set. Partitioned
    tables publish through their root, so the sink sees one table as on the source."""
    wanted = sql.SQL(", ").join(t.ident for t in tables)
    with source.connect(autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_publication WHERE pubname = %s", (publication,)).fetchone()
        if not exists:
            conn.execute(
                sql.SQL("CREATE PUBLICATION {pub} FOR TABLE {tables} WITH (publish_via_partition_root = true)").format(
                    pub=sql.Identifier(publication), tables=wanted
                )
            )
            log.info("created publication %s for %d tables", publication, len(tables))
            return "created"
        if publication_tables(conn, publication) != set(tables):
            conn.execute(
                sql.SQL("ALTER PUBLICATION {pub} SET TABLE {tables}").format(
                    pub=sql.Identifier(publication), tables=wanted
                )
            )
            log.info("publication %s now covers exactly %d tables", publication, len(tables))
            return "altered"
        return "unchanged"


def drop_publication(source: PgEndpoint, publication: str) -> None:
    with source.connect(autocommit=True) as conn:
        conn.execute(sql.SQL("DROP PUBLICATION IF EXISTS {pub}").format(pub=sql.Identifier(publication)))


def slot_exists(source: PgEndpoint, slot: str) -> bool:
    with source.connect(autocommit=True) as conn:
        return conn.execute("SELECT 1 FROM pg_replication_slots WHERE slot_name = %s", (slot,)).fetchone() is not None


def drop_slot(source: PgEndpoint, slot: str) -> bool:
    """Drop the slot if it exists, ending a walsender that still holds it. Returns whether it existed."""
    with source.connect(autocommit=True) as conn:
        row = conn.execute("SELECT active_pid FROM pg_replication_slots WHERE slot_name = %s", (slot,)).fetchone()
        if row is None:
            return False
        if row[0] is not None:
            conn.execute("SELECT pg_terminate_backend(%s)", (row[0],))
        for _ in range(50):
            try:
                conn.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
                log.info("dropped replication slot %s", slot)
                return True
            except Exception as exc:  # still active for a moment after terminate
                if "is active" not in str(exc):
                    raise
                time.sleep(0.2)
        raise RuntimeError(f"replication slot {slot} is still in use; stop the source connector and retry")
