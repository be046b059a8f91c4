"""`validate`: per table, row count and checksum equal on source and target while writes continue."""

from __future__ import annotations

from typing import Any

from pgmigrate.migration_tables import resolve_tables
from pgmigrate.operators.base import MigrationOperator


class ValidateMigrationOperator(MigrationOperator):
    def __init__(self, *, attempts: int = 8, pause_seconds: float = 5.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.attempts = attempts
        self.pause_seconds = pause_seconds

    def execute(self, context: Any) -> list[dict]:
        from pgmigrate.validation import ValidationFailed, compare_tables, format_results, results_as_dicts

        params = self.migration_params(context)
        source, target = self.endpoint(params.source_conn_id), self.endpoint(params.target_conn_id)
        tables = resolve_tables(source, params)
        self.log.info("validate: comparing %d tables (count + checksum), up to %d attempts", len(tables), self.attempts)
        results = compare_tables(source, target, tables, attempts=self.attempts, pause_seconds=self.pause_seconds)
        self.log.info("validation results:\n%s", format_results(results))
        summary = results_as_dicts(results)
        store = self.state_store()
        store.upsert(params.migration_id, last_validation={"tables": summary})
        if not all(r.ok for r in results):
            error = ValidationFailed(results)
            store.upsert(params.migration_id, last_error=str(error))
            store.record_event(params.migration_id, "validation_failed", str(error))
            raise error
        self.record(params, "streaming", f"validation passed for {len(results)} tables; streaming until cutover")
        return summary
