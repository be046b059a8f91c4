"""What every migration task shares, whichever DAG it sits in: the run's params, the migration's state record,
its databases and its Kafka clients (`MigrationTaskOperator`). Each DAG's tasks add one thing on top:
`MigrationOperator` (pg_migration: params from the trigger form), `CutoverStepOperator` (pg_cutover, pg_rollback
and the runbook: the migration as pg_migration recorded it, `cutover_base`) and `ValidationOperator` (pg_validate:
one or every recorded migration).

Operators stay thin: resolve params and endpoints here, call one plain function, record state, return a small
JSON-able result for XCom.
"""

from __future__ import annotations

import logging
from functools import cached_property
from typing import Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException

from pgmigrate.control.state import MigrationStateStore
from pgmigrate.core.endpoints import PgEndpoint
from pgmigrate.core.params import CONTROL_CONN_ID, InvalidParams, MigrationParams
from pgmigrate.hooks.migration_db import MigrationDatabaseHook
from pgmigrate.kafka.topic_settings import TopicSettings


class MigrationTaskOperator(BaseOperator):
    """The one base of the migration's operators. `params_class` parses this DAG run's params."""

    ui_color = "#e8f1fb"
    params_class: Any = MigrationParams

    def __init__(
        self,
        *,
        control_conn_id: str = CONTROL_CONN_ID,
        kafka_connect_conn_id: str = "kafka_connect",
        kafka_conn_id: str = "kafka_default",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.control_conn_id = control_conn_id
        self.kafka_connect_conn_id = kafka_connect_conn_id
        self.kafka_conn_id = kafka_conn_id

    def run_params(self, context: Any) -> Any:
        """This run's params; a bad one fails the task for good (a retry cannot fix the trigger form)."""
        try:
            return self.params_class.from_dict(dict(context["params"]))
        except InvalidParams as exc:
            raise AirflowFailException(str(exc)) from exc

    @cached_property
    def _store(self) -> MigrationStateStore:
        store = MigrationStateStore(self.endpoint(self.control_conn_id))
        store.ensure_schema()
        return store

    def store(self) -> MigrationStateStore:
        return self._store

    def recorded_state(self, migration_id: str) -> dict[str, Any]:
        """The migration's state record; fails the task when pg_migration never recorded it."""
        state = self.store().get(migration_id)
        if state is None:
            raise AirflowFailException(
                f"migration {migration_id!r} has no state record: run pg_migration for it first "
                "(scripts/migration list shows the known migrations)."
            )
        return state

    def recorded_params(self, migration_id: str) -> MigrationParams:
        """The params pg_migration ran with, from the state record."""
        return MigrationParams.from_dict(self.recorded_state(migration_id)["params"])

    @staticmethod
    def endpoint(conn_id: str) -> PgEndpoint:
        return MigrationDatabaseHook(postgres_conn_id=conn_id).get_conn()

    def connect(self):
        from pgmigrate.hooks.kafka_connect import KafkaConnectHook

        return KafkaConnectHook(self.kafka_connect_conn_id).get_conn()

    def kafka_cluster(self) -> dict[str, Any]:
        """The Kafka cluster's client configuration (the whole connection: SASL/TLS too)."""
        from pgmigrate.hooks.kafka_cluster import KafkaClusterHook

        return KafkaClusterHook(self.kafka_conn_id).get_conn()

    def topic_settings(self) -> TopicSettings:
        """How Connect creates the migration's topics (the Kafka cluster connection's settings)."""
        from pgmigrate.hooks.kafka_cluster import KafkaClusterHook

        return KafkaClusterHook(self.kafka_conn_id).topic_settings()

    def record(self, params: MigrationParams, phase: str, message: str, **fields: Any) -> None:
        """Advance the migration's state record and add a timeline event, then say so in the log."""
        store = self.store()
        store.upsert(params.migration_id, phase=phase, **fields)
        store.record_event(params.migration_id, phase, message)
        logging.getLogger(self.__class__.__module__).info("state: %s -> %s (%s)", params.migration_id, phase, message)


class MigrationOperator(MigrationTaskOperator):
    """Base of the `pg_migration` tasks: the params come from this run's trigger form."""

    def migration_params(self, context: Any) -> MigrationParams:
        return MigrationParams.from_dict(dict(context["params"]))

    def state_store(self) -> MigrationStateStore:
        return self.store()
