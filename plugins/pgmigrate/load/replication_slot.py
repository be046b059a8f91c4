"""The replication slot of a migration: created with an exported snapshot, and the one way to drop it.

The `copy` method needs the slot and its snapshot born together: `CREATE_REPLICATION_SLOT … (SNAPSHOT
'export')` over a replication connection gives the consistent point where streaming starts and a snapshot
of the database exactly at that point, which the copy workers import (`snapshot_copy.py`). The snapshot
lives only while that connection stays open and idle, hence `ExportedSnapshot` owns it.

Dropping a slot is not a plain `pg_drop_replication_slot`: a walsender may still stream from it (an
earlier attempt, the source connector) or still be exporting a snapshot for it. `drop_slot_if_exists`
ends those first; every caller (the snapshot task's rerun, native replication, teardown, tests) goes
through it so they all drop slots the same way.
"""

from __future__ import annotations

import logging
import re
import time

import psycopg
from psycopg import sql

from pgmigrate.core.endpoints import PIPELINE_SESSION_SETTINGS, PgEndpoint, session_options

log = logging.getLogger(__name__)

_SLOT_RE = re.compile(r"^[a-z0-9_]{1,63}$")


def validate_slot_name(slot: str) -> str:
    if not isinstance(slot, str) or not _SLOT_RE.match(slot):
        raise ValueError(f"replication slot name {slot!r} is invalid: use 1-63 characters from [a-z0-9_].")
    return slot


def _snapshot_app_name(slot: str) -> str:
    """application_name of the exporting connection, so a rerun can find one an earlier attempt left behind."""
    return f"pgmigrate_snapshot_{slot}"[:63]


class ExportedSnapshot:
    """Creates `slot` and holds its exported snapshot while the `with` block runs.

    The snapshot lives only as long as the replication connection stays open and runs no other
    command, so this object owns that connection and keeps it idle; the slot survives `__exit__`.
    """

    def __init__(self, endpoint: PgEndpoint, slot: str) -> None:
        self.endpoint = endpoint
        self.slot = validate_slot_name(slot)
        self.snapshot_name = ""
        self.consistent_lsn = ""
        self._conn: psycopg.Connection | None = None

    def __enter__(self) -> ExportedSnapshot:
        # TCP keepalives: the connection sits idle for the whole copy and must not be dropped by a firewall.
        # The exported snapshot lives as long as this session stays idle: the source's own session timeouts are off.
        conninfo = self.endpoint.conninfo(
            replication="database",
            application_name=_snapshot_app_name(self.slot),
            keepalives=1,
            keepalives_idle=30,
            options=session_options((*PIPELINE_SESSION_SETTINGS, *self.endpoint.settings)),
        )
        self._conn = psycopg.connect(conninfo, autocommit=True)
        log.info(
            "creating replication slot %s on %s (waits for transactions open on the source to end)",
            self.slot,
            self.endpoint.label,
        )
        try:
            query = sql.SQL("CREATE_REPLICATION_SLOT {slot} LOGICAL pgoutput (SNAPSHOT 'export')").format(
                slot=sql.Identifier(self.slot)
            )
            _, self.consistent_lsn, self.snapshot_name, _ = self._conn.execute(query).fetchone()
        except BaseException:
            self.close()
            raise
        log.info(
            "created replication slot %s on %s: consistent point %s, exported snapshot %s",
            self.slot,
            self.endpoint.label,
            self.consistent_lsn,
            self.snapshot_name,
        )
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def drop_slot_if_exists(endpoint: PgEndpoint, slot: str, wait_seconds: float = 10.0) -> bool:
    """Drop `slot` if it exists, ending a walsender that still streams from it (an earlier attempt, or
    the source connector) and any connection still exporting a snapshot for it. Returns whether it existed."""
    validate_slot_name(slot)
    with endpoint.connect(autocommit=True) as conn:
        stale = conn.execute(
            "SELECT pid, pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE backend_type = 'walsender' AND application_name = %s",
            (_snapshot_app_name(slot),),
        ).fetchall()
        for pid, _ in stale:
            log.warning("terminated walsender %s still exporting a snapshot for slot %s", pid, slot)
        deadline = time.monotonic() + wait_seconds
        while True:
            row = conn.execute(
                "SELECT active_pid, database, confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = %s",
                (slot,),
            ).fetchone()
            if row is None:
                log.info("replication slot %s does not exist on %s: nothing to drop", slot, endpoint.label)
                return False
            active_pid, database, lsn = row
            if active_pid is None:
                try:
                    conn.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
                except psycopg.errors.ObjectInUse:
                    pass  # a walsender acquired it between our read and the drop: terminate it below
                else:
                    log.info("dropped replication slot %s (database %s, confirmed up to %s)", slot, database, lsn)
                    return True
            else:
                conn.execute("SELECT pg_terminate_backend(%s, 5000)", (active_pid,))
                log.warning("terminated walsender %s that was streaming from slot %s", active_pid, slot)
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"replication slot {slot} is still in use after {wait_seconds:.0f}s: stop whatever streams from "
                    "it (the migration's source connector?) and rerun the task."
                )
            time.sleep(0.2)
