"""The pipeline's own tables, published beside the migrated ones: the heartbeat (end-to-end lag) and
Debezium's signal table (resync). Both exist on both servers: the sink writes their copies."""

from __future__ import annotations

from pgmigrate.core.catalog import TableRef
from pgmigrate.core.endpoints import PgEndpoint
from pgmigrate.core.naming import MigrationNames
from pgmigrate.kafka.connector_configs import signal_table
from pgmigrate.stream.heartbeat import ensure_heartbeat_table, heartbeat_table
from pgmigrate.stream.resync import ensure_signal_table


def own_tables(names: MigrationNames) -> list[TableRef]:
    return [heartbeat_table(names), signal_table(names)]


def ensure_own_tables(origin: PgEndpoint, destination: PgEndpoint, names: MigrationNames) -> None:
    for endpoint in (origin, destination):
        ensure_heartbeat_table(endpoint, names)
        ensure_signal_table(endpoint, names)
