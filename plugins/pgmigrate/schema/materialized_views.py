"""Materialized views: refreshed on the target, their contents compared with the source's.

The schema copy creates them without data (pg_dump's MATERIALIZED VIEW DATA entry is a REFRESH, and the target's
tables are empty at that point), so until refreshed a target view raises "has not been populated". They are
refreshed once the load is complete (`apply_post_data`, so that reads and validation work while streaming) and
again before the cutover's pause (pg_cutover's `refresh_materialized_views`), so that the clients find contents as
fresh as the source's data when they arrive. A REFRESH costs what the view's query costs: never inside the pause.

A view holds its query's result as of its last REFRESH, so the source's may be older than its tables: the
comparison names such a view as `stale` (contents differ although both are populated) rather than failing, and
fails only on what the clients would notice as an error, a view populated on the source but not on the target.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass

import psycopg
from psycopg import sql

from pgmigrate.core.catalog import CONTROL_SCHEMA, TableRef
from pgmigrate.core.endpoints import PgEndpoint
from pgmigrate.validate.checksums import set_canonical_session

log = logging.getLogger(__name__)

# In creation order: pg_restore creates a view after every view it reads, so oid order refreshes dependencies first.
_VIEWS_SQL = """
SELECT n.nspname, c.relname, c.relispopulated
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'm' AND n.nspname = ANY(%s) AND n.nspname <> %s
ORDER BY c.oid
"""


@dataclass(frozen=True)
class ViewComparison:
    view: str
    status: str  # identical | stale (populated on both, contents differ) | unpopulated | missing
    source_rows: int | None
    target_rows: int | None

    @property
    def ok(self) -> bool:
        return self.status in ("identical", "stale")

    def describe(self) -> str:
        detail = {
            "identical": f"identical ({self.source_rows} rows)",
            "stale": f"contents differ ({self.source_rows} rows on the source, {self.target_rows} on the target): the "
            "source's was last refreshed before later changes of its tables, the target's is refreshed from current "
            "data (after the load and before the cutover's pause)",
            "unpopulated": "populated on the source but not on the target: run REFRESH MATERIALIZED VIEW on the target "
            "(pg_cutover's refresh_materialized_views does it before the pause)",
            "missing": "absent on the target: copy the schema again (scripts/migration schema-sync)",
        }[self.status]
        return f"{self.view}: {detail}"

    def as_dict(self) -> dict:
        return {**asdict(self), "ok": self.ok}


def list_materialized_views(conn: psycopg.Connection, schemas: Iterable[str]) -> list[tuple[TableRef, bool]]:
    """(view, populated) for every materialized view of `schemas`, dependencies first."""
    rows = conn.execute(_VIEWS_SQL, (list(schemas), CONTROL_SCHEMA)).fetchall()
    return [(TableRef(schema, name), populated) for schema, name, populated in rows]


def refresh_materialized_views(source: PgEndpoint, target: PgEndpoint, schemas: Iterable[str]) -> list[str]:
    """REFRESH on the target every view that is populated on the source (one left WITH NO DATA there stays so).
    Returns the refreshed views. Safe to rerun: a REFRESH replaces the contents."""
    schemas = list(schemas)
    with source.connect(autocommit=True) as conn:
        populated = {ref for ref, is_populated in list_materialized_views(conn, schemas) if is_populated}
    refreshed = []
    with target.connect(autocommit=True) as conn:
        views = [ref for ref, _ in list_materialized_views(conn, schemas) if ref in populated]
        for number, ref in enumerate(views, 1):
            started = time.monotonic()
            conn.execute(sql.SQL("REFRESH MATERIALIZED VIEW {}").format(ref.ident))
            log.info(
                "materialized views: refreshed %s on the target (%d/%d) in %.1fs",
                ref,
                number,
                len(views),
                time.monotonic() - started,
            )
            refreshed.append(str(ref))
    return refreshed


def _fingerprint(conn: psycopg.Connection, ref: TableRef) -> tuple[int, str]:
    query = sql.SQL("SELECT count(*), md5(coalesce(string_agg(v::text, '|' ORDER BY v::text), '')) FROM {} v")
    return conn.execute(query.format(ref.ident)).fetchone()


def compare_materialized_views(source: PgEndpoint, target: PgEndpoint, schemas: Iterable[str]) -> list[ViewComparison]:
    """Every view populated on the source, compared by row count and the md5 of its rows' text in a fixed order."""
    schemas = list(schemas)
    results = []
    with source.connect(autocommit=True) as src, target.connect(autocommit=True) as tgt:
        for conn in (src, tgt):  # one text form for both sides
            set_canonical_session(conn)
        on_target = dict(list_materialized_views(tgt, schemas))
        for ref, populated in list_materialized_views(src, schemas):
            if not populated:
                continue
            if ref not in on_target:
                results.append(ViewComparison(str(ref), "missing", None, None))
                continue
            source_rows, source_md5 = _fingerprint(src, ref)
            if not on_target[ref]:
                results.append(ViewComparison(str(ref), "unpopulated", source_rows, None))
                continue
            target_rows, target_md5 = _fingerprint(tgt, ref)
            status = "identical" if (source_rows, source_md5) == (target_rows, target_md5) else "stale"
            results.append(ViewComparison(str(ref), status, source_rows, target_rows))
    return results
