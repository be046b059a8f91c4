"""Least privilege: what the source and target roles of a migration must be allowed, checked by preflight.

Neither role needs to be a superuser (except for keyless tables on PostgreSQL 15, see below). What the
pipeline does on each server decides the list:

Source role
- LOGIN and REPLICATION: Debezium's slot, the `copy` method's CREATE_REPLICATION_SLOT and the native
  channel's subscription all stream over replication connections.
- CREATE on the database: the `pgmigrate` schema (heartbeat and signal tables, which the role then owns)
  and the publications.
- ownership of every table it publishes: PostgreSQL 15 lets only a table's owner add it to a publication
  (membership in the owning role counts), unless the publication already exists as the migration wants it.
- SELECT on every table of the migrated schemas and their partitions (pg_dump locks them, the snapshot reads
  them) and on their sequences (`sequences_snapshot` reads their values for the cutover).

Target role
- CREATE on the database: the migrated schemas pg_restore creates and the `pgmigrate` schema.
- USAGE and CREATE on the migrated schemas that already exist (PostgreSQL 15's `public` grants CREATE only
  to the database owner).
- SET on `session_replication_role`: the JDBC sink connects with `session_replication_role=replica` so the
  target's triggers and FK checks do not fire for replicated rows (`post_data` says why).
- ownership of target tables that already exist (emptied and altered by the load).
- keyless tables only: CREATE SUBSCRIPTION (`preflight_rules.check_subscription_rights`; a superuser on 15).

Every rule returns one failure per missing privilege, each with the exact statements (identifiers through
`sql.Identifier`), which `PreflightReport.failure_message` also gathers into one block per server.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import psycopg
from psycopg import sql

from pgmigrate.catalog import CONTROL_SCHEMA, TableInfo, TableRef
from pgmigrate.preflight_rules import CheckResult, _n


def statement(template: str, *idents: sql.Composable) -> str:
    """One GRANT/ALTER as SQL text for the operator to run (identifiers always quoted)."""
    return sql.SQL(template).format(*idents).as_string(None)


@dataclass(frozen=True)
class SourceRoleFacts:
    role: str
    dbname: str
    superuser: bool
    replication: bool
    create_on_db: bool
    unreadable: list[TableRef] = field(default_factory=list)  # tables and partitions without SELECT
    unreadable_sequences: list[TableRef] = field(default_factory=list)
    not_owned: list[TableRef] = field(default_factory=list)  # tables to publish the role does not own
    publication_exists: bool = False
    control_schema_blocked: bool = False  # `pgmigrate` exists and the role lacks USAGE or CREATE on it


@dataclass(frozen=True)
class TargetRoleFacts:
    role: str
    dbname: str
    superuser: bool
    create_on_db: bool
    schemas_blocked: list[str] = field(default_factory=list)  # existing schemas without USAGE or CREATE
    can_set_replication_role: bool = True
    server_version_num: int = 150000
    not_owned: list[TableRef] = field(default_factory=list)  # existing target tables owned by another role


def _failure(name: str, problem: str, statements: list[str], run_on: str, note: str = "") -> CheckResult:
    fix = "\n".join(statements) + (f"\n{note}" if note else "")
    return CheckResult(name, ok=False, problem=problem, fix=fix, statements=statements, run_on=run_on)


def check_source_privileges(f: SourceRoleFacts) -> list[CheckResult]:
    """`source_role` passes as one result, or fails once per missing privilege."""
    if f.superuser:
        return [CheckResult("source_role", ok=True, detail=f"role {f.role} is a superuser")]
    role, run_on = sql.Identifier(f.role), f"source database {f.dbname!r}"
    failures = []
    if not f.replication:
        failures.append(_failure(
            "source_role.replication",
            f"role {f.role} lacks the REPLICATION attribute (the replication slots need it)",
            [statement("ALTER ROLE {} REPLICATION;", role)], run_on,
        ))  # fmt: skip
    if not f.create_on_db:
        failures.append(_failure(
            "source_role.create",
            f"role {f.role} has no CREATE on database {f.dbname} (the {CONTROL_SCHEMA} schema with the heartbeat "
            "and signal tables, and the publications, are created by it)",
            [statement("GRANT CREATE ON DATABASE {} TO {};", sql.Identifier(f.dbname), role)], run_on,
        ))  # fmt: skip
    if f.control_schema_blocked:
        failures.append(_failure(
            "source_role.control_schema",
            f"role {f.role} lacks USAGE or CREATE on the existing schema {CONTROL_SCHEMA}",
            [statement("GRANT USAGE, CREATE ON SCHEMA {} TO {};", sql.Identifier(CONTROL_SCHEMA), role)], run_on,
        ))  # fmt: skip
    if f.unreadable or f.unreadable_sequences:
        listed = [t.qualified for t in (*f.unreadable, *f.unreadable_sequences)]
        failures.append(_failure(
            "source_role.select",
            f"role {f.role} cannot read {_n(len(listed), 'relation')}: {', '.join(listed)}",
            [statement("GRANT SELECT ON {} TO {};", t.ident, role) for t in f.unreadable]
            + [statement("GRANT SELECT ON SEQUENCE {} TO {};", s.ident, role) for s in f.unreadable_sequences],
            run_on,
        ))  # fmt: skip
    if f.not_owned and not f.publication_exists:
        failures.append(_failure(
            "source_role.publish",
            f"role {f.role} does not own {_n(len(f.not_owned), 'table')} to publish (PostgreSQL 15 lets only the "
            f"owner add a table to a publication): {', '.join(t.qualified for t in f.not_owned)}",
            [statement("ALTER TABLE {} OWNER TO {};", t.ident, role) for t in f.not_owned], run_on,
            note="(or GRANT the tables' owning role TO the migration role, or run the source connection as a "
            "superuser)",
        ))  # fmt: skip
    if failures:
        return failures
    return [CheckResult("source_role", ok=True, detail=f"role {f.role} has REPLICATION, CREATE, SELECT and owns the "
                        "tables to publish")]  # fmt: skip


def check_target_privileges(f: TargetRoleFacts) -> list[CheckResult]:
    """`target_role` passes as one result, or fails once per missing privilege."""
    if f.superuser:
        return [CheckResult("target_role", ok=True, detail=f"role {f.role} is a superuser")]
    role, run_on = sql.Identifier(f.role), f"target database {f.dbname!r}"
    failures = []
    if not f.create_on_db:
        failures.append(_failure(
            "target_role.create",
            f"role {f.role} has no CREATE on database {f.dbname} (the migrated schemas and {CONTROL_SCHEMA} are "
            "created by it)",
            [statement("GRANT CREATE ON DATABASE {} TO {};", sql.Identifier(f.dbname), role)], run_on,
        ))  # fmt: skip
    if f.schemas_blocked:
        failures.append(_failure(
            "target_role.schema",
            f"role {f.role} lacks USAGE or CREATE on the existing target schemas {', '.join(f.schemas_blocked)}",
            [statement("GRANT USAGE, CREATE ON SCHEMA {} TO {};", sql.Identifier(s), role) for s in f.schemas_blocked],
            run_on,
        ))  # fmt: skip
    if not f.can_set_replication_role:
        parameter = f.server_version_num >= 150000
        failures.append(_failure(
            "target_role.session_replication_role",
            f"role {f.role} may not SET session_replication_role, which the JDBC sink sets to replica so that "
            "triggers and FK checks do not fire for replicated rows",
            [statement("GRANT SET ON PARAMETER session_replication_role TO {};", role)]
            if parameter else [statement("ALTER ROLE {} SUPERUSER;", role)],
            run_on,
        ))  # fmt: skip
    if f.not_owned:
        failures.append(_failure(
            "target_role.owner",
            f"role {f.role} does not own {_n(len(f.not_owned), 'existing target table')} it must empty and alter: "
            f"{', '.join(t.qualified for t in f.not_owned)}",
            [statement("ALTER TABLE {} OWNER TO {};", t.ident, role) for t in f.not_owned], run_on,
        ))  # fmt: skip
    if failures:
        return failures
    return [CheckResult("target_role", ok=True, detail=f"role {f.role} can create the schema and run the sink")]


def read_source_role_facts(
    conn: psycopg.Connection, schema_tables: list[TableInfo], selected: list[TableInfo], publication_exists: bool
) -> SourceRoleFacts:
    """`schema_tables`: every table of the migrated schemas (pg_dump locks them all); `selected`: published."""
    name, dbname, superuser, replication, create_on_db = conn.execute(
        "SELECT rolname, current_database(), rolsuper, rolreplication, "
        "has_database_privilege(current_database(), 'CREATE') FROM pg_roles WHERE rolname = current_user"
    ).fetchone()
    readable = [t.ref for t in schema_tables] + [p for t in schema_tables for p in t.partitions]
    rows = conn.execute(
        "SELECT n.nspname, c.relname, pg_has_role(c.relowner, 'USAGE'), has_table_privilege(c.oid, 'SELECT') "
        "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "JOIN unnest(%s::text[], %s::text[]) w(s, r) ON w.s = n.nspname AND w.r = c.relname",
        ([r.schema for r in readable], [r.name for r in readable]),
    ).fetchall()
    published = {t.ref for t in selected}
    sequences = conn.execute(
        "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE c.relkind = 'S' AND n.nspname = ANY(%s) AND n.nspname <> %s "
        # CASE: the planner may test the privilege before relkind, and has_sequence_privilege errors on a table.
        "AND CASE WHEN c.relkind = 'S' THEN NOT (has_sequence_privilege(c.oid, 'SELECT') "
        "OR has_sequence_privilege(c.oid, 'USAGE')) END ORDER BY 1, 2",
        (sorted({t.ref.schema for t in schema_tables}), CONTROL_SCHEMA),
    ).fetchall()
    control = conn.execute(
        "SELECT has_schema_privilege(oid, 'USAGE') AND has_schema_privilege(oid, 'CREATE') "
        "FROM pg_namespace WHERE nspname = %s",
        (CONTROL_SCHEMA,),
    ).fetchone()
    return SourceRoleFacts(
        role=name,
        dbname=dbname,
        superuser=superuser,
        replication=replication,
        create_on_db=create_on_db,
        unreadable=sorted(TableRef(s, r) for s, r, _, reads in rows if not reads),
        unreadable_sequences=[TableRef(s, r) for s, r in sequences],
        not_owned=sorted(TableRef(s, r) for s, r, owns, _ in rows if not owns and TableRef(s, r) in published),
        publication_exists=publication_exists,
        control_schema_blocked=control is not None and not control[0],
    )


def read_target_role_facts(conn: psycopg.Connection, schemas: list[str], tables: list[TableRef]) -> TargetRoleFacts:
    name, dbname, superuser, create_on_db, version = conn.execute(
        "SELECT rolname, current_database(), rolsuper, has_database_privilege(current_database(), 'CREATE'), "
        "current_setting('server_version_num')::int FROM pg_roles WHERE rolname = current_user"
    ).fetchone()
    blocked = [
        r[0]
        for r in conn.execute(
            "SELECT nspname FROM pg_namespace WHERE nspname = ANY(%s) "
            "AND NOT (has_schema_privilege(oid, 'USAGE') AND has_schema_privilege(oid, 'CREATE')) ORDER BY 1",
            ([*dict.fromkeys([*schemas, CONTROL_SCHEMA])],),
        )
    ]
    can_set = superuser
    if not superuser and version >= 150000:
        can_set = conn.execute("SELECT has_parameter_privilege('session_replication_role', 'SET')").fetchone()[0]
    rows = conn.execute(
        "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "JOIN unnest(%s::text[], %s::text[]) w(s, r) ON w.s = n.nspname AND w.r = c.relname "
        "WHERE NOT pg_has_role(c.relowner, 'USAGE')",
        ([t.schema for t in tables], [t.name for t in tables]),
    ).fetchall()
    return TargetRoleFacts(
        role=name,
        dbname=dbname,
        superuser=superuser,
        create_on_db=create_on_db,
        schemas_blocked=blocked,
        can_set_replication_role=can_set,
        server_version_num=version,
        not_owned=sorted(TableRef(s, r) for s, r in rows),
    )
