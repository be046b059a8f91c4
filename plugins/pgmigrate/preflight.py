"""Preflight: everything that would make the migration fail later, found before anything is created.

`run_preflight` reads facts from the source and target (I/O) and hands them to the `check_*` rules
(pure functions, unit-tested on fakes). Each rule returns a `CheckResult` whose `fix` is the exact SQL
or setting to apply, so the on-call reader never has to work out what to run. Every check runs even
after one fails, and `raise_if_failed()` lists every failure at once: one rerun, not one per problem.
When a connection fails, the checks that need it are reported as skipped (not run), not as passed.

The only write is opt-in: with `fix_no_pk` (or the `replica_identity_full_for_no_pk` param) tables
without a primary key get `REPLICA IDENTITY FULL` on the source, and the result says so.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from pgmigrate.catalog import FIRST_NORMAL_OID, Column, TableInfo, TableRef, UnknownTables, list_tables, select_tables
from pgmigrate.endpoints import PgEndpoint
from pgmigrate.params import MigrationParams

log = logging.getLogger(__name__)

# What Debezium 3.6's PostgreSQL connector (the version the stack runs) can carry, from its data type
# mapping reference (postgresql.adoc, "Data type mappings") and PostgresValueConverter.schemaBuilder():
# a column whose type has no mapping gets no schema and, with include.unknown.datatypes=false (our
# connector config), is left out of every event: the target column would silently stay NULL.
# Built-in types by OID (fixed in pg_type.dat across PostgreSQL versions).
SUPPORTED_BUILTIN_TYPES: dict[int, str] = {
    16: "boolean", 17: "bytea", 18: '"char"', 19: "name", 20: "bigint", 21: "smallint", 23: "integer",
    25: "text", 26: "oid", 114: "json", 142: "xml", 600: "point", 650: "cidr", 700: "real",
    701: "double precision", 774: "macaddr8", 790: "money", 829: "macaddr", 869: "inet", 1042: "character",
    1043: "character varying", 1082: "date", 1083: "time", 1114: "timestamp", 1184: "timestamptz",
    1186: "interval", 1266: "timetz", 1560: "bit", 1562: "bit varying", 1700: "numeric", 2950: "uuid",
    3614: "tsvector", 3802: "jsonb", 3904: "int4range", 3906: "numrange", 3908: "tsrange",
    3910: "tstzrange", 3912: "daterange", 3926: "int8range",
}  # fmt: skip
# Arrays of every element type are carried: the PostgresTextFormConverter (include/converters, in the source
# connector's config) sends any array as PostgreSQL's own array text, which the target parses back, so Debezium's
# array mappings (none for money[], interval[], bit[], arrays of domains or composites, multi-dimensional arrays)
# no longer matter. Measured for those, enum[], numeric[], range[], hstore[], timetz[] and 2-D arrays.
# Extension types Debezium recognises by type name (TypeRegistry); all other extension types are dropped.
SUPPORTED_EXTENSION_TYPES = frozenset(
    {"citext", "hstore", "ltree", "geometry", "geography", "vector", "halfvec", "sparsevec", "isbn"}
)
# Not in the list, so refused: composite types, user-defined ranges and multiranges, the geometric types
# other than point (box, lseg, line, path, polygon, circle: mapped only from Debezium 3.7), pg_lsn, tsquery,
# jsonpath, txid_snapshot/pg_snapshot, reg* types, int2vector/oidvector, and domains whose base type is any of
# these. Domains over supported types are carried as their base type (by Debezium's own conversion, not the
# converter's text form: README, "Known limits").
# Carried, but not exactly when streamed: timetz. Debezium turns a streamed timetz into an OffsetTime at UTC before
# any converter sees it, so '03:04:05+02' arrives as '01:04:05+00' (the same instant of the day) and '24:00:00'
# as '00:00:00'. The check names such columns in its result instead of refusing them (UTC values are exact).
LOSSY_WHEN_STREAMED: dict[int, str] = {1266: "timetz"}


@dataclass(frozen=True)
class PgTypeFacts:
    """A user-defined or extension type, as much as the type rule needs (read by `_type_facts`)."""

    oid: int
    name: str
    kind: str  # typtype: b base, c composite, d domain, e enum, r range, m multirange, p pseudo
    base_oid: int | None = None  # domains: typbasetype
    element_oid: int | None = None  # arrays (typcategory 'A'): typelem


@dataclass
class CheckResult:
    name: str
    ok: bool
    problem: str = ""
    fix: str = ""
    detail: str = ""  # what a passing check found or did (e.g. "applied REPLICA IDENTITY FULL to …")
    skipped: bool = False  # not run because a connection it needs failed

    @property
    def status(self) -> str:
        return "SKIP" if self.skipped else "PASS" if self.ok else "FAIL"


class PreflightError(RuntimeError):
    def __init__(self, message: str, report: PreflightReport) -> None:
        super().__init__(message)
        self.report = report


@dataclass
class PreflightReport:
    migration_id: str
    results: list[CheckResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.results)

    @property
    def failed(self) -> list[CheckResult]:
        return [r for r in self.results if not r.ok and not r.skipped]

    @property
    def skipped(self) -> list[CheckResult]:
        return [r for r in self.results if r.skipped]

    def summary(self) -> str:
        """One line per check, for the task log."""
        lines = [f"Preflight of migration {self.migration_id!r}:"]
        for r in self.results:
            text = r.problem if not r.ok else r.detail
            lines.append(f"  {r.status} {r.name}" + (f": {text}" if text else ""))
        return "\n".join(lines)

    def failure_message(self) -> str:
        failed = self.failed
        lines = [f"Preflight of migration {self.migration_id!r} failed {len(failed)} of {len(self.results)} checks:"]
        for i, r in enumerate(failed, 1):
            lines.append(f"{i}. [{r.name}] {r.problem}")
            if r.fix:
                lines.append("   Fix: " + r.fix.replace("\n", "\n        "))
        if self.skipped:
            lines.append(
                "Not run because a connection failed (rerun after fixing it): "
                + ", ".join(r.name for r in self.skipped)
                + "."
            )
        return "\n".join(lines)

    def raise_if_failed(self) -> None:
        if not self.ok:
            raise PreflightError(self.failure_message(), self)

    def to_dict(self) -> dict[str, Any]:
        return {"migration_id": self.migration_id, "ok": self.ok, "results": [asdict(r) for r in self.results]}


def _q(*parts: str) -> str:
    """An identifier as SQL text for a fix the operator runs (always quoted, so always valid)."""
    return sql.Identifier(*parts).as_string(None)


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


def skipped(name: str, which: str) -> CheckResult:
    return CheckResult(name, ok=False, problem=f"not run: the {which} connection failed", skipped=True)


# --- pure rules ----------------------------------------------------------------------------------


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


def check_role(
    role: Mapping[str, Any], dbname: str, not_owned: list[str], not_readable: list[str], publication_exists: bool
) -> CheckResult:
    """Debezium needs REPLICATION for its slot; creating the publication needs CREATE on the database and
    ownership of every published table (superusers need neither); the snapshot needs SELECT."""
    name = role["name"]
    if role["superuser"]:
        return CheckResult("source_role", ok=True, detail=f"role {name} is a superuser")
    problems, fixes = [], []
    if not role["replication"]:
        problems.append(f"role {name} lacks the REPLICATION attribute")
        fixes.append(f"ALTER ROLE {_q(name)} REPLICATION;")
    if not publication_exists and not role["create_on_db"]:
        problems.append(f"role {name} cannot create the publication (no CREATE on database {dbname})")
        fixes.append(f"GRANT CREATE ON DATABASE {_q(dbname)} TO {_q(name)};")
    if not publication_exists and not_owned:
        problems.append(f"role {name} does not own {_n(len(not_owned), 'table')} to publish: {', '.join(not_owned)}")
        fixes.append(
            "\n".join(f"ALTER TABLE {t} OWNER TO {_q(name)};" for t in not_owned)
            + "\n(or run the source connection as a superuser)"
        )
    if not_readable:
        problems.append(f"role {name} cannot read {_n(len(not_readable), 'table')}: {', '.join(not_readable)}")
        fixes.append("\n".join(f"GRANT SELECT ON {t} TO {_q(name)};" for t in not_readable))
    if problems:
        return CheckResult("source_role", ok=False, problem="; ".join(problems), fix="\n".join(fixes))
    return CheckResult("source_role", ok=True, detail=f"role {name} has REPLICATION and can create the publication")


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


def check_primary_keys(tables: Iterable[TableInfo], subscription: str) -> CheckResult:
    """Tables with a primary key go through Debezium and the JDBC sink (applied by key). Keyless tables
    go through PostgreSQL's own logical replication (`keyless_replication`), which keeps duplicate rows
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


def check_subscription_rights(facts: Mapping[str, Any], keyless_count: int) -> CheckResult:
    """The keyless tables' subscription is created on the target: the target role must be allowed to
    (superuser; from PostgreSQL 16 also pg_create_subscription) and the target must have logical
    replication workers for it (one apply worker, plus table-sync workers during the initial copy)."""
    name = "target_subscription"
    if not keyless_count:
        return CheckResult(name, ok=True, detail="no keyless tables: no subscription needed")
    problems, fixes = [], []
    if not facts["superuser"] and not facts["create_subscription"]:
        problems.append(f"target role {facts['role']} may not CREATE SUBSCRIPTION (needed for the keyless tables)")
        fixes.append(f"GRANT pg_create_subscription TO {_q(facts['role'])};  -- PostgreSQL 16+; on 15 use a superuser")
    if int(facts["max_logical_replication_workers"]) < 2:
        problems.append(
            f"max_logical_replication_workers is {facts['max_logical_replication_workers']} on the target; "
            "the keyless tables need an apply worker and a table-sync worker"
        )
        fixes.append("ALTER SYSTEM SET max_logical_replication_workers = 4; and restart the target.")
    if problems:
        return CheckResult(name, ok=False, problem="; ".join(problems), fix="\n".join(fixes))
    return CheckResult(name, ok=True, detail=f"target role {facts['role']} can create the keyless tables' subscription")


def _type_problem(oid: int, types: Mapping[int, PgTypeFacts], element_oid: int | None, depth: int = 0) -> str | None:
    """Why Debezium cannot carry a value of type `oid` (None when it can)."""
    if element_oid is not None:  # an array: carried as its text form by the PostgresTextFormConverter
        return None
    if oid in SUPPORTED_BUILTIN_TYPES:
        return None
    if oid < FIRST_NORMAL_OID:
        return "built-in type Debezium has no mapping for"
    facts = types.get(oid)
    if facts is None:
        return "unknown user-defined type"
    if facts.kind == "e":
        return None
    if facts.kind == "c":
        return "composite type (Debezium has no mapping)"
    if facts.kind == "d" and facts.base_oid is not None and depth < 10:
        base = types.get(facts.base_oid)
        inner = _type_problem(facts.base_oid, types, base.element_oid if base else None, depth + 1)
        return f"domain over an unsupported type ({inner})" if inner else None
    if facts.kind == "b" and facts.name in SUPPORTED_EXTENSION_TYPES:
        return None
    if facts.kind in ("r", "m"):
        return "user-defined range type (Debezium has no mapping)"
    return f"type {facts.name} has no Debezium mapping"


def column_problem(column: Column, types: Mapping[int, PgTypeFacts] | None = None) -> str | None:
    # `element_kind` is set only for real arrays (catalog also fills element_oid for name/point/box).
    return _type_problem(column.type_oid, types or {}, column.element_oid if column.element_kind else None)


def unsupported_columns(tables: Iterable[TableInfo], types: Mapping[int, PgTypeFacts] | None = None) -> list[str]:
    """Every column the pipeline cannot carry, as `schema.table.column: type (why)`. Stored generated
    columns are skipped: logical replication does not send them, the target computes its own."""
    found = []
    for t in tables:
        for c in t.columns:
            if c.generated:
                continue
            why = column_problem(c, types)
            if why:
                found.append(f"{t.ref.qualified}.{c.name}: {c.type_name} ({why})")
    return found


def lossy_columns(tables: Iterable[TableInfo]) -> list[str]:
    """Columns whose streamed values Debezium normalizes (LOSSY_WHEN_STREAMED), as `schema.table.column`."""
    return [
        f"{t.ref.qualified}.{c.name}"
        for t in tables
        for c in t.columns
        if not c.generated and c.type_oid in LOSSY_WHEN_STREAMED
    ]


def check_column_types(problems: list[str], timetz_columns: list[str] | None = None) -> CheckResult:
    if not problems:
        detail = "every column type maps to a Debezium type"
        if timetz_columns:
            detail += (
                f"; note: {_n(len(timetz_columns), 'timetz column')} ({', '.join(timetz_columns)}): values written "
                "during the migration arrive with their offset turned into +00 (same instant of the day)"
            )
        return CheckResult("column_types", ok=True, detail=detail)
    return CheckResult(
        "column_types",
        ok=False,
        problem=f"{_n(len(problems), 'column')} of types the pipeline cannot carry (Debezium would drop them "
        "silently): " + "; ".join(problems),
        fix="Change these columns to a supported type on the source (e.g. ALTER TABLE … ALTER COLUMN … TYPE text "
        "USING …::text, or jsonb for composites), or leave their tables out of `tables`.",
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


# --- I/O ------------------------------------------------------------------------------------------


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


_TYPE_FACTS_SQL = """
SELECT t.oid, t.typname, t.typtype, nullif(t.typbasetype, 0),
       CASE WHEN t.typcategory = 'A' THEN nullif(t.typelem, 0) END
FROM pg_type t WHERE t.oid = ANY(%s)
"""


def _type_facts(conn: psycopg.Connection, tables: list[TableInfo]) -> dict[int, PgTypeFacts]:
    """Facts of every user-defined type the columns use, following domains to their base types."""
    wanted = {o for t in tables for c in t.columns for o in (c.type_oid, c.element_oid) if o}
    facts: dict[int, PgTypeFacts] = {}
    while wanted:
        rows = conn.execute(_TYPE_FACTS_SQL, (sorted(wanted),)).fetchall()
        for oid, name, kind, base, elem in rows:
            facts[oid] = PgTypeFacts(oid, name, kind, base, elem)
        wanted = {o for f in facts.values() for o in (f.base_oid, f.element_oid) if o and o not in facts}
    return facts


def _leaf_identities(conn: psycopg.Connection, tables: list[TableInfo]) -> dict[TableRef, tuple[str, bool, bool]]:
    leaves = [p for t in tables for p in t.partitions]
    if not leaves:
        return {}
    rows = conn.execute(
        "SELECT n.nspname, c.relname, c.relreplident, "
        "EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary), "
        "EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisreplident) "
        "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "JOIN unnest(%s::text[], %s::text[]) w(s, r) ON w.s = n.nspname AND w.r = c.relname",
        ([p.schema for p in leaves], [p.name for p in leaves]),
    ).fetchall()
    return {TableRef(s, r): (ident, pk, ri) for s, r, ident, pk, ri in rows}


def _apply_replica_identity_full(conn: psycopg.Connection, refs: list[TableRef]) -> None:
    with conn.transaction():
        for ref in refs:
            conn.execute(sql.SQL("ALTER TABLE {} REPLICA IDENTITY FULL").format(ref.ident))
            log.info("preflight: applied REPLICA IDENTITY FULL to %s", ref.qualified)


def _role_facts(conn: psycopg.Connection, tables: list[TableInfo]) -> tuple[dict[str, Any], list[str], list[str]]:
    name, superuser, replication, create_on_db = conn.execute(
        "SELECT rolname, rolsuper, rolreplication, has_database_privilege(current_database(), 'CREATE') "
        "FROM pg_roles WHERE rolname = current_user"
    ).fetchone()
    refs = [t.ref for t in tables]
    rows = conn.execute(
        "SELECT n.nspname, c.relname, pg_has_role(c.relowner, 'USAGE'), has_table_privilege(c.oid, 'SELECT') "
        "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "JOIN unnest(%s::text[], %s::text[]) w(s, r) ON w.s = n.nspname AND w.r = c.relname",
        ([r.schema for r in refs], [r.name for r in refs]),
    ).fetchall()
    not_owned = [_q(s, r) for s, r, owns, _ in rows if not owns]
    not_readable = [_q(s, r) for s, r, _, reads in rows if not reads]
    role = {"name": name, "superuser": superuser, "replication": replication, "create_on_db": create_on_db}
    return role, not_owned, not_readable


def _subscription_facts(conn: psycopg.Connection) -> dict[str, Any]:
    role, superuser, version, workers = conn.execute(
        "SELECT current_user, rolsuper, current_setting('server_version_num')::int, "
        "current_setting('max_logical_replication_workers') FROM pg_roles WHERE rolname = current_user"
    ).fetchone()
    create = False
    if version >= 160000:
        create = conn.execute("SELECT pg_has_role('pg_create_subscription', 'MEMBER')").fetchone()[0]
    return {
        "role": role,
        "superuser": superuser,
        "create_subscription": create,
        "max_logical_replication_workers": workers,
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
    "params", "wal_level", "replication_capacity", "source_role", "replica_identity", "primary_keys", "column_types",
    "names",
)  # fmt: skip


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
        selected: list[TableInfo] = []
        if src is None:
            report.results.extend(skipped(n, "source") for n in _SOURCE_CHECKS)
        else:
            fix = fix_no_pk or params.replica_identity_full_for_no_pk
            try:
                results, selected = _source_checks(
                    src, source, params, connect_names_in_use, fix, owned_by_this_migration
                )
                report.results.extend(results)
            except psycopg.Error as exc:  # e.g. permission denied on a catalog function: report, don't crash
                report.results.append(_query_failed("source_checks", source, params.source_conn_id, exc))
        if src is None or tgt is None:
            which = "target" if tgt is None else "source"
            report.results.extend(skipped(n, which) for n in ("target_tables", "target_subscription"))
        else:
            try:
                states = _target_states(tgt, [t.ref for t in selected])
                report.results.append(check_target_tables(states, target, params.target_conn_id))
                keyless = sum(1 for t in selected if not t.primary_key)
                report.results.append(check_subscription_rights(_subscription_facts(tgt), keyless))
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
) -> tuple[list[CheckResult], list[TableInfo]]:
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
    role, not_owned, not_readable = _role_facts(conn, selected)
    results.append(check_role(role, source.dbname, not_owned, not_readable, publication_exists))

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
    results.append(check_primary_keys(selected, names.keyless_subscription))

    results.append(
        check_column_types(unsupported_columns(selected, _type_facts(conn, selected)), lossy_columns(selected))
    )
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
    return results, selected
