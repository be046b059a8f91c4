"""`copy_schema` (pre-data: types, tables, PKs) and `apply_post_data` (indexes, FKs, triggers)."""

from __future__ import annotations

from typing import Any

from pgmigrate.heartbeat import ensure_heartbeat_table
from pgmigrate.migration_tables import resolve_tables
from pgmigrate.operators.base import MigrationOperator


class CopySchemaOperator(MigrationOperator):
    """Creates the selected tables on the target, with primary keys but no secondary indexes, so the
    load is fast; ALWAYS identities are created BY DEFAULT (recorded; cutover restores them)."""

    def execute(self, context: Any) -> dict:
        from pgmigrate.cutover.sequences import sequences_snapshot
        from pgmigrate.schema_copy import copy_pre_data

        params = self.migration_params(context)
        source, target = self.endpoint(params.source_conn_id), self.endpoint(params.target_conn_id)
        tables = resolve_tables(source, params)
        self.log.info("copy_schema: %d tables from %s to %s", len(tables), source.label, target.label)
        result = copy_pre_data(source, target, list(params.schemas), [t.ref for t in tables], params.keep_ownership)
        ensure_heartbeat_table(target, params.names)
        sequences = sequences_snapshot(source, list(params.schemas))
        self.record(
            params,
            "schema_copied",
            f"pre-data schema of {len(tables)} tables on the target",
            identity_columns=result.get("identity_columns", []),
            sequences=sequences,
            tables=[t.ref.qualified for t in tables],
        )
        return {k: v for k, v in result.items() if k != "statements"}


class ApplyPostDataOperator(MigrationOperator):
    """Secondary indexes, foreign keys, triggers and other constraints, after the initial load; then the large
    objects are copied with their oids (`large_objects`) and the materialized views refreshed from the loaded data
    (`materialized_views`). Safe to rerun: a rerun copies again only the large objects that changed."""

    def execute(self, context: Any) -> dict:
        from pgmigrate.large_objects import copy_large_objects
        from pgmigrate.materialized_views import refresh_materialized_views
        from pgmigrate.post_data import apply_post_data

        params = self.migration_params(context)
        source, target = self.endpoint(params.source_conn_id), self.endpoint(params.target_conn_id)
        tables = resolve_tables(source, params)
        result = apply_post_data(source, target, list(params.schemas), [t.ref for t in tables])
        large_objects = copy_large_objects(source, target)
        refreshed = refresh_materialized_views(source, target, params.schemas)
        self.record(params, "post_data_applied", "indexes, constraints and triggers applied on the target"
                    + (f"; {large_objects['large_objects']} large objects copied" if large_objects["large_objects"]
                       else "")
                    + (f"; {len(refreshed)} materialized views refreshed" if refreshed else ""))  # fmt: skip
        return {**{k: v for k, v in result.items() if k != "statements"}, "large_objects": large_objects,
                "materialized_views": refreshed}  # fmt: skip
