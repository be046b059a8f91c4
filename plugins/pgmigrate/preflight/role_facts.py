"""The facts the least-privilege rules (`privileges`) judge, read from the source and target as the migration's
own roles: their attributes, what they may do on the migrated relations, sequences and schemas, and what the
fence needs. Apart from the rules so that those stay pure and are unit-tested on hand-built facts.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.rows import dict_row

from pgmigrate.core.catalog import CONTROL_SCHEMA, TableInfo, TableRef, read_relations
from pgmigrate.cutover.fence import plan_fence
from pgmigrate.preflight.privileges import FenceRights, SourceRoleFacts, TargetRoleFacts

# Named as the fields both sides' facts share (`SourceRoleFacts`, `TargetRoleFacts`).
_ROLE_SQL = """
SELECT rolname AS role, current_database() AS dbname, rolsuper AS superuser, rolreplication AS replication,
       has_database_privilege(current_database(), 'CREATE') AS create_on_db,
       current_setting('server_version_num')::int AS server_version_num
FROM pg_roles WHERE rolname = current_user
"""


def _role_attributes(conn: psycopg.Connection) -> dict[str, Any]:
    """What the connection's role is and may do in the database, the same on both sides."""
    with conn.cursor(row_factory=dict_row) as cur:
        attributes = cur.execute(_ROLE_SQL).fetchone()
    # SET on session_replication_role: a superuser's, and grantable from PostgreSQL 15.
    can_set = attributes["superuser"]
    if not can_set and attributes["server_version_num"] >= 150000:
        can_set = conn.execute("SELECT has_parameter_privilege('session_replication_role', 'SET')").fetchone()[0]
    return {**attributes, "can_set_replication_role": can_set}


def _sequence_gaps(conn: psycopg.Connection, schemas: list[str]) -> tuple[list[TableRef], list[TableRef]]:
    """The sequences of `schemas` this role may not SELECT, and those it may not UPDATE."""
    rows = conn.execute(
        "SELECT n.nspname, c.relname, "
        # CASE: the planner may test the privilege before relkind, and has_sequence_privilege errors on a table.
        "CASE WHEN c.relkind = 'S' THEN has_sequence_privilege(c.oid, 'SELECT') END, "
        "CASE WHEN c.relkind = 'S' THEN has_sequence_privilege(c.oid, 'UPDATE') END "
        "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE c.relkind = 'S' AND n.nspname = ANY(%s) AND n.nspname <> %s ORDER BY 1, 2",
        (sorted(set(schemas)), CONTROL_SCHEMA),
    ).fetchall()
    return (
        [TableRef(s, r) for s, r, reads, _ in rows if not reads],
        [TableRef(s, r) for s, r, _, updates in rows if not updates],
    )


def _read_fence_rights(conn: psycopg.Connection, application_roles: list[str]) -> FenceRights:
    stats, signal, createrole = conn.execute(
        "SELECT pg_has_role('pg_read_all_stats', 'USAGE'), pg_has_role('pg_signal_backend', 'USAGE'), rolcreaterole "
        "FROM pg_roles WHERE rolname = current_user"
    ).fetchone()
    return FenceRights(stats, signal, createrole, sorted(application_roles))


def read_source_role_facts(
    conn: psycopg.Connection,
    schemas: list[str],
    schema_tables: list[TableInfo],
    selected: list[TableInfo],
    publication_exists: bool,
) -> SourceRoleFacts:
    """`schema_tables`: every table of the migrated `schemas` (pg_dump locks them all); `selected`: published."""
    attributes = _role_attributes(conn)
    readable = [t.ref for t in schema_tables] + [p for t in schema_tables for p in t.partitions]
    rows = read_relations(
        conn,
        "SELECT n.nspname, c.relname, pg_has_role(c.relowner, 'USAGE'), has_table_privilege(c.oid, 'SELECT') "
        "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace {relations}",
        readable,
    )
    published = {t.ref for t in selected}
    unreadable_sequences, sequences_not_updatable = _sequence_gaps(conn, schemas)
    control = conn.execute(
        "SELECT has_schema_privilege(oid, 'USAGE') AND has_schema_privilege(oid, 'CREATE') "
        "FROM pg_namespace WHERE nspname = %s",
        (CONTROL_SCHEMA,),
    ).fetchone()
    return SourceRoleFacts(
        **attributes,
        unreadable=sorted(TableRef(s, r) for s, r, _, reads in rows if not reads),
        unreadable_sequences=unreadable_sequences,
        sequences_not_updatable=sequences_not_updatable,
        not_owned=sorted(TableRef(s, r) for s, r, owns, _ in rows if not owns and TableRef(s, r) in published),
        publication_exists=publication_exists,
        control_schema_blocked=control is not None and not control[0],
        # The roles the cutover's fence will make read-only: computed exactly as the fence does.
        fence=_read_fence_rights(conn, list(plan_fence(conn, [t.ref for t in selected]).roles)),
    )


def read_target_role_facts(
    conn: psycopg.Connection, schemas: list[str], tables: list[TableRef], source_application_roles: list[str]
) -> TargetRoleFacts:
    """`source_application_roles`: the source's (`SourceRoleFacts.fence`): after the cutover the same
    applications write the target, and a rollback fences them there. The target's tables rarely exist at
    preflight, so its own `plan_fence` only adds roles that may already write the tables that do."""
    attributes = _role_attributes(conn)
    blocked = [
        r[0]
        for r in conn.execute(
            "SELECT nspname FROM pg_namespace WHERE nspname = ANY(%s) "
            "AND NOT (has_schema_privilege(oid, 'USAGE') AND has_schema_privilege(oid, 'CREATE')) ORDER BY 1",
            ([*dict.fromkeys([*schemas, CONTROL_SCHEMA])],),
        )
    ]
    rows = read_relations(
        conn,
        "SELECT n.nspname, c.relname, pg_has_role(c.relowner, 'USAGE') FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace {relations}",
        tables,
    )
    # plan_fence names the tables, which needs USAGE on their schema: a blocked schema is reported above.
    existing = [TableRef(s, r) for s, r, _ in rows if s not in blocked]
    writers = {*source_application_roles, *(plan_fence(conn, existing).roles if existing else ())}
    unreadable_sequences, sequences_not_updatable = _sequence_gaps(conn, schemas)
    return TargetRoleFacts(
        **attributes,
        schemas_blocked=blocked,
        not_owned=sorted(TableRef(s, r) for s, r, owns in rows if not owns),
        unreadable_sequences=unreadable_sequences,
        sequences_not_updatable=sequences_not_updatable,
        fence=_read_fence_rights(conn, sorted(writers)),
    )
