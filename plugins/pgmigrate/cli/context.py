"""What every subcommand of `scripts/migration` needs: where the stack is (`DEFAULTS`), the migration's state
record and its source and target, and following a DAG run it triggered. Kept apart from the commands so both kinds
(`direct_commands`, `dag_commands`) share one copy.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

from pgmigrate.control.state import MigrationStateStore
from pgmigrate.core.endpoints import PgEndpoint
from pgmigrate.kafka.connect_client import ConnectClient

# The local stack's defaults; override with --control-dsn style flags for another environment.
DEFAULTS = {
    "control": PgEndpoint("127.0.0.1", 5435, "migration_control", "postgres", "postgres"),
    "airflow_url": os.environ.get("PGMIGRATE_AIRFLOW_URL", "http://127.0.0.1:8080"),
}


def connect_client() -> ConnectClient:
    """Kafka Connect's REST client from the `kafka_connect` Airflow connection, credentials included: the client
    the DAGs use (short timeouts: on-call wants an answer)."""
    from airflow.models.connection import Connection

    from pgmigrate.hooks.kafka_connect import client_from_connection

    return client_from_connection(Connection.get_connection_from_secrets("kafka_connect"), timeout=5, retries=1)


def kafka_cluster() -> dict[str, Any]:
    """The Kafka cluster's client configuration from the `kafka_default` Airflow connection (SASL/TLS too)."""
    from airflow.models.connection import Connection

    from pgmigrate.kafka.client_config import client_config_from_extra

    return client_config_from_extra(
        Connection.get_connection_from_secrets("kafka_default").extra_dejson, "kafka_default"
    )


def endpoint_from_params(params: dict[str, Any], key: str, default_conn_id: str) -> PgEndpoint:
    """The migration's source/target, from the Airflow connection named in its params. The CLI runs
    beside Airflow (scripts/migration sets up its environment) and reads connections like
    `airflow connections get` does, so it works while the API server is down."""
    from airflow.models.connection import Connection

    conn_id = params.get(key) or default_conn_id
    return PgEndpoint.from_airflow_connection(Connection.get_connection_from_secrets(conn_id))


def migration_endpoints(state: dict[str, Any]) -> tuple[PgEndpoint, PgEndpoint]:
    """The migration's (source, target), from the connections its params name."""
    source = endpoint_from_params(state["params"], "source_conn_id", "migration_source")
    target = endpoint_from_params(state["params"], "target_conn_id", "migration_target")
    return source, target


def state_or_complain(store: MigrationStateStore, migration_id: str, ensure_schema: bool = False) -> dict | None:
    """The migration's state record, or None after telling the user on stderr that there is none."""
    if ensure_schema:
        store.ensure_schema()
    state = store.get(migration_id)
    if state is None:
        print(f"no migration {migration_id!r} in the control database (scripts/migration list)", file=sys.stderr)
    return state


def follow_dag(dag_id: str, conf: dict[str, Any]) -> int:
    """Trigger `dag_id`, print each task's state as it changes, exit 0 on success."""
    from pgmigrate.cli.airflow_api import AirflowApiClient

    api = AirflowApiClient(
        DEFAULTS["airflow_url"],
        os.environ.get("PGMIGRATE_AIRFLOW_USER", "admin"),
        os.environ.get("PGMIGRATE_AIRFLOW_PASSWORD", "admin"),
    )
    run_id = api.trigger_dag(dag_id, conf=conf)
    print(f"triggered {dag_id} run {run_id}; follow it in the UI: {DEFAULTS['airflow_url']}/dags/{dag_id}")
    seen: dict[str, str] = {}
    while True:
        for ti in api.task_instances(dag_id, run_id):
            state = ti["state"] or "scheduled"
            if seen.get(ti["task_id"]) != state:
                seen[ti["task_id"]] = state
                print(f"  {time.strftime('%H:%M:%S')} {ti['task_id']}: {state}", flush=True)
        run = api.get_dag_run(dag_id, run_id)
        if run["state"] in ("success", "failed"):
            print(f"{dag_id} {run['state']}")
            return 0 if run["state"] == "success" else 1
        time.sleep(1)
