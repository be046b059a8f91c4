"""Schema sync: read the drift between source and target, create new tables, apply the additive changes on
the target (`schema_drift` plans them), and publish what the pipeline must now carry.

Used by the monitor (`read_drift`, every run: two catalog reads, no dump) and by `pg_migration_schema_sync`.
Everything here converges on rerun: statements are IF NOT EXISTS or only planned while the difference is
there, the schema copy skips what exists, the publication is set to exactly the migration's tables.

The sink keeps `schema.evolution=none` (connector_configs): it never alters the target. Its `basic` mode would
add a new column from the Kafka record's Connect type (no default, no exact PostgreSQL type, no index) and
could not create a table with the source's keys, constraints and indexes; the sync adds the column exactly
as on the source instead. So a row using a new column stops the sink (FAILED, P0) until the column exists on
the target; the sync's `restart` step then restarts the failed task, which re-reads the uncommitted records:
nothing is lost or skipped.
"""

from __future__ import annotations

import logging
from typing import Any

from pgmigrate.core.catalog import TableRef
from pgmigrate.core.endpoints import PgEndpoint
from pgmigrate.core.params import MigrationParams
from pgmigrate.schema.drift_plan import DriftPlan
from pgmigrate.schema.schema_compare import SchemaDifference, SchemaSnapshot, compare_snapshots, read_schema
from pgmigrate.schema.schema_drift import classify, drift

log = logging.getLogger(__name__)

# No statement of the sync waits long for a lock the application or the sink holds: it fails and is retried.
LOCK_TIMEOUT = "10s"


def _scope(params: MigrationParams) -> tuple[list[str], list[TableRef] | None]:
    """The migrated schemas, and the tables when the migration names them (else: every table of the schemas,
    so a table created there later belongs to the migration)."""
    tables = [TableRef(s, n) for s, n in params.tables] or None
    return list(params.schemas), tables


def read_snapshots(
    source: PgEndpoint, target: PgEndpoint, params: MigrationParams
) -> tuple[SchemaSnapshot, SchemaSnapshot]:
    schemas, tables = _scope(params)
    with source.connect(autocommit=True) as src, target.connect(autocommit=True) as dst:
        return read_schema(src, schemas, tables), read_schema(dst, schemas, tables)


def read_drift(source: PgEndpoint, target: PgEndpoint, params: MigrationParams, phase: str) -> list[SchemaDifference]:
    """The schema differences that are drift in this phase (what the monitor alerts on)."""
    src, dst = read_snapshots(source, target, params)
    return drift(compare_snapshots(src, dst), phase)


def plan_sync(
    source: PgEndpoint, target: PgEndpoint, params: MigrationParams, phase: str, published: set[TableRef] | None = None
) -> DriftPlan:
    """The plan from the drift now. `published`: the tables in the migration's publication; a keyed table of
    the migration missing from it (created on the target by an earlier, interrupted sync) is still to be
    published and loaded, so it counts as new."""
    src, dst = read_snapshots(source, target, params)
    plan = classify(drift(compare_snapshots(src, dst), phase), src.values, dst.values)
    if published is not None:
        from pgmigrate.core.migration_tables import resolve_tables
        from pgmigrate.stream.native_replication import split_by_channel

        keyed, _ = split_by_channel(resolve_tables(source, params))
        unpublished = [t.ref for t in keyed if t.ref not in published and t.ref not in plan.new_tables]
        plan.new_tables = sorted([*plan.new_tables, *unpublished])
        plan.resync_tables = [t for t in plan.resync_tables if t not in plan.new_tables]
    return plan


def published_tables(source: PgEndpoint, publication: str) -> set[TableRef]:
    from pgmigrate.stream.publication import publication_tables

    with source.connect(autocommit=True) as conn:
        return publication_tables(conn, publication)


def create_tables(source: PgEndpoint, target: PgEndpoint, params: MigrationParams, tables: list[TableRef]) -> dict:
    """New tables on the target as `copy_schema` and `apply_post_data` make them (pre-data with the primary
    key, then indexes, constraints, triggers, foreign keys); only these tables, skipping what exists."""
    from pgmigrate.schema.post_data import apply_post_data
    from pgmigrate.schema.schema_copy import copy_pre_data

    if not tables:
        return {"created": [], "identity_columns": []}
    pre = copy_pre_data(source, target, list(params.schemas), tables, params.keep_ownership)
    post = apply_post_data(source, target, list(params.schemas), tables)
    return {
        "created": pre["created"] + post["created"],
        "identity_columns": pre.get("identity_columns", []),
        "pending_foreign_keys": post["foreign_keys"].get("pending_validation", []),
    }


def apply_additive(target: PgEndpoint, plan: DriftPlan) -> list[str]:
    """Run the additive statements on the target, each in its own transaction (CREATE INDEX CONCURRENTLY
    cannot run in one); returns them as run."""
    applied = []
    with target.with_settings(lock_timeout=LOCK_TIMEOUT).connect(autocommit=True) as conn:
        for change in plan.additive:
            for statement, text in zip(change.statements, change.statement_texts(), strict=True):
                log.info("schema sync on %s: %s", target.label, text)
                conn.execute(statement)
                applied.append(text)
    return applied


def sync_schema(source: PgEndpoint, target: PgEndpoint, params: MigrationParams, phase: str) -> dict[str, Any]:
    """Create the new tables, then apply what the drift still lists, then check: any drift left (a
    non-additive change made meanwhile) fails with the list."""
    plan = plan_sync(source, target, params, phase)
    if plan.non_additive:
        raise SchemaSyncError(
            "non-additive schema changes appeared: " + "; ".join(c.describe() for c in plan.non_additive)
        )
    tables = create_tables(source, target, params, plan.new_tables)
    plan = plan_sync(source, target, params, phase)  # the new tables' own objects are there now
    applied = apply_additive(target, plan)
    left = read_drift(source, target, params, phase)
    if left:
        raise SchemaSyncError(
            f"{len(left)} schema differences remain after the sync: "
            + "; ".join(f"{d.kind} {d.object}" for d in left[:10])
        )
    return {"applied": applied, **tables}


class SchemaSyncError(RuntimeError):
    pass
