"""Fence the side clients leave: no write reaches it after the drain point unnoticed.

PgBouncer's PAUSE holds only the clients that come through PgBouncer. A cron job, a JDBC app or a
person in psql connected straight to the server is neither held nor switched, and after the forward
pipeline stops its writes would never reach the other side. So:
- before the pause, `direct_sessions` lists the client sessions that come neither through one of the
  PgBouncers (matched exactly by PgBouncer's `remote_pid`) nor from the platform itself (its role with
  the application names of pgmigrate and Debezium); the checklist refuses while there are any, unless
  the operator allows them;
- inside the pause, `apply_fence` makes the application roles' new transactions read-only in that
  database (`ALTER ROLE … IN DATABASE … SET default_transaction_read_only = on`) and `end_sessions`
  ends their direct sessions; the fence stays on the side clients left (lifted by rollback or on abort);
- right before the switch, `writes_after` reads the origin's slot (the capture has stopped, the slot
  holds what came since) for any transaction that committed after the drain point: the switch is
  refused, naming the tables. This is the guarantee; the read-only fence only makes it rare.

An application role that already has `default_transaction_read_only` set in that database is left
alone (its setting is its own); a superuser role can be fenced only by a superuser (it is listed, and
the slot check still covers it). Needs CREATEROLE (PostgreSQL 15: to change another role's settings) and
pg_signal_backend (to end its sessions); preflight checks both.
"""

from __future__ import annotations

import logging
import struct
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass

import psycopg
from psycopg import sql

from pgmigrate.core.catalog import CONTROL_SCHEMA, TableRef

log = logging.getLogger(__name__)

# Sessions the platform itself opens: ours (PgEndpoint's application_name, pg_dump's PGAPPNAME), Debezium's
# source connector (its JDBC connections and the reselector), and the JDBC sink (connection.url names it).
PLATFORM_APPLICATIONS = ("pgmigrate", "Debezium General", "Debezium Streaming")
PLATFORM_APPLICATION_PREFIX = "pgmigrate"


@dataclass(frozen=True)
class Session:
    pid: int
    user: str
    application_name: str
    client_addr: str
    state: str
    backend_start: str

    def describe(self) -> str:
        app = self.application_name or "(no application_name)"
        return f"pid {self.pid} {self.user} {app!r} from {self.client_addr} ({self.state}, since {self.backend_start})"

    def as_dict(self) -> dict:
        return asdict(self)


def is_platform_session(user: str, application_name: str, platform_user: str) -> bool:
    """The platform's own sessions: its role, with one of its application names."""
    return user == platform_user and (
        application_name in PLATFORM_APPLICATIONS or application_name.startswith(PLATFORM_APPLICATION_PREFIX)
    )


def direct_sessions(conn: psycopg.Connection, pgbouncer_pids: Iterable[int], platform_user: str) -> list[Session]:
    """Client sessions on this connection's database that come neither through a PgBouncer (its server
    connections' `remote_pid`) nor from the platform."""
    rows = conn.execute(
        "SELECT pid, usename, coalesce(application_name, ''), coalesce(client_addr::text, 'local socket'), "
        "coalesce(state, ''), backend_start::text FROM pg_stat_activity "
        "WHERE datname = current_database() AND backend_type = 'client backend' AND pid <> pg_backend_pid() "
        "AND NOT (pid = ANY(%s)) ORDER BY pid",
        (list(pgbouncer_pids),),
    ).fetchall()
    return [Session(*row) for row in rows if not is_platform_session(row[1], row[2], platform_user)]


@dataclass(frozen=True)
class FencePlan:
    """What the fence changes in one database: the roles made read-only, and those it cannot fence."""

    database: str
    roles: tuple[str, ...]
    unfenceable: tuple[str, ...] = ()  # superusers, when the platform role is not one

    def as_dict(self) -> dict:
        return {"database": self.database, "roles": list(self.roles), "unfenceable": list(self.unfenceable)}

    @classmethod
    def from_dict(cls, data: dict | None) -> FencePlan | None:
        if not data:
            return None
        return cls(data["database"], tuple(data.get("roles") or ()), tuple(data.get("unfenceable") or ()))


def plan_fence(conn: psycopg.Connection, tables: Iterable[TableRef]) -> FencePlan:
    """The application roles of this database: roles that can log in and may write a migrated table,
    other than the platform's own role (`current_user`) and roles with a read-only default of their own."""
    names = [t.ident.as_string(conn) for t in tables if t.schema != CONTROL_SCHEMA]
    rows = conn.execute(
        """
        SELECT r.rolname, r.rolsuper FROM pg_roles r
        WHERE r.rolcanlogin AND r.rolname <> current_user
          AND EXISTS (SELECT 1 FROM unnest(%s::text[]) AS t(name)
                      WHERE has_table_privilege(r.oid, t.name::regclass, 'INSERT, UPDATE, DELETE, TRUNCATE'))
          AND NOT EXISTS (SELECT 1 FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase
                          WHERE d.datname = current_database() AND s.setrole = r.oid
                            AND EXISTS (SELECT 1 FROM unnest(s.setconfig) c
                                        WHERE c LIKE 'default\\_transaction\\_read\\_only=%%'))
        ORDER BY 1
        """,
        (names,),
    ).fetchall()
    superuser = conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone()[0]
    database = conn.execute("SELECT current_database()").fetchone()[0]
    roles = tuple(name for name, is_super in rows if superuser or not is_super)
    unfenceable = tuple(name for name, is_super in rows if is_super and not superuser)
    return FencePlan(database, roles, unfenceable)


def _set_read_only(conn: psycopg.Connection, plan: FencePlan, on: bool) -> list[str]:
    done = []
    for role in plan.roles:
        statement = (
            "ALTER ROLE {} IN DATABASE {} SET default_transaction_read_only = on"
            if on
            else "ALTER ROLE {} IN DATABASE {} RESET default_transaction_read_only"
        )
        conn.execute(sql.SQL(statement).format(sql.Identifier(role), sql.Identifier(plan.database)))
        done.append(role)
    return done


def apply_fence(conn: psycopg.Connection, plan: FencePlan) -> list[str]:
    """New transactions of the application roles in this database are read-only from now on."""
    fenced = _set_read_only(conn, plan, on=True)
    if fenced:
        log.info("fence: %s read-only in database %s", ", ".join(fenced), plan.database)
    return fenced


def lift_fence(conn: psycopg.Connection, plan: FencePlan) -> list[str]:
    """Undo `apply_fence` (rerun-safe: resetting an unset setting is a no-op)."""
    lifted = _set_read_only(conn, plan, on=False)
    if lifted:
        log.info("fence lifted: %s may write in database %s again", ", ".join(lifted), plan.database)
    return lifted


def lift_fences(fences: dict, endpoints: dict) -> dict[str, list[str]]:
    """Lift the fences a migration left (`state.fences`: side -> FencePlan dict) on their servers (teardown)."""
    lifted = {}
    for side, record in fences.items():
        plan = FencePlan.from_dict(record)
        if plan and plan.roles and side in endpoints:
            with endpoints[side].connect(autocommit=True) as conn:
                lifted[side] = lift_fence(conn, plan)
    return lifted


def end_sessions(conn: psycopg.Connection, sessions: Iterable[Session]) -> tuple[list[int], list[str]]:
    """pg_terminate_backend each session: (ended pids, problems). A session it may not end (a superuser's,
    without being one) is a problem, not an error: the slot check still covers its writes."""
    ended, problems = [], []
    for s in sessions:
        try:
            if conn.execute("SELECT pg_terminate_backend(%s)", (s.pid,)).fetchone()[0]:
                ended.append(s.pid)
        except psycopg.errors.InsufficientPrivilege as exc:
            problems.append(f"{s.describe()}: {str(exc).strip()}")
    if ended:
        log.info("fence: ended %d direct sessions (%s)", len(ended), ", ".join(map(str, ended)))
    return ended, problems


# --- writes after the drain point: the origin's slot -------------------------------------------------


def lsn_to_int(lsn: str) -> int:
    high, _, low = lsn.partition("/")
    return (int(high, 16) << 32) + int(low, 16)


def _cstring(data: bytes, at: int) -> tuple[str, int]:
    end = data.index(b"\0", at)
    return data[at:end].decode(errors="replace"), end + 1


def changes_committed_after(messages: Iterable[bytes], point_lsn: int, ignore_schema: str = CONTROL_SCHEMA) -> dict:
    """From pgoutput messages (protocol 1, as `pg_logical_slot_peek_binary_changes` returns them): per table,
    the row changes of transactions that committed after `point_lsn` (the Begin message carries the commit
    LSN, so a transaction open across the point counts). Tables of `ignore_schema` (the platform's own
    heartbeat and signal tables) do not count."""
    relations: dict[int, str] = {}
    counts: dict[str, int] = {}
    after = False
    for data in messages:
        kind = data[:1]
        if kind == b"B":
            (final_lsn,) = struct.unpack_from(">Q", data, 1)
            after = final_lsn > point_lsn
        elif kind == b"R":
            (relid,) = struct.unpack_from(">I", data, 1)
            namespace, at = _cstring(data, 5)
            name, _ = _cstring(data, at)
            relations[relid] = "" if namespace == ignore_schema else TableRef(namespace or "pg_catalog", name).qualified
        elif kind in (b"I", b"U", b"D") and after:
            (relid,) = struct.unpack_from(">I", data, 1)
            table = relations.get(relid, f"relation {relid}")
            if table:
                counts[table] = counts.get(table, 0) + 1
        elif kind == b"T" and after:
            (count,) = struct.unpack_from(">I", data, 1)
            for i in range(count):
                (relid,) = struct.unpack_from(">I", data, 6 + 4 * i)
                table = relations.get(relid, f"relation {relid}")
                if table:
                    counts[table] = counts.get(table, 0) + 1
    return counts


def wait_slot_released(conn: psycopg.Connection, slot: str, timeout: float, poll: float = 0.02) -> str:
    """Wait until no process streams from `slot` (its consumer was told to stop); past `timeout`, end the
    walsender that still holds it. Returns how it was released ("idle", "released", "terminated")."""
    deadline = time.monotonic() + timeout
    first = True
    while True:
        row = conn.execute("SELECT active_pid FROM pg_replication_slots WHERE slot_name = %s", (slot,)).fetchone()
        if row is None:
            raise LookupError(f"replication slot {slot} does not exist")
        if row[0] is None:
            return "idle" if first else "released"
        if time.monotonic() >= deadline:
            conn.execute("SELECT pg_terminate_backend(%s)", (row[0],))
            log.info("slot %s still held by walsender %d after %.2fs: ended it", slot, row[0], timeout)
            deadline = time.monotonic() + 2.0
            timeout = 2.0
        first = False
        time.sleep(poll)


def writes_after(conn: psycopg.Connection, slot: str, publication: str, point_lsn: str) -> dict[str, int]:
    """Per table, the changes the slot holds from transactions committed after `point_lsn` (empty: none).
    Peeks (consumes nothing); the slot must not be streaming (`wait_slot_released`)."""
    rows = conn.execute(
        "SELECT data FROM pg_logical_slot_peek_binary_changes(%s, NULL, NULL, 'proto_version', '1', "
        "'publication_names', %s)",
        (slot, publication),
    ).fetchall()
    return changes_committed_after((bytes(r[0]) for r in rows), lsn_to_int(point_lsn))
