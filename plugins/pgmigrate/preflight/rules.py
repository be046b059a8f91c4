"""Preflight's rules: facts in, a `CheckResult` out, each failure with the exact SQL or setting that fixes it.

Split from `preflight` (which reads the facts from the servers and collects the results into a report) so that
every rule is a pure function a unit test reaches without a database (`tests/unit/test_preflight_rules.py`).
Here: the connections, the server's settings, the subscription rights, the roles and the names; the rules on
the migrated tables themselves are `table_rules`, and what column types the pipeline can carry is
`column_types`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from psycopg import sql

from pgmigrate.core.endpoints import PgEndpoint


@dataclass
class CheckResult:
    name: str
    ok: bool
    problem: str = ""
    fix: str = ""
    detail: str = ""  # what a passing check found or did (e.g. "applied REPLICA IDENTITY FULL to …")
    skipped: bool = False  # not run because a connection it needs failed
    # A missing privilege: the exact statements (also in `fix`) and where to run them, gathered by the report
    # into one copy-pasteable block per server.
    statements: list[str] = field(default_factory=list)
    run_on: str = ""

    @property
    def status(self) -> str:
        return "SKIP" if self.skipped else "PASS" if self.ok else "FAIL"


def quoted(*parts: str) -> str:
    """An identifier as SQL text for a fix the operator runs (always quoted, so always valid)."""
    return sql.Identifier(*parts).as_string(None)


def plural(count: int, noun: str) -> str:
    """`3 tables`, `1 table`: a count with its noun, for messages."""
    return f"{count} {noun}" + ("" if count == 1 else "s")


def skipped(name: str, which: str) -> CheckResult:
    return CheckResult(name, ok=False, problem=f"not run: the {which} connection failed", skipped=True)


@dataclass(frozen=True)
class DatabaseIdentity:
    """What makes a database the same one whatever name or address reaches it."""

    system_identifier: str  # the cluster's, from pg_control_system(): shared by its standbys and physical clones
    database_oid: int


def check_distinct_databases(
    source_identity: DatabaseIdentity,
    target_identity: DatabaseIdentity,
    source: PgEndpoint,
    target: PgEndpoint,
    target_conn_id: str,
) -> CheckResult:
    """Source and target must be two databases: on one, every later fix (TRUNCATE the target's tables) and every
    task (load, sink, cutover) would act on the production tables themselves."""
    name = "distinct_databases"
    if source_identity != target_identity:
        return CheckResult(name, ok=True, detail="source and target are different databases")
    return CheckResult(
        name,
        ok=False,
        problem=(
            f"the source {source.label} and the target {target.label} are the same database (server system "
            f"identifier {source_identity.system_identifier}, database oid {source_identity.database_oid}): "
            "migrating would load, stream and cut over onto the production tables themselves. No other check ran."
        ),
        fix=(
            f"Point the Airflow connection `{target_conn_id}` (host, port, Schema field) at the database on the new "
            "server. A target restored from a physical backup or a standby of the source shares its identity: "
            "create the target cluster with initdb instead (the schema copy creates its tables)."
        ),
    )


def check_connection(which: str, endpoint: PgEndpoint, conn_id: str, error: str | None) -> CheckResult:
    name = f"{which}_connection"
    if error is None:
        return CheckResult(name, ok=True, detail=f"connected to {endpoint.label}")
    message = re.sub(r"\s+", " ", error).strip()
    where = f"{endpoint.host}:{endpoint.port}"
    check = f"Check the Airflow connection `{conn_id}`"
    if "password authentication failed" in message:
        fix = f"{check}: set the password of login {endpoint.user!r} to the one the server expects."
    elif re.search(r'database ".*" does not exist', message):
        fix = (
            f"{check}: its Schema field must name an existing database, or create it on {where}: "
            f"CREATE DATABASE {quoted(endpoint.dbname)};"
        )
    elif re.search(r'role ".*" does not exist', message):
        role = quoted(endpoint.user)
        fix = f"{check}: its Login must be an existing role on {where} (or CREATE ROLE {role} LOGIN …;)."
    elif "no pg_hba.conf entry" in message:
        fix = f"Allow this host in the server's pg_hba.conf for user {endpoint.user!r}, then reload; {check}."
    else:
        fix = (
            f"{check} (host, port); is the server up and accepting TCP connections on {where}? "
            f"Test with: pg_isready -h {endpoint.host} -p {endpoint.port}"
        )
    return CheckResult(name, ok=False, problem=f"cannot connect to {endpoint.label}: {message}", fix=fix)


def check_params(unknown_tables: str | None, missing_schemas: list[str], selected_count: int) -> CheckResult:
    problems, fixes = [], []
    if missing_schemas:
        problems.append(f"schemas not found on the source: {', '.join(missing_schemas)}")
        fixes.append("correct the `schemas` param (names are case-sensitive)")
    if unknown_tables:
        problems.append(unknown_tables)
        fixes.append("correct the `tables` param (schema.table, case-sensitive) or create the tables on the source")
    if not problems and selected_count == 0:
        problems.append("no tables selected: the migrated schemas hold no tables")
        fixes.append("set `schemas`/`tables` to what should be migrated")
    if problems:
        return CheckResult("params", ok=False, problem="; ".join(problems), fix="; ".join(fixes) + ".")
    return CheckResult("params", ok=True, detail=f"{selected_count} tables selected")


def check_wal_level(settings: Mapping[str, Any]) -> CheckResult:
    level = settings.get("wal_level")
    if level == "logical":
        return CheckResult("wal_level", ok=True, detail="wal_level = logical")
    return CheckResult(
        "wal_level",
        ok=False,
        problem=f"wal_level is {level!r} on the source; logical decoding needs 'logical'",
        fix="ALTER SYSTEM SET wal_level = logical; then restart the source server (a reload is not enough).",
    )


def check_capacity(
    settings: Mapping[str, Any], slots_used: int, senders_used: int, own_slot: bool, own_slot_active: bool = False
) -> CheckResult:
    """Debezium needs one replication slot, unless its slot is already there (a rerun), and one WAL sender,
    unless it is already streaming from that slot."""
    problems, fixes = [], []
    max_slots, max_senders = int(settings["max_replication_slots"]), int(settings["max_wal_senders"])
    if not own_slot and max_slots - slots_used < 1:
        problems.append(f"no free replication slot ({slots_used} of max_replication_slots={max_slots} in use)")
        fixes.append(
            f"ALTER SYSTEM SET max_replication_slots = {slots_used + 1}; and restart, "
            "or drop an unused slot: SELECT pg_drop_replication_slot('<name>');"
        )
    if not own_slot_active and max_senders - senders_used < 1:
        problems.append(f"no free WAL sender ({senders_used} of max_wal_senders={max_senders} in use)")
        fixes.append(f"ALTER SYSTEM SET max_wal_senders = {senders_used + 1}; and restart.")
    if problems:
        return CheckResult("replication_capacity", ok=False, problem="; ".join(problems), fix="\n".join(fixes))
    detail = (
        "the migration's slot already exists"
        if own_slot
        else f"slots {slots_used}/{max_slots} used, WAL senders {senders_used}/{max_senders} used"
    )
    return CheckResult("replication_capacity", ok=True, detail=detail)


def check_subscription_rights(facts: Mapping[str, Any], keyless_count: int, side: str = "target") -> CheckResult:
    """The native channel's subscription is created on the target, and at cutover its reverse on the source
    (rollback needs every target write back): that side's role must be allowed to (superuser; from
    PostgreSQL 16 also pg_create_subscription) and the server must have logical replication workers for it
    (one apply worker, plus table-sync workers during an initial copy)."""
    name = f"{side}_subscription"
    if not keyless_count:
        return CheckResult(name, ok=True, detail="no keyless tables: no subscription needed")
    problems, fixes, statements = [], [], []
    if not facts["superuser"] and not facts["create_subscription"]:
        why = (
            "for the reverse channel the cutover starts, so a rollback brings their target writes back"
            if side == "source"
            else "which travel by native logical replication"
        )
        problems.append(
            f"{side} role {facts['role']} may not CREATE SUBSCRIPTION (needed for the {keyless_count} tables "
            f"without a primary key or with timetz columns, {why})"
        )
        if int(facts.get("server_version_num", 160000)) >= 160000:
            statements.append(f"GRANT pg_create_subscription TO {quoted(facts['role'])};")
        else:  # PostgreSQL 15: only a superuser may create a subscription.
            statements.append(f"ALTER ROLE {quoted(facts['role'])} SUPERUSER;")
            fixes.append(
                "(PostgreSQL 15 lets only a superuser CREATE SUBSCRIPTION: either that, or give those tables a "
                "primary key, or leave them out of `tables`)"
            )
        fixes.insert(0, statements[0])
    if int(facts["max_logical_replication_workers"]) < 2:
        problems.append(
            f"max_logical_replication_workers is {facts['max_logical_replication_workers']} on the {side}; "
            "the keyless tables need an apply worker and a table-sync worker"
        )
        fixes.append(f"ALTER SYSTEM SET max_logical_replication_workers = 4; and restart the {side}.")
    if problems:
        return CheckResult(
            name,
            ok=False,
            problem="; ".join(problems),
            fix="\n".join(fixes),
            statements=statements,
            run_on=f"{side} database {facts['dbname']!r}" if statements and "dbname" in facts else f"{side} database",
        )
    return CheckResult(name, ok=True, detail=f"{side} role {facts['role']} can create the native subscription")


def check_roles(
    missing: list[str],
    used_on: Mapping[str, list[str]],
    statements: list[str],
    unownable: list[str],
    superuser_owners: list[str],
    target_role: str,
    target_db: str,
    keep_ownership: bool,
) -> CheckResult:
    """Roles that own or hold privileges on migrated objects must exist on the target before the schema copy
    restores grants and ownership (`roles`); with `keep_ownership`, the target role must be able to give objects
    to each owner (a superuser, or a member of the owner role)."""
    problems, fixes = [], []
    if missing:
        shown = "; ".join(
            f"{r} ({', '.join(used_on.get(r, [])[:3])}{', …' if len(used_on.get(r, [])) > 3 else ''})" for r in missing
        )
        problems.append(
            f"{plural(len(missing), 'role')} that own or hold privileges on migrated objects do not exist on "
            f"the target (roles are per server; pg_dump carries none): {shown}"
        )
        fixes.append(
            "Run on the target (then set each LOGIN role's password there: ALTER ROLE … PASSWORD '…'; "
            "passwords cannot be read from the source):\n" + "\n".join(statements)
        )
    grantable = [o for o in unownable if o not in superuser_owners]
    if grantable:
        problems.append(
            f"the target role {target_role} cannot give objects to their owners "
            f"{', '.join(grantable)} (ALTER … OWNER TO needs membership)"
        )
        grants = "\n".join(f"GRANT {quoted(o)} TO {quoted(target_role)};" for o in grantable)
        fixes.append("Run on the target:\n" + grants)
    if superuser_owners:
        problems.append(
            f"objects are owned by (or default privileges set for) the superuser "
            f"{', '.join(superuser_owners)}, which the target role {target_role} (not a superuser) cannot "
            "act as"
        )
        fixes.append(
            "Connect the target as a superuser, or have the source's objects owned by a non-superuser role, "
            "or set keep_ownership=false (objects then belong to the target role; grants are still copied)."
        )
    grant_statements = [f"GRANT {quoted(o)} TO {quoted(target_role)};" for o in grantable]
    if problems:
        return CheckResult(
            "roles",
            ok=False,
            problem="; ".join(problems),
            fix="\n".join(fixes),
            statements=statements + grant_statements,
            run_on=f"target database {target_db!r}",
        )
    owners = "ownership kept" if keep_ownership else f"ownership not kept (keep_ownership=false): {target_role} owns"
    return CheckResult(
        "roles",
        ok=True,
        detail=f"{plural(len(used_on), 'role')} own or hold privileges on migrated "
        f"objects, all present on the target; grants and default privileges are copied; {owners}",
    )


def check_names(
    slot: str,
    publication: str,
    slot_row: Mapping[str, Any] | None,
    publication_exists: bool,
    source_db: str,
    connectors: list[str],
    connect_names_in_use: set[str] | None,
    owned_by_this_migration: bool,
) -> CheckResult:
    problems, fixes = [], []
    if slot_row is not None:
        if not owned_by_this_migration:
            problems.append(f"replication slot {slot} already exists and is not recorded for this migration")
            fixes.append(f"SELECT pg_drop_replication_slot('{slot}');  -- only if it is an abandoned migration's")
        elif slot_row.get("plugin") != "pgoutput" or slot_row.get("database") != source_db:
            problems.append(
                f"replication slot {slot} exists for plugin {slot_row.get('plugin')!r} on database "
                f"{slot_row.get('database')!r}, not pgoutput on {source_db!r}"
            )
            fixes.append(f"SELECT pg_drop_replication_slot('{slot}');  -- it cannot be reused")
    if publication_exists and not owned_by_this_migration:
        problems.append(f"publication {publication} already exists and is not recorded for this migration")
        fixes.append(f"DROP PUBLICATION {quoted(publication)};  -- only if it is an abandoned migration's")
    clashing = [c for c in connectors if c in (connect_names_in_use or set())]
    if clashing and not owned_by_this_migration:
        problems.append(f"Kafka Connect already runs connectors named {', '.join(clashing)}")
        fixes.append("\n".join(f"curl -X DELETE http://<connect>:8083/connectors/{c}" for c in clashing))
    if problems:
        return CheckResult(
            "names",
            ok=False,
            problem="; ".join(problems),
            fix="Pick another migration_id, or tear the old migration down:\n" + "\n".join(fixes),
        )
    note = "" if connect_names_in_use is not None else " (Kafka Connect names not given, not checked)"
    reuse = "existing ones are this migration's" if slot_row or publication_exists or clashing else "all free"
    return CheckResult("names", ok=True, detail=f"slot, publication and connector names {reuse}{note}")
