"""`preflight`: every check a migration needs, each failure with its exact fix, before anything is made."""

from __future__ import annotations

from typing import Any

from airflow.sdk.exceptions import AirflowFailException

from pgmigrate.hooks.kafka_connect import KafkaConnectHook
from pgmigrate.operators.base import MigrationOperator


class PreflightOperator(MigrationOperator):
    def __init__(self, *, kafka_connect_conn_id: str = "kafka_connect", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.kafka_connect_conn_id = kafka_connect_conn_id

    def execute(self, context: Any) -> dict:
        from pgmigrate.preflight import run_preflight

        try:
            params = self.migration_params(context)
            source, target = self.endpoint(params.source_conn_id), self.endpoint(params.target_conn_id)
        except (ValueError, LookupError) as exc:
            # A bad param or a missing connection: retrying cannot help.
            raise AirflowFailException(str(exc)) from exc
        store = self.state_store()
        existing = store.get(params.migration_id)
        connectors_in_use = set(KafkaConnectHook(self.kafka_connect_conn_id).list_connectors())
        report = run_preflight(
            source,
            target,
            params,
            connect_names_in_use=connectors_in_use,
            fix_no_pk=params.replica_identity_full_for_no_pk,
            owned_by_this_migration=existing is not None,
        )
        self.log.info("preflight results:\n%s", report.summary())
        try:
            report.raise_if_failed()
        except Exception as exc:
            # A failed check needs a person, not a retry: fail now, with every problem and its fix.
            raise AirflowFailException(str(exc)) from exc
        # A migration id reused after teardown starts afresh (its params are this run's, not the old ones).
        if existing is None or existing["phase"] in ("failed", "preflight_passed", "torn_down"):
            store.upsert(params.migration_id, phase="preflight_passed", params=dict(context["params"]))
        store.record_event(params.migration_id, "preflight_passed", "all preflight checks passed")
        return report.to_dict()
