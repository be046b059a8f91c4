"""Preflight: everything that would make the migration fail later, found before anything is created.

`run_preflight` reads facts from the source and target (I/O, here) and hands them to the `check_*` rules
(pure functions in `rules`, `table_rules` and `privileges`, the column type rules in `column_types`,
unit-tested on fakes). Each rule returns a `CheckResult` whose `fix` is the exact SQL or setting to apply, so
the on-call reader never has to work out what to run. Every check runs even after one fails, and the report's
`raise_if_failed()` (`report.PreflightReport`) lists every failure at once: one rerun, not one per problem.
When a connection fails, the checks that need it are reported as skipped (not run), not as passed.

The only write is opt-in: with `fix_no_pk` (or the `replica_identity_full_for_no_pk` param) tables
without a primary key get `REPLICA IDENTITY FULL` on the source, and the result says so.
"""

from __future__ import annotations

import logging
from typing import Any

import psycopg
from psycopg import sql

from pgmigrate.core.catalog import TableInfo, TableRef, UnknownTables, list_tables, read_relations, select_tables
from pgmigrate.core.column_types import routed_columns, uncarriable_columns, unmatchable_keyless_columns
from pgmigrate.core.endpoints import PgEndpoint
from pgmigrate.core.params import MigrationParams
from pgmigrate.preflight.privileges import check_source_privileges, check_target_privileges
from pgmigrate.preflight.report import PreflightReport
from pgmigrate.preflight.role_facts import read_source_role_facts, read_target_role_facts
from pgmigrate.preflight.rules import (
    CheckResult,
    DatabaseIdentity,
    check_capacity,
    check_connection,
    check_distinct_databases,
    check_names,
    check_params,
    check_roles,
    check_subscription_rights,
    check_wal_level,
    skipped,
)
from pgmigrate.preflight.table_rules import (
    check_column_types,
    check_large_objects,
    check_primary_keys,
    check_replica_identity,
    check_target_tables,
    check_unlogged_tables,
    replica_identity_gaps,
)
from pgmigrate.schema.large_objects import large_object_summary
from pgmigrate.schema.roles import (
    create_role_statements,
    owners_the_target_cannot_become,
    read_source_roles,
    target_role_names,
)
from pgmigrate.stream.native_replication import split_by_channel

log = logging.getLogger(__name__)


def _query_failed(name: str, endpoint: PgEndpoint, conn_id: str, exc: psycopg.Error) -> CheckResult:
    return CheckResult(
        name,
        ok=False,
        problem=f"a preflight query on {endpoint.label} failed: {' '.join(str(exc).split())}",
        fix=f"Grant the login of the Airflow connection `{conn_id}` what the message asks for (or use a role that "
        "can read the catalogs and the selected tables), then rerun.",
    )


def _connect(endpoint: PgEndpoint) -> tuple[psycopg.Connection | None, str | None]:
    try:
        return endpoint.connect(autocommit=True), None
    except psycopg.Error as exc:
        return None, str(exc)


def _roles_check(
    src: psycopg.Connection, tgt: psycopg.Connection, params: MigrationParams, target: PgEndpoint
) -> CheckResult:
    """Owners and grantees of the migrated objects present on the target, and ownership restorable (`roles`)."""
    needed = read_source_roles(src, params.schemas)
    present = target_role_names(tgt)
    missing = sorted(r for r in needed.roles if r not in present)
    become = (needed.owners if params.keep_ownership else set()) | needed.default_privilege_roles
    unownable = owners_the_target_cannot_become(tgt, become)
    superuser_owners = [o for o in unownable if needed.roles[o].superuser]
    statements = create_role_statements([needed.roles[r] for r in missing], present)
    target_role = tgt.execute("SELECT current_user").fetchone()[0]
    return check_roles(
        missing,
        needed.used_on,
        statements,
        unownable,
        superuser_owners,
        target_role,
        target.dbname,
        params.keep_ownership,
    )


def _database_identity(conn: psycopg.Connection) -> DatabaseIdentity:
    row = conn.execute(
        "SELECT (SELECT system_identifier::text FROM pg_control_system()), oid FROM pg_database "
        "WHERE datname = current_database()"
    ).fetchone()
    return DatabaseIdentity(row[0], row[1])


def _leaf_identities(conn: psycopg.Connection, tables: list[TableInfo]) -> dict[TableRef, tuple[str, bool, bool]]:
    leaves = [p for t in tables for p in t.partitions]
    if not leaves:
        return {}
    rows = read_relations(
        conn,
        "SELECT n.nspname, c.relname, c.relreplident, "
        "EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary), "
        "EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisreplident) "
        "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace {relations}",
        leaves,
    )
    return {TableRef(s, r): (ident, pk, ri) for s, r, ident, pk, ri in rows}


def _apply_replica_identity_full(conn: psycopg.Connection, refs: list[TableRef]) -> None:
    with conn.transaction():
        for ref in refs:
            conn.execute(sql.SQL("ALTER TABLE {} REPLICA IDENTITY FULL").format(ref.ident))
            log.info("preflight: applied REPLICA IDENTITY FULL to %s", ref.qualified)


def _unlogged_tables(conn: psycopg.Connection, tables: list[TableInfo]) -> list[TableRef]:
    """The selected tables and leaf partitions that are UNLOGGED, in selection order."""
    refs = [r for t in tables for r in (t.ref, *t.partitions)]
    rows = read_relations(
        conn,
        "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace {relations} "
        "WHERE c.relpersistence = 'u'",
        refs,
    )
    found = {TableRef(s, r) for s, r in rows}
    return [r for r in dict.fromkeys(refs) if r in found]


def _set_logged(conn: psycopg.Connection, refs: list[TableRef]) -> None:
    for ref in refs:  # one transaction each: a rewrite holds its ACCESS EXCLUSIVE lock until commit
        log.info("preflight: ALTER TABLE %s SET LOGGED (rewrites the table)", ref.qualified)
        with conn.transaction():
            conn.execute(sql.SQL("ALTER TABLE {} SET LOGGED").format(ref.ident))
        log.info("preflight: %s is logged now", ref.qualified)


def _subscription_facts(conn: psycopg.Connection) -> dict[str, Any]:
    role, superuser, version, workers, dbname = conn.execute(
        "SELECT current_user, rolsuper, current_setting('server_version_num')::int, "
        "current_setting('max_logical_replication_workers'), current_database() "
        "FROM pg_roles WHERE rolname = current_user"
    ).fetchone()
    create = False
    if version >= 160000:
        create = conn.execute("SELECT pg_has_role('pg_create_subscription', 'MEMBER')").fetchone()[0]
    return {
        "role": role,
        "superuser": superuser,
        "create_subscription": create,
        "max_logical_replication_workers": workers,
        "server_version_num": version,
        "dbname": dbname,
    }


def _target_states(conn: psycopg.Connection, refs: list[TableRef]) -> dict[TableRef, str]:
    states = {}
    for ref in refs:
        exists = conn.execute(
            "SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relname = %s AND c.relkind IN ('r', 'p')",
            (ref.schema, ref.name),
        ).fetchone()
        if not exists:
            states[ref] = "absent"
            continue
        has_rows = conn.execute(sql.SQL("SELECT EXISTS (SELECT 1 FROM {})").format(ref.ident)).fetchone()[0]
        states[ref] = "has rows" if has_rows else "empty"
    return states


_SOURCE_CHECKS = (
    "params",
    "wal_level",
    "replication_capacity",
    "source_role",
    "unlogged_tables",
    "replica_identity",
    "primary_keys",
    "column_types",
    "large_objects",
    "names",
)


def run_preflight(
    source: PgEndpoint,
    target: PgEndpoint,
    params: MigrationParams,
    connect_names_in_use: set[str] | None = None,
    fix_no_pk: bool = False,
    owned_by_this_migration: bool = False,
) -> PreflightReport:
    """Run every check and return the report (it raises nothing itself: call `raise_if_failed()`).

    `connect_names_in_use`: connector names Kafka Connect already runs (None: not checked).
    `owned_by_this_migration`: the state store records this migration_id with these slot/publication/
    connector names (a rerun), so finding them is expected rather than a clash.
    """
    report = PreflightReport(params.migration_id)
    src, src_error = _connect(source)
    tgt, tgt_error = _connect(target)
    try:
        report.results.append(check_connection("source", source, params.source_conn_id, src_error))
        report.results.append(check_connection("target", target, params.target_conn_id, tgt_error))
        if src is not None and tgt is not None:
            try:
                source_identity, target_identity = _database_identity(src), _database_identity(tgt)
                distinct = check_distinct_databases(
                    source_identity, target_identity, source, target, params.target_conn_id
                )
            except psycopg.Error as exc:
                distinct = _query_failed("distinct_databases", source, params.source_conn_id, exc)
            report.results.append(distinct)
            if not distinct.ok:  # refused first: the other checks' fixes would act on the production tables
                log.info(report.summary())
                return report
        selected: list[TableInfo] = []
        application_roles: list[str] = []  # the source's, which the target's fence takes over at rollback
        if src is None:
            report.results.extend(skipped(n, "source") for n in _SOURCE_CHECKS)
        else:
            fix = fix_no_pk or params.replica_identity_full_for_no_pk
            try:
                results, selected, application_roles = _source_checks(
                    src, source, params, connect_names_in_use, fix, owned_by_this_migration
                )
                report.results.extend(results)
            except psycopg.Error as exc:  # e.g. permission denied on a catalog function: report, don't crash
                report.results.append(_query_failed("source_checks", source, params.source_conn_id, exc))
        if src is None or tgt is None:
            which = "target" if tgt is None else "source"
            later = ("target_role", "target_tables", "roles", "target_subscription", "source_subscription")
            report.results.extend(skipped(n, which) for n in later)
        else:
            try:
                role_facts = read_target_role_facts(
                    tgt, list(params.schemas), [t.ref for t in selected], application_roles
                )
                report.results.extend(check_target_privileges(role_facts))
                states = _target_states(tgt, [t.ref for t in selected])
                report.results.append(check_target_tables(states, target, params.target_conn_id))
                report.results.append(_roles_check(src, tgt, params, target))
                native = len(split_by_channel(selected)[1])
                report.results.append(check_subscription_rights(_subscription_facts(tgt), native))
                report.results.append(check_subscription_rights(_subscription_facts(src), native, side="source"))
            except psycopg.Error as exc:
                report.results.append(_query_failed("target_tables", target, params.target_conn_id, exc))
    finally:
        for conn in (src, tgt):
            if conn is not None:
                conn.close()
    log.info(report.summary())
    return report


def _source_checks(
    conn: psycopg.Connection,
    source: PgEndpoint,
    params: MigrationParams,
    connect_names_in_use: set[str] | None,
    fix_no_pk: bool,
    owned: bool,
) -> tuple[list[CheckResult], list[TableInfo], list[str]]:
    """The source's results, its selected tables and its application roles (`privileges.FenceRights`)."""
    names = params.names
    results = []
    available = list_tables(conn, params.schemas)
    schemas = list(params.schemas)
    present = {r[0] for r in conn.execute("SELECT nspname FROM pg_namespace WHERE nspname = ANY(%s)", (schemas,))}
    unknown = None
    try:
        selected = select_tables(available, params.schemas, params.tables)
    except UnknownTables as exc:
        # Report it, and still check the tables that do exist, so one run shows every problem.
        unknown = str(exc)
        known = {t.ref: t for t in available}
        selected = [known[TableRef(s, n)] for s, n in dict.fromkeys(params.tables) if TableRef(s, n) in known]
    results.append(check_params(unknown, [s for s in params.schemas if s not in present], len(selected)))

    settings = dict(
        conn.execute(
            "SELECT name, setting FROM pg_settings "
            "WHERE name IN ('wal_level', 'max_replication_slots', 'max_wal_senders')"
        ).fetchall()
    )
    results.append(check_wal_level(settings))
    row = conn.execute(
        "SELECT plugin, database, active FROM pg_replication_slots WHERE slot_name = %s", (names.slot,)
    ).fetchone()
    slot = None if row is None else {"plugin": row[0], "database": row[1], "active": row[2]}
    slots_used = conn.execute("SELECT count(*) FROM pg_replication_slots").fetchone()[0]
    senders_used = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'walsender'").fetchone()[0]
    results.append(check_capacity(settings, slots_used, senders_used, slot is not None, bool(slot and slot["active"])))

    publication_exists = bool(
        conn.execute("SELECT 1 FROM pg_publication WHERE pubname = %s", (names.publication,)).fetchone()
    )
    role_facts = read_source_role_facts(conn, schemas, available, selected, publication_exists)
    results.extend(check_source_privileges(role_facts))

    unlogged = _unlogged_tables(conn, selected)
    made_logged, logged_error = [], None
    if unlogged and params.set_logged_for_unlogged:
        try:
            _set_logged(conn, unlogged)
            made_logged = unlogged
        except psycopg.Error as exc:
            logged_error = str(exc).strip()
    results.append(check_unlogged_tables(unlogged, made_logged, logged_error))

    gaps = replica_identity_gaps(selected, _leaf_identities(conn, selected))
    applied, error = [], None
    if gaps and fix_no_pk:
        try:
            _apply_replica_identity_full(conn, gaps)
            applied = gaps
        except psycopg.Error as exc:
            error = str(exc).strip()
    partition_of = {p: t.ref for t in selected for p in t.partitions}
    results.append(check_replica_identity(gaps, applied, error, partition_of))
    results.append(check_primary_keys(selected, names.native_subscription))

    uncarriable = uncarriable_columns(selected) + unmatchable_keyless_columns(selected)
    results.append(check_column_types(uncarriable, routed_columns(selected)))
    results.append(check_large_objects(*large_object_summary(conn)))
    connectors = [names.source_connector, names.sink_connector]
    results.append(
        check_names(
            slot=names.slot,
            publication=names.publication,
            slot_row=slot,
            publication_exists=publication_exists,
            source_db=source.dbname,
            connectors=connectors,
            connect_names_in_use=connect_names_in_use,
            owned_by_this_migration=owned,
        )
    )
    return results, selected, list(role_facts.fence.application_roles)
