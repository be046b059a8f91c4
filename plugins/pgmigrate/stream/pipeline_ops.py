"""The runbook's operations on a running pipeline: halt (pause, keep the slot), restart (resume, restart
failed tasks, recreate a connector whose config went wrong) and the configs a direction should have.

Every operation acts on one direction's pair of connectors (`names` or `names.reversed()`), keeps the
slot (its name is fixed by the migration_id, so a recreated connector reuses it: never a second slot)
and is safe to rerun.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from pgmigrate.core.catalog import TableRef
from pgmigrate.core.endpoints import PgEndpoint
from pgmigrate.core.naming import MigrationNames
from pgmigrate.kafka.connect_client import ConnectClient
from pgmigrate.kafka.connect_secrets import ConnectorSecrets
from pgmigrate.kafka.connector_configs import build_sink_config, build_source_config
from pgmigrate.kafka.connector_status import FAILED, assess_connector
from pgmigrate.kafka.key_partitioning import KeyHashPartitioning
from pgmigrate.kafka.topic_settings import TopicSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Direction:
    """One pipeline: forward (source -> target) or, after cutover, reverse (target -> source)."""

    names: MigrationNames
    origin: PgEndpoint
    destination: PgEndpoint

    @property
    def connectors(self) -> tuple[str, str]:
        return self.names.source_connector, self.names.sink_connector


def desired_configs(
    direction: Direction,
    tables: list[TableRef],
    schemas: list[str],
    snapshot_method: str,
    secrets: ConnectorSecrets,
    dead_letter: bool = False,
    generated_columns: Sequence[tuple[TableRef, str]] = (),
    *,
    topics: TopicSettings,
    partitioning: KeyHashPartitioning | None = None,
) -> dict[str, dict[str, str]]:
    """What the two connectors' configs must be, built the same way as when they were deployed
    (`dead_letter`: the forward sink's DLQ; the reverse pipeline is always fail-fast; `partitioning`: the forward
    change topics' spread, the reverse pipeline keeps one partition)."""
    names, origin, destination = direction.names, direction.origin, direction.destination
    refs = secrets.refs(names, origin, destination)
    # The reverse pipeline never snapshots; the forward one keeps its method (the offsets say it is done).
    method = "copy" if names.reverse else snapshot_method
    spread = None if names.reverse else partitioning
    return {
        names.source_connector: build_source_config(
            names, origin, tables, method, refs, generated_columns, topics=topics, partitioning=spread
        ),
        names.sink_connector: build_sink_config(
            names,
            destination,
            schemas,
            refs,
            dead_letter=dead_letter and not names.reverse,
            topics=topics,
            partitioning=spread,
        ),
    }


def halt(connect: ConnectClient, direction: Direction) -> list[str]:
    """Pause both connectors: tasks stop polling, offsets and the slot stay, `restart` resumes exactly there."""
    paused = []
    for name in direction.connectors:
        if connect.exists(name):
            connect.pause(name)
            paused.append(name)
    return paused


def config_differs(actual: dict[str, str], desired: dict[str, str]) -> list[str]:
    """Keys whose value differs (Connect adds `name`; it is not compared)."""
    keys = (set(actual) | set(desired)) - {"name"}
    return sorted(k for k in keys if actual.get(k) != desired.get(k))


def _await_restart(connect: ConnectClient, name: str, timeout: float = 30.0, poll: float = 0.5) -> None:
    """Connect restarts tasks asynchronously: a status read right after the request can still show the old
    FAILED, which `wait_for_state` would take for a new failure. Wait until it no longer does (a task that
    fails again afterwards is then reported by `wait_for_state`)."""
    import time

    deadline = time.monotonic() + timeout
    while assess_connector(name, connect.get_status(name))[0] == FAILED and time.monotonic() < deadline:
        time.sleep(poll)


def restart(connect: ConnectClient, desired: dict[str, dict[str, str]], timeout: float = 120.0) -> list[str]:
    """Bring each connector to RUNNING: recreate it if missing or its config differs from `desired`,
    resume it if paused or stopped, restart it and its failed tasks if FAILED. Returns what was done."""
    actions = []
    for name, config in desired.items():
        if not connect.exists(name):
            connect.create_or_update(name, config)
            actions.append(f"{name}: recreated (it was missing)")
            continue
        differing = config_differs(connect.get_config(name), config)
        if differing:
            connect.create_or_update(name, config)
            actions.append(f"{name}: config rewritten ({', '.join(differing)} differed)")
        status = connect.get_status(name)
        state = (status.get("connector") or {}).get("state")
        if differing and state not in ("PAUSED", "STOPPED"):
            # A config rewrite restarts the connector: a status read right after it can show RUNNING
            # while the connector comes back in its target state (PAUSED after a halt). Resuming a
            # running connector does nothing, so resume rather than trust that read.
            connect.resume(name)
        elif state in ("PAUSED", "STOPPED"):
            connect.resume(name)
            actions.append(f"{name}: resumed from {state}")
        elif assess_connector(name, status)[0] == FAILED:
            connect.restart(name, include_tasks=True, only_failed=True)
            _await_restart(connect, name)
            actions.append(f"{name}: restarted its failed tasks")
    for name in desired:
        connect.wait_for_state(name, "RUNNING", timeout=timeout)
    log.info("restart: %s; all RUNNING", "; ".join(actions) or "nothing to do")
    return actions
