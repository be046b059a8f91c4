"""Shared shape of the migration's deferrable sensors (the Airflow providers' pattern).

`execute()` defers to a trigger that polls in the triggerer (no worker slot held while waiting);
`execute_complete()` turns the trigger's error event into a task failure carrying its message.
With `deferrable=False` the sensor pokes in a worker instead: `poke()` calls `look()`, the same plain status
function (`pgmigrate.core.waits.WaitStatus`) its trigger calls, so a FAILED connector fails both paths alike.
Every wait reads the pipeline through the same connections (Kafka Connect, the Kafka cluster, the databases):
`MigrationSensor` holds their ids and opens them, and `wait_arguments()` is what each trigger takes from it.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow.configuration import conf
from airflow.sdk import BaseSensorOperator, PokeReturnValue
from airflow.sdk.exceptions import AirflowException, AirflowFailException
from airflow.triggers.base import BaseTrigger

from pgmigrate.core.endpoints import PgEndpoint
from pgmigrate.core.params import MigrationParams
from pgmigrate.core.waits import WaitStatus
from pgmigrate.hooks.kafka_cluster import KafkaClusterHook
from pgmigrate.hooks.kafka_connect import KafkaConnectHook
from pgmigrate.hooks.migration_db import MigrationDatabaseHook
from pgmigrate.kafka.connect_client import ConnectClient


class MigrationSensor(BaseSensorOperator):
    ui_color = "#fdf2e2"

    def __init__(
        self,
        *,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        poll_interval: float = 5.0,
        kafka_connect_conn_id: str = "kafka_connect",
        kafka_conn_id: str = "kafka_default",
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("timeout", 3600)
        kwargs.setdefault("poke_interval", poll_interval)
        super().__init__(**kwargs)
        self.deferrable = deferrable
        self.poll_interval = poll_interval
        self.kafka_connect_conn_id = kafka_connect_conn_id
        self.kafka_conn_id = kafka_conn_id

    def migration_params(self, context: Any) -> MigrationParams:
        return MigrationParams.from_dict(dict(context["params"]))

    def wait_arguments(self) -> dict[str, Any]:
        """What every trigger takes from its sensor: the Connect connection, the poll interval, the timeout."""
        return {
            "kafka_connect_conn_id": self.kafka_connect_conn_id,
            "poll_interval": self.poll_interval,
            "timeout": float(self.timeout),
        }

    def connect_client(self) -> ConnectClient:
        return KafkaConnectHook(kafka_connect_conn_id=self.kafka_connect_conn_id).get_conn()

    def kafka_cluster(self) -> dict[str, Any]:
        """The Kafka cluster's client configuration (the whole connection: SASL/TLS too)."""
        return KafkaClusterHook(self.kafka_conn_id).get_conn()

    @staticmethod
    def endpoint(conn_id: str) -> PgEndpoint:
        return MigrationDatabaseHook(conn_id).get_conn()

    def build_trigger(self, context: Any) -> BaseTrigger:
        raise NotImplementedError

    def look(self, context: Any) -> WaitStatus:
        """One look at what the sensor waits for (the function its trigger calls too)."""
        raise NotImplementedError

    def on_done(self, context: Any, result: dict[str, Any]) -> None:
        """Called once when the wait is over, on either path (e.g. to record the reading)."""

    def poke(self, context: Any) -> PokeReturnValue:
        status = self.look(context)
        self.log.info("%s", status.message)
        if status.fatal:
            raise AirflowFailException(status.message)
        if status.done:
            self.on_done(context, status.result)
        return PokeReturnValue(is_done=status.done, xcom_value=status.result or status.message)

    def execute(self, context: Any) -> Any:
        if not self.deferrable:
            return super().execute(context)
        self.defer(
            trigger=self.build_trigger(context),
            method_name="execute_complete",
            # Backstop only: each trigger enforces `timeout` itself and reports the last state it saw.
            timeout=timedelta(seconds=float(self.timeout) + 120),
        )

    def execute_complete(self, context: Any, event: dict[str, Any]) -> Any:
        if event.get("status") != "success" and event.get("fatal"):
            # e.g. a FAILED connector: retrying the wait cannot help until someone fixes the cause.
            raise AirflowFailException(event.get("message", "the trigger reported a fatal error"))
        if event.get("status") != "success":
            raise AirflowException(event.get("message", "the trigger reported an error without a message"))
        self.log.info("%s", event.get("message"))
        self.on_done(context, event.get("result") or {})
        return event.get("result") or event.get("message")
