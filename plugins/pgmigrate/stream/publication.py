"""The source side of the pipeline: the migration's publication (exactly the selected tables plus
the heartbeat). The replication slot is created and dropped by `pgmigrate.load.replication_slot`.

pgoutput decodes each WAL record with the catalog as of that record, so the publication must exist
before the slot is created; otherwise the first changes after the slot's consistent point are not
published. Both the `copy` and the `debezium` paths call `ensure_publication` before any slot exists.
"""

from __future__ import annotations

import logging

from psycopg import sql

from pgmigrate.core.catalog import TableRef
from pgmigrate.core.endpoints import PgEndpoint

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
