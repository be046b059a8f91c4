"""What every migration task shares: its params, its databases and the state record.

Operators stay thin: resolve params and endpoints here, call one plain function, record state,
return a small JSON-able result for XCom.
"""

from __future__ import annotations

import logging
from typing import Any

from airflow.sdk import BaseOperator

from pgmigrate.control.state import MigrationStateStore
from pgmigrate.core.endpoints import PgEndpoint
from pgmigrate.core.params import MigrationParams
from pgmigrate.hooks.migration_db import MigrationDatabaseHook

CONTROL_CONN_ID = "migration_control"


class MigrationOperator(BaseOperator):
    """Base of the `pg_migration` tasks. Params come from the DAG run (`context["params"]`)."""

    ui_color = "#e8f1fb"

    def __init__(self, control_conn_id: str = CONTROL_CONN_ID, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.control_conn_id = control_conn_id

    def migration_params(self, context: Any) -> MigrationParams:
        return MigrationParams.from_dict(dict(context["params"]))

    @staticmethod
    def endpoint(conn_id: str) -> PgEndpoint:
        return MigrationDatabaseHook(postgres_conn_id=conn_id).get_conn()

    def state_store(self) -> MigrationStateStore:
        store = MigrationStateStore(self.endpoint(self.control_conn_id))
        store.ensure_schema()
        return store

    def record(self, params: MigrationParams, phase: str, message: str, **fields: Any) -> None:
        """Advance the migration's state record and add a timeline event, then say so in the log."""
        store = self.state_store()
        store.upsert(params.migration_id, phase=phase, **fields)
        store.record_event(params.migration_id, phase, message)
        logging.getLogger(self.__class__.__module__).info("state: %s -> %s (%s)", params.migration_id, phase, message)
