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
- keyless tables only: CREATE SUBSCRIPTION (`rules.check_subscription_rights`; a superuser on 15).

The cutover and the rollback (`pgmigrate.cutover`) need more, checked here too so that a least-privilege
migration is refused at preflight rather than failing with client writes paused:
- the source role: SET on `session_replication_role` (the reverse JDBC sink writes into the source as a
  replica), SELECT and UPDATE on the migrated schemas' sequences (both syncs read `last_value` and
  `is_called` from the relation, which USAGE does not allow; the rollback's `setval` needs UPDATE);
- the target role: REPLICATION (the cutover creates the reverse logical slots on the target, the rollback
  peeks them with `pg_logical_slot_peek_binary_changes`), SELECT and UPDATE on target sequences that already
  exist (those it creates it owns);
- both, on the side clients leave (source at cutover, target at rollback), for the fence (`cutover.fence`):
  pg_read_all_stats (without it pg_stat_activity hides other roles' sessions, so the checklist would not
  see direct sessions), and, only when application roles may write a migrated table (`fence.plan_fence`),
  pg_signal_backend (to end their direct sessions) and CREATEROLE (PostgreSQL 15 lets only a CREATEROLE
  role change another role's settings: `ALTER ROLE … IN DATABASE … SET default_transaction_read_only`).
  The target's application roles are the source's (they follow the switch), plus any that may already
  write the target's tables.

Every rule returns one failure per missing privilege, each with the exact statements (identifiers through
`sql.Identifier`), which `PreflightReport.failure_message` also gathers into one block per server. The rules
are pure (facts in, results out); `role_facts` reads the facts from the servers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from psycopg import sql

from pgmigrate.core.catalog import CONTROL_SCHEMA, TableRef
from pgmigrate.preflight.rules import CheckResult, plural


def statement(template: str, *idents: sql.Composable) -> str:
    """One GRANT/ALTER as SQL text for the operator to run (identifiers always quoted)."""
    return sql.SQL(template).format(*idents).as_string(None)


@dataclass(frozen=True)
class FenceRights:
    """What the fence needs on the side clients leave: the source at cutover, the target at rollback."""

    reads_all_stats: bool = True  # pg_read_all_stats: other roles' sessions are visible in pg_stat_activity
    signal_backend: bool = True  # pg_signal_backend: may end other roles' sessions
    createrole: bool = True  # PostgreSQL 15: may change another (non-superuser) role's settings
    application_roles: list[str] = field(default_factory=list)  # the roles the fence makes read-only there


@dataclass(frozen=True)
class SourceRoleFacts:
    role: str
    dbname: str
    superuser: bool
    replication: bool
    create_on_db: bool
    unreadable: list[TableRef] = field(default_factory=list)  # tables and partitions without SELECT
    unreadable_sequences: list[TableRef] = field(default_factory=list)  # without SELECT (USAGE is not enough)
    sequences_not_updatable: list[TableRef] = field(default_factory=list)  # without UPDATE (rollback's setval)
    not_owned: list[TableRef] = field(default_factory=list)  # tables to publish the role does not own
    publication_exists: bool = False
    control_schema_blocked: bool = False  # `pgmigrate` exists and the role lacks USAGE or CREATE on it
    can_set_replication_role: bool = True  # the reverse sink's session_replication_role=replica
    server_version_num: int = 150000
    fence: FenceRights = field(default_factory=FenceRights)


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
    replication: bool = True  # the reverse slots
    unreadable_sequences: list[TableRef] = field(default_factory=list)  # existing target sequences without SELECT
    sequences_not_updatable: list[TableRef] = field(default_factory=list)  # ... without UPDATE (cutover's setval)
    fence: FenceRights = field(default_factory=FenceRights)


# Either side's facts: the judging both sides share (`_judge`) reads only what the two have in common.
Facts = TypeVar("Facts", SourceRoleFacts, TargetRoleFacts)


def _failure(name: str, problem: str, statements: list[str], run_on: str, note: str = "") -> CheckResult:
    fix = "\n".join(statements) + (f"\n{note}" if note else "")
    return CheckResult(name, ok=False, problem=problem, fix=fix, statements=statements, run_on=run_on)


def _listed(refs: list[TableRef]) -> str:
    return ", ".join(t.qualified for t in refs)


def _on_each(template: str, refs: list[TableRef], role: str) -> list[str]:
    """One statement per relation, e.g. a GRANT on each sequence to `role`."""
    return [statement(template, t.ident, sql.Identifier(role)) for t in refs]


def _no_schema_rights(name: str, role: str, which: str, schemas: list[str], run_on: str) -> CheckResult:
    """USAGE and CREATE on existing schemas: the role creates its objects there. `which`: how they are named."""
    return _failure(
        name,
        f"role {role} lacks USAGE or CREATE on the existing {which} {', '.join(schemas)}",
        [
            statement("GRANT USAGE, CREATE ON SCHEMA {} TO {};", sql.Identifier(s), sql.Identifier(role))
            for s in schemas
        ],
        run_on,
    )


def _no_replication(name: str, role: str, why: str, run_on: str) -> CheckResult:
    return _failure(
        name,
        f"role {role} lacks the REPLICATION attribute{why}",
        [statement("ALTER ROLE {} REPLICATION;", sql.Identifier(role))],
        run_on,
    )


def _no_create_on_database(name: str, role: str, dbname: str, created: str, run_on: str) -> CheckResult:
    """`created`: what the role creates in the database, which CREATE on it allows."""
    return _failure(
        name,
        f"role {role} has no CREATE on database {dbname} ({created} are created by it)",
        [statement("GRANT CREATE ON DATABASE {} TO {};", sql.Identifier(dbname), sql.Identifier(role))],
        run_on,
    )


def _missing_on_relations(
    name: str, role: str, problem: str, template: str, refs: list[TableRef], run_on: str, note: str = ""
) -> CheckResult:
    """A privilege missing on each of `refs`: "role … {problem}: {the relations}", one `template` statement each."""
    return _failure(name, f"role {role} {problem}: {_listed(refs)}", _on_each(template, refs, role), run_on, note)


def _replication_role_failure(name: str, role: str, version: int, why: str, run_on: str) -> CheckResult:
    """SET on session_replication_role: grantable from PostgreSQL 15, a superuser's before."""
    ident = sql.Identifier(role)
    return _failure(
        name,
        f"role {role} may not SET session_replication_role, which {why}",
        [statement("GRANT SET ON PARAMETER session_replication_role TO {};", ident)]
        if version >= 150000
        else [statement("ALTER ROLE {} SUPERUSER;", ident)],
        run_on,
    )


def _fence_failures(
    prefix: str, role: str, dbname: str, f: FenceRights, step: str, who: str, version: int, run_on: str
) -> list[CheckResult]:
    """The fence's privileges on one side. `step`: which step fences this side; `who`: why its application
    roles are these. pg_read_all_stats is needed even with no application role: the checklist refuses any
    direct session, and pg_stat_activity hides other roles' sessions (NULL backend_type) without it."""
    ident, failures = sql.Identifier(role), []
    if not f.reads_all_stats:
        failures.append(
            _failure(
                f"{prefix}.read_all_stats",
                f"role {role} is not a member of pg_read_all_stats, so pg_stat_activity hides other roles' sessions "
                f"from it: before {step} the checklist would not see client sessions that bypass PgBouncer, and the "
                "fence could not end them",
                [statement("GRANT pg_read_all_stats TO {};", ident)],
                run_on,
            )
        )
    if not f.application_roles:
        return failures
    roles = ", ".join(f.application_roles)
    if not f.signal_backend:
        failures.append(
            _failure(
                f"{prefix}.signal_backend",
                f"role {role} is not a member of pg_signal_backend: {step}'s fence ends the direct sessions of the "
                f"application roles {roles} ({who}) with pg_terminate_backend",
                [statement("GRANT pg_signal_backend TO {};", ident)],
                run_on,
            )
        )
    if not f.createrole:
        failures.append(
            _failure(
                f"{prefix}.createrole",
                f"role {role} lacks CREATEROLE: {step}'s fence makes the application roles {roles} ({who}) read-only "
                f"in database {dbname} (ALTER ROLE … IN DATABASE … SET default_transaction_read_only = on), and "
                "PostgreSQL 15 lets only a superuser or a CREATEROLE role change another role's settings. Needed only "
                "because these roles may write a migrated table",
                [statement("ALTER ROLE {} CREATEROLE;", ident)],
                run_on,
                note="(PostgreSQL 16 and later also want ADMIN OPTION on each of those roles)"
                if version >= 160000
                else "",
            )
        )
    return failures


def _judge(
    side: str,
    f: Facts,
    side_failures: Callable[[Facts, str], list[CheckResult]],
    fence_step: str,
    fence_who: str,
    passed: str,
) -> list[CheckResult]:
    """What both sides share: a superuser passes; otherwise the side's own failures, then the fence's
    (`_fence_failures`: `fence_step` fences this side, `fence_who` says why its application roles are these),
    or one passing result saying `passed`."""
    name = f"{side}_role"
    if f.superuser:
        return [CheckResult(name, ok=True, detail=f"role {f.role} is a superuser")]
    run_on = f"{side} database {f.dbname!r}"
    failures = side_failures(f, run_on)
    failures += _fence_failures(name, f.role, f.dbname, f.fence, fence_step, fence_who, f.server_version_num, run_on)
    return failures or [CheckResult(name, ok=True, detail=passed)]


def check_source_privileges(f: SourceRoleFacts) -> list[CheckResult]:
    """`source_role` passes as one result, or fails once per missing privilege."""
    passed = (
        f"role {f.role} has REPLICATION, CREATE, SELECT, owns the tables to publish and has what the cutover and a "
    )
    passed += "rollback need"
    return _judge("source", f, _source_failures, "the cutover", "they may write a migrated table", passed)


def check_target_privileges(f: TargetRoleFacts) -> list[CheckResult]:
    """`target_role` passes as one result, or fails once per missing privilege."""
    passed = f"role {f.role} can create the schema, run the sink and has what the cutover and a rollback need"
    who = "they may write the migrated tables on the source, so on the target after the cutover"
    return _judge("target", f, _target_failures, "a rollback", who, passed)


def _source_failures(f: SourceRoleFacts, run_on: str) -> list[CheckResult]:
    """The source role's missing privileges, the fence's aside."""
    failures = []
    if not f.replication:
        failures.append(_no_replication("source_role.replication", f.role, " (the replication slots need it)", run_on))
    if not f.create_on_db:
        created = f"the {CONTROL_SCHEMA} schema with the heartbeat and signal tables, and the publications,"
        failures.append(_no_create_on_database("source_role.create", f.role, f.dbname, created, run_on))
    if f.control_schema_blocked:
        failures.append(_no_schema_rights("source_role.control_schema", f.role, "schema", [CONTROL_SCHEMA], run_on))
    if f.unreadable or f.unreadable_sequences:
        listed = _listed([*f.unreadable, *f.unreadable_sequences])
        count = len(f.unreadable) + len(f.unreadable_sequences)
        why = (
            (
                " (sequences: the cutover and the rollback read last_value and is_called from the relation, which "
                "USAGE does not allow)"
            )
            if f.unreadable_sequences
            else ""
        )
        failures.append(
            _failure(
                "source_role.select",
                f"role {f.role} cannot read {plural(count, 'relation')}: {listed}{why}",
                _on_each("GRANT SELECT ON {} TO {};", f.unreadable, f.role)
                + _on_each("GRANT SELECT ON SEQUENCE {} TO {};", f.unreadable_sequences, f.role),
                run_on,
            )
        )
    if f.not_owned and not f.publication_exists:
        problem = (
            f"does not own {plural(len(f.not_owned), 'table')} to publish (PostgreSQL 15 lets only the owner add a "
            "table to a publication)"
        )
        note = "(or GRANT the tables' owning role TO the migration role, or run the source connection as a superuser)"
        failures.append(
            _missing_on_relations(
                "source_role.publish", f.role, problem, "ALTER TABLE {} OWNER TO {};", f.not_owned, run_on, note
            )
        )
    # What the cutover and the rollback need on the source.
    if f.sequences_not_updatable:
        problem = (
            f"lacks UPDATE on {plural(len(f.sequences_not_updatable), 'sequence')} (a rollback sets the source's "
            "sequences past the target's with setval)"
        )
        failures.append(
            _missing_on_relations(
                "source_role.sequence_update",
                f.role,
                problem,
                "GRANT UPDATE ON SEQUENCE {} TO {};",
                f.sequences_not_updatable,
                run_on,
            )
        )
    if not f.can_set_replication_role:
        why = (
            "the reverse JDBC sink (from the cutover on) sets to replica when it writes the target's changes into "
            "the source"
        )
        failures.append(
            _replication_role_failure("source_role.session_replication_role", f.role, f.server_version_num, why, run_on)
        )
    return failures


def _target_failures(f: TargetRoleFacts, run_on: str) -> list[CheckResult]:
    """The target role's missing privileges, the fence's aside."""
    failures = []
    if not f.create_on_db:
        created = f"the migrated schemas and {CONTROL_SCHEMA}"
        failures.append(_no_create_on_database("target_role.create", f.role, f.dbname, created, run_on))
    if f.schemas_blocked:
        which = "target schemas"
        failures.append(_no_schema_rights("target_role.schema", f.role, which, f.schemas_blocked, run_on))
    if not f.can_set_replication_role:
        why = "the JDBC sink sets to replica so that triggers and FK checks do not fire for replicated rows"
        failures.append(
            _replication_role_failure("target_role.session_replication_role", f.role, f.server_version_num, why, run_on)
        )
    if f.not_owned:
        problem = f"does not own {plural(len(f.not_owned), 'existing target table')} it must empty and alter"
        failures.append(
            _missing_on_relations(
                "target_role.owner", f.role, problem, "ALTER TABLE {} OWNER TO {};", f.not_owned, run_on
            )
        )
    # What the cutover and the rollback need on the target.
    if not f.replication:
        why = (
            ": the cutover creates the reverse pipeline's logical slots on the target (the reverse Debezium source "
            "streams from them) and a rollback peeks them with pg_logical_slot_peek_binary_changes"
        )
        failures.append(_no_replication("target_role.replication", f.role, why, run_on))
    if f.unreadable_sequences:
        problem = (
            f"cannot read {plural(len(f.unreadable_sequences), 'existing target sequence')} (no SELECT: the cutover "
            "and the rollback read last_value and is_called from the relation)"
        )
        failures.append(
            _missing_on_relations(
                "target_role.sequence_select",
                f.role,
                problem,
                "GRANT SELECT ON SEQUENCE {} TO {};",
                f.unreadable_sequences,
                run_on,
            )
        )
    if f.sequences_not_updatable:
        problem = (
            f"lacks UPDATE on {plural(len(f.sequences_not_updatable), 'existing target sequence')} (the cutover sets "
            "them past the source's with setval)"
        )
        failures.append(
            _missing_on_relations(
                "target_role.sequence_update",
                f.role,
                problem,
                "GRANT UPDATE ON SEQUENCE {} TO {};",
                f.sequences_not_updatable,
                run_on,
            )
        )
    return failures
