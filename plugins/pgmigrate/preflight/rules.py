"""Preflight's rules: facts in, a `CheckResult` out, each failure with the exact SQL or setting that fixes it.

Split from `preflight` (which reads the facts from the servers and collects the results into a report) so that
every rule is a pure function a unit test reaches without a database (`tests/unit/test_preflight_rules.py`).
What column types the pipeline can carry is its own module, `column_types`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from psycopg import sql

from pgmigrate.core.catalog import TableInfo, TableRef
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


def _q(*parts: str) -> str:
    """An identifier as SQL text for a fix the operator runs (always quoted, so always valid)."""
    return sql.Identifier(*parts).as_string(None)


def _n(count: int, noun: str) -> str:
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
            f"CREATE DATABASE {_q(endpoint.dbname)};"
        )
    elif re.search(r'role ".*" does not exist', message):
        fix = f"{check}: its Login must be an existing role on {where} (or CREATE ROLE {_q(endpoint.user)} LOGIN …;)."
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


def identifies_rows(replica_identity: str, has_pk: bool, has_identity_index: bool) -> bool:
    """Whether logical decoding can identify a relation's rows for UPDATE/DELETE."""
    return {"f": True, "i": has_identity_index, "d": has_pk}.get(replica_identity, False)


def replica_identity_gaps(
    tables: Iterable[TableInfo], leaves: Mapping[TableRef, tuple[str, bool, bool]] | None = None
) -> list[TableRef]:
    """Relations whose UPDATEs/DELETEs logical decoding cannot identify. For a partitioned table the
    partitions decide (changes are decoded per partition): `leaves` maps each to (relreplident, has_pk,
    has_identity_index); a partition missing from it is judged like its root."""
    gaps: list[TableRef] = []
    for t in tables:
        root = (t.replica_identity, bool(t.primary_key), t.has_replica_identity_index)
        if t.kind != "p" or not t.partitions:
            if not identifies_rows(*root):
                gaps.append(t.ref)
            continue
        gaps.extend(p for p in t.partitions if not identifies_rows(*(leaves or {}).get(p, root)))
    return list(dict.fromkeys(gaps))


def check_replica_identity(
    gaps: list[TableRef],
    applied: list[TableRef],
    error: str | None = None,
    partition_of: Mapping[TableRef, TableRef] | None = None,
) -> CheckResult:
    name = "replica_identity"
    partition_of = partition_of or {}

    def shown(t: TableRef) -> str:
        return f"{t.qualified} (partition of {partition_of[t].qualified})" if t in partition_of else t.qualified

    fix_sql = "\n".join(f"ALTER TABLE {_q(t.schema, t.name)} REPLICA IDENTITY FULL;" for t in gaps)
    if error:
        return CheckResult(
            name,
            ok=False,
            problem=f"applying REPLICA IDENTITY FULL failed: {error}",
            fix=f"Run as the owner:\n{fix_sql}",
        )
    key_note = " Tables without a primary key have no Kafka message key: the JDBC sink cannot upsert them by key."
    if applied:
        listed = ", ".join(shown(t) for t in applied)
        return CheckResult(name, ok=True, detail=f"applied REPLICA IDENTITY FULL to {listed}.{key_note}")
    if gaps:
        listed = ", ".join(shown(t) for t in gaps)
        return CheckResult(
            name,
            ok=False,
            problem=f"{_n(len(gaps), 'table')} without a primary key or usable replica identity "
            f"(their UPDATEs/DELETEs cannot be replicated): {listed}",
            fix=f"Add a primary key, or run on the source:\n{fix_sql}\n"
            "(or rerun with replica_identity_full_for_no_pk=true to have preflight apply it)",
        )
    return CheckResult(name, ok=True, detail="every table has a primary key or a usable replica identity")


def check_unlogged_tables(unlogged: list[TableRef], applied: list[TableRef], error: str | None = None) -> CheckResult:
    """Logical decoding never sees an unlogged table's rows (they are not in the WAL) and PostgreSQL refuses
    one in a publication, so neither the load's slot nor streaming can carry it: refuse it by name, before
    anything is deployed, or make it logged when `set_logged_for_unlogged` allows."""
    name = "unlogged_tables"
    fix_sql = "\n".join(f"ALTER TABLE {_q(t.schema, t.name)} SET LOGGED;" for t in unlogged)
    rewrite = "(SET LOGGED rewrites the table and writes it to the WAL, under an ACCESS EXCLUSIVE lock)"
    if error:
        return CheckResult(
            name,
            ok=False,
            problem=f"applying SET LOGGED failed: {error}",
            fix=f"Run as the owner:\n{fix_sql}\n{rewrite}",
        )
    if applied:
        return CheckResult(name, ok=True, detail=f"applied SET LOGGED to {', '.join(t.qualified for t in applied)}")
    if unlogged:
        return CheckResult(
            name,
            ok=False,
            problem=f"{_n(len(unlogged), 'unlogged table')} ({', '.join(t.qualified for t in unlogged)}): logical "
            "decoding cannot see their rows and PostgreSQL refuses them in a publication, so they cannot be "
            "migrated while unlogged",
            fix=f"Run on the source:\n{fix_sql}\n{rewrite}\nor rerun with set_logged_for_unlogged=true to have "
            "preflight apply it, or leave them out of `tables`.",
        )
    return CheckResult(name, ok=True, detail="no unlogged tables")


def check_primary_keys(tables: Iterable[TableInfo], subscription: str) -> CheckResult:
    """Tables with a primary key go through Debezium and the JDBC sink (applied by key). Keyless tables
    go through PostgreSQL's own logical replication (`native_replication`), which keeps duplicate rows
    exact; its apply worker matches a changed row on the target by the whole old row, so the source must
    log whole old rows: REPLICA IDENTITY FULL (USING INDEX names an index the target lacks while loading)."""
    keyless = [t for t in tables if not t.primary_key]
    if not keyless:
        return CheckResult("primary_keys", ok=True, detail="every table has a primary key")
    by_index = [t for t in keyless if t.replica_identity == "i"]
    if by_index:
        return CheckResult(
            "primary_keys",
            ok=False,
            problem=f"{_n(len(by_index), 'table')} without a PRIMARY KEY use REPLICA IDENTITY USING INDEX: "
            f"{', '.join(t.ref.qualified for t in by_index)}. Keyless tables are replicated by PostgreSQL "
            "logical replication, which matches rows on the target by the whole row.",
            fix="Run on the source (or give the table a primary key):\n"
            + "\n".join(f"ALTER TABLE {_q(t.ref.schema, t.ref.name)} REPLICA IDENTITY FULL;" for t in by_index),
        )
    return CheckResult(
        "primary_keys",
        ok=True,
        detail=f"{_n(len(keyless), 'table')} without a primary key ({', '.join(t.ref.qualified for t in keyless)}) "
        f"will be replicated by PostgreSQL logical replication (subscription {subscription} on the target), "
        "which keeps duplicate rows exact",
    )


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
            statements.append(f"GRANT pg_create_subscription TO {_q(facts['role'])};")
        else:  # PostgreSQL 15: only a superuser may create a subscription.
            statements.append(f"ALTER ROLE {_q(facts['role'])} SUPERUSER;")
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


def check_column_types(uncarriable: list[str], routed: list[str] | None = None) -> CheckResult:
    """`uncarriable`: columns no channel can carry (refused); `routed`: columns Debezium cannot carry exactly, whose
    tables therefore travel by PostgreSQL's own logical replication (the native channel), named so that the
    routing is never a surprise. Both as `column_types.uncarriable_columns` renders them."""
    if not uncarriable:
        detail = "every column type is carried exactly"
        if routed:
            detail += (
                f"; {_n(len(routed), 'column')} Debezium cannot carry exactly, so their tables travel by PostgreSQL "
                f"logical replication (the native channel): {'; '.join(routed)}"
            )
        return CheckResult("column_types", ok=True, detail=detail)
    return CheckResult(
        "column_types",
        ok=False,
        problem=f"{_n(len(uncarriable), 'column')} of types neither Debezium nor PostgreSQL logical replication can "
        "carry: " + "; ".join(uncarriable),
        fix="Store these values in a type PostgreSQL can read back and compare, on the source (e.g. ALTER TABLE … "
        "ALTER COLUMN … TYPE text USING …::text, or jsonb for json), or give a keyless table a primary key, or drop "
        "the column, or leave its table out of `tables`.",
    )


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
            f"{_n(len(missing), 'role')} that own or hold privileges on migrated objects do not exist on "
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
        fixes.append("Run on the target:\n" + "\n".join(f"GRANT {_q(o)} TO {_q(target_role)};" for o in grantable))
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
    grant_statements = [f"GRANT {_q(o)} TO {_q(target_role)};" for o in grantable]
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
        detail=f"{_n(len(used_on), 'role')} own or hold privileges on migrated "
        f"objects, all present on the target; grants and default privileges are copied; {owners}",
    )


def check_large_objects(count: int, total_bytes: int | None) -> CheckResult:
    """Large objects are copied with their oids after the load (`large_objects`); never streamed afterwards."""
    if not count:
        return CheckResult("large_objects", ok=True, detail="no large objects")
    size = f", {total_bytes / 1e6:.1f} MB" if total_bytes is not None else ""
    return CheckResult(
        "large_objects",
        ok=True,
        detail=f"{_n(count, 'large object')}{size}: copied with their oids after the initial load (apply_post_data) "
        "and compared by validation; changes to large objects after that copy are NOT streamed (logical decoding "
        "does not carry them): stop writing them before the load, or rerun apply_post_data before the cutover",
    )


def check_target_tables(states: Mapping[TableRef, str], target: PgEndpoint, conn_id: str) -> CheckResult:
    """`states`: TableRef -> 'absent' | 'empty' | 'has rows'."""
    busy = [t for t, s in states.items() if s == "has rows"]
    if not busy:
        present = sum(1 for s in states.values() if s == "empty")
        return CheckResult("target_tables", ok=True, detail=f"{len(states) - present} absent, {present} empty")
    listed = ", ".join(t.qualified for t in busy)
    truncate = "\n".join(f"TRUNCATE {_q(t.schema, t.name)};" for t in busy)
    return CheckResult(
        "target_tables",
        ok=False,
        problem=f"{_n(len(busy), 'table')} already holding rows on the target {target.label}: {listed}",
        fix=f"Empty them on the target if their rows are disposable:\n{truncate}\n(or DROP TABLE them), "
        f"or point the Airflow connection `{conn_id}` at another database.",
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
        fixes.append(f"DROP PUBLICATION {_q(publication)};  -- only if it is an abandoned migration's")
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
