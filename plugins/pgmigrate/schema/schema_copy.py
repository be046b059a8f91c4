"""Copy the source schema to the target in two parts, with pg_dump/pg_restore (PostgreSQL 15 binaries).

`copy_pre_data` runs before any data moves: types, enums, domains, extensions, functions, sequences, tables
(with their CHECK constraints and defaults) AND the primary keys, because the JDBC sink upserts by primary
key; pg_dump files PKs under post-data, so they are taken from there and restored right after pre-data.
`apply_post_data` (`post_data.py`) runs once the snapshot is in: secondary indexes, unique/exclusion
constraints, NOT VALID checks, rules, policies, statistics, triggers, then the foreign keys.
Both halves share the plan (the dump, the entries chosen from it, their objects on the source:
`schema_plan.py`) and, here, the check of what already exists on the target and the restore of the rest. The
table of contents and the tool runs are in `pg_dump_toc.py`; `sequences.py` reads the source's sequences.

How (and why) it is rerun-safe:
- One custom-format dump (`pg_dump -Fc --schema-only`, `-n` per schema, `-e` per extension the schemas
  use). Its table of contents (`pg_restore -l -v`) names each entry's catalog object (classid, oid) and the
  entries it depends on; we choose entries from it and restore exactly those with `pg_restore -L`. pg_dump
  writes every statement; we only choose, never edit SQL text or split scripts (function bodies, quoting).
- Skip what exists: every entry's object is identified on the source (`pg_identify_object_as_address`) and
  looked up on the target (`pg_get_object_address`), so a rerun restores nothing and a half-done run
  restores the rest. An existing table must have the same columns, or we stop and say which differ. Entries
  without an object of their own follow their parent (COMMENT, SEQUENCE OWNED BY) or check their effect
  (TABLE/INDEX ATTACH: is the partition attached? ROW SECURITY: is it enabled?).
- A subset of tables: we still dump whole schemas and keep the selected tables, their partitions, what
  hangs off them (defaults, constraints, indexes, triggers, owned sequences, comments) and what they
  depend on (types, domains, functions, sequences, extensions, schemas), following the dump's dependency
  graph; views are kept when all their tables are. A foreign key to a table left out is not created and is
  reported (`foreign_keys.skipped`). `pg_dump -t` would drop the dependencies (and, on 15, the partitions).
  Every sequence of the schemas is kept, with its options, even one nothing kept depends on (used through
  `nextval()` alone): the cutover syncs them all. Only identity sequences go with their tables.
- Pre-data is one transaction (`--single-transaction`): it applies completely or not at all. Post-data
  is not (see `post_data.py`).

Choices worth knowing:
- Identity columns GENERATED ALWAYS become BY DEFAULT on the target, since the sink inserts the source's
  ids. `copy_pre_data` returns every such column, changed now or on an earlier run, so the caller can record
  them (cutover sets them back to ALWAYS). Sequences are created at their start values and synced at cutover.
- Ownership and grants: grants and default privileges are restored, and the source's owners unless
  `keep_ownership=false` (then `--no-owner`: the target role owns everything). The roles must exist on the
  target first, and for owners the target role must be a superuser or a member of each: preflight's `roles`
  check (`roles.py`) names what is missing with the statements.
- Also left out: publications/subscriptions (the migration makes its own), security labels, tablespaces,
  foreign tables, event triggers, large objects (`large_objects` copies them after the load). Materialized
  views are created empty (schema-only): `materialized_views` refreshes them after the load and before the pause.
- pg_dump must be at least the source server's major version: set PGMIGRATE_PG_BIN to its directory.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from pgmigrate.core.endpoints import PgEndpoint
from pgmigrate.schema.pg_dump_toc import SchemaCopyError, TocEntry, run_tool, tool_path
from pgmigrate.schema.schema_plan import SchemaPlan, plan_tables, prepare_plan

log = logging.getLogger(__name__)


def _target_oid(conn: psycopg.Connection, address: tuple[str, list[str], list[str]]) -> int | None:
    try:
        return conn.execute("SELECT objid FROM pg_get_object_address(%s, %s, %s)", address).fetchone()[0]
    except psycopg.OperationalError:
        raise
    except psycopg.Error:  # undefined table/object/function/schema…: not there
        return None


def _columns(conn: psycopg.Connection, oid: int) -> dict[str, str]:
    return dict(
        conn.execute(
            "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
            "WHERE attrelid = %s AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
            (oid,),
        ).fetchall()
    )


def _column_diff(source: dict[str, str], target: dict[str, str]) -> list[str]:
    diff = [f"{c} missing on the target" for c in source if c not in target]
    diff += [
        f"{c} is {target[c]} on the target, {source[c]} on the source"
        for c in source
        if c in target and target[c] != source[c]
    ]
    diff += [f"{c} exists only on the target" for c in target if c not in source]
    return diff


def entries_to_restore(
    plan: SchemaPlan, candidates: list[TocEntry], src: psycopg.Connection, tgt: psycopg.Connection
) -> tuple[list[int], list[int]]:
    """Which candidates are missing on the target (in dump order), and which are there already."""
    restore: dict[int, None] = {}  # ordered set
    existing: list[int] = []
    mismatched: list[str] = []
    for e in candidates:
        i = e.dump_id
        if e.classid:
            oid = _target_oid(tgt, plan.address[i])
            if oid is not None and e.desc == "TABLE":
                diff = _column_diff(_columns(src, e.objid), _columns(tgt, oid))
                if diff:
                    mismatched.append(f"{plan.shown(i)}: {'; '.join(diff)}")
            if oid is None and i in plan.pk:  # a primary key under another name counts too
                table = _target_oid(tgt, ("table", plan.address[i][1][:-1], []))
                oid = table if _flag(tgt, "has_pk", table) else None
            _add(existing, restore, oid is not None, i)
        elif e.desc in ("TABLE ATTACH", "INDEX ATTACH") and i in plan.attach_child:
            child = plan.attach_child[i]
            child_oid = None if child in restore else _target_oid(tgt, _relation_address(plan, child))
            _add(existing, restore, _flag(tgt, "relispartition", child_oid), i)
        elif e.desc == "ROW SECURITY":
            table = next(d for d in e.deps if plan.entries[d].desc == "TABLE")
            _add(existing, restore, _flag(tgt, "relrowsecurity", _target_oid(tgt, plan.address[table])), i)
        elif e.desc == "SEQUENCE OWNED BY":
            # With its sequence, or with its table: an earlier run that left the table out created the
            # sequence standalone. ALTER SEQUENCE … OWNED BY is safe to repeat.
            tables = [
                d for s in e.deps for d in plan.entries[s].deps if d in plan.entries and plan.entries[d].desc == "TABLE"
            ]
            if any(d in restore for d in (*e.deps, *tables)):
                restore[i] = None
        elif any(d in restore for d in e.deps):  # COMMENT…: with their parent
            restore[i] = None
    if mismatched:
        raise SchemaCopyError(
            f"{len(mismatched)} tables already exist on the target {plan.target.label} with other columns:\n"
            + "\n".join(mismatched)
            + "\nDrop them on the target (DROP TABLE …;) so they are recreated from the source, or align them."
        )
    return list(restore), existing


_FLAGS = {
    "relispartition": "SELECT relispartition FROM pg_class WHERE oid = %s",
    "relrowsecurity": "SELECT relrowsecurity FROM pg_class WHERE oid = %s",
    "has_pk": "SELECT EXISTS (SELECT 1 FROM pg_index WHERE indrelid = %s AND indisprimary)",
}


def _flag(tgt: psycopg.Connection, flag: str, oid: int | None) -> bool:
    """A yes/no fact about a target relation (False when it does not exist)."""
    return oid is not None and bool(tgt.execute(_FLAGS[flag], (oid,)).fetchone()[0])


def _add(existing: list[int], restore: dict[int, None], present: bool, i: int) -> None:
    if present:
        existing.append(i)
    else:
        restore[i] = None


def _relation_address(plan: SchemaPlan, i: int) -> tuple[str, list[str], list[str]]:
    kind, names, args = plan.address[i]
    if kind == "table constraint":  # a PK/unique constraint's index is named like the constraint
        return ("index", [names[0], names[-1]], [])
    return kind, names, args


def restore_entries(plan: SchemaPlan, ids: list[int], name: str, single_transaction: bool) -> None:
    if not ids:
        return
    listfile = plan.workdir / f"{name}.list"
    listfile.write_text("".join(plan.entries[i].line + "\n" for i in ids))
    args = [
        tool_path("pg_restore"),
        f"--dbname={plan.target.dbname}",
        "--no-tablespaces",
        "--no-security-labels",
        "--no-publications",
        "--no-subscriptions",
        "--exit-on-error",
        f"--use-list={listfile}",
        str(plan.dump),
    ]
    if not plan.keep_ownership:
        args.insert(2, "--no-owner")
    if single_transaction:
        args.insert(2, "--single-transaction")
    run_tool(args, plan.target, f"pg_restore of {name} ({len(ids)} entries)")


def open_connections(source: PgEndpoint, target: PgEndpoint) -> tuple[psycopg.Connection, psycopg.Connection]:
    src = source.connect(autocommit=True)
    try:
        tgt = target.connect(autocommit=True)
    except BaseException:
        src.close()
        raise
    for conn in (src, tgt):  # type names come out schema-qualified alike on both sides
        conn.execute("SET search_path = pg_catalog")
    return src, tgt


def _ensure_extension_schemas(plan: SchemaPlan, restore: list[int], tgt: psycopg.Connection) -> None:
    """pg_dump writes CREATE EXTENSION … WITH SCHEMA s but not s itself when s is not a migrated schema."""
    for i in restore:
        if plan.entries[i].desc == "EXTENSION":
            schema = plan.extensions.get(plan.address[i][1][0])
            if schema and schema not in plan.schemas:
                tgt.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))


def _identity_by_default(plan: SchemaPlan, src: psycopg.Connection, tgt: psycopg.Connection) -> list[dict[str, Any]]:
    """Make the source's GENERATED ALWAYS identities BY DEFAULT on the target; list all of them."""
    oids = [e.objid for e in plan.ordered(plan.keep) if e.desc == "TABLE"]
    rows = src.execute(
        "SELECT n.nspname, c.relname, a.attname FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE a.attidentity = 'a' AND NOT a.attisdropped AND c.oid = ANY(%s) ORDER BY 1, 2, a.attnum",
        (oids,),
    ).fetchall()
    columns = []
    for schema, table, column in rows:
        row = tgt.execute(
            "SELECT a.attidentity FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relname = %s AND a.attname = %s",
            (schema, table, column),
        ).fetchone()
        changed = bool(row and row[0] == "a")
        if changed:
            tgt.execute(
                sql.SQL("ALTER TABLE {} ALTER COLUMN {} SET GENERATED BY DEFAULT").format(
                    sql.Identifier(schema, table), sql.Identifier(column)
                )
            )
        if row and row[0] in ("a", "d"):
            columns.append({"schema": schema, "table": table, "column": column, "changed_now": changed})
    return columns


def copy_pre_data(
    source: PgEndpoint,
    target: PgEndpoint,
    schemas: Iterable[str],
    tables: Iterable[Any] = (),
    keep_ownership: bool = True,
) -> dict[str, Any]:
    """Create on the target what the data needs: pre-data plus primary keys; ALWAYS identities become BY
    DEFAULT. `tables`: (schema, table) pairs or TableRefs, empty for every table of `schemas`. Idempotent.
    Returns a JSON-able summary; record its `identity_columns` in the state for cutover."""
    started = time.monotonic()
    src, tgt = open_connections(source, target)
    with src, tgt, tempfile.TemporaryDirectory(prefix="pgmigrate-schema-") as tmp:
        plan = prepare_plan(src, source, target, schemas, tables, Path(tmp))
        plan.keep_ownership = keep_ownership
        candidates = plan.ordered(i for i in plan.keep if i not in plan.post or i in plan.pk)
        restore, existing = entries_to_restore(plan, candidates, src, tgt)
        _ensure_extension_schemas(plan, restore, tgt)
        restore_entries(plan, restore, "pre-data", single_transaction=True)
        identity = _identity_by_default(plan, src, tgt)
        result = {
            "schemas": plan.schemas,
            "tables": [t.qualified for t in plan_tables(plan)],
            "extensions": sorted(plan.address[i][1][0] for i in plan.keep if plan.entries[i].desc == "EXTENSION"),
            "created": [plan.shown(i) for i in restore],
            "existing": len(existing),
            "primary_keys": [plan.shown(e.dump_id) for e in plan.ordered(plan.pk) if e.desc == "CONSTRAINT"],
            "identity_columns": identity,
            "seconds": round(time.monotonic() - started, 1),
        }
    log.info(
        "schema pre-data on %s: %d tables, %d objects created, %d already there, %d primary keys, "
        "%d ALWAYS identities now BY DEFAULT (%d changed now) in %.1fs",
        target.label,
        len(result["tables"]),
        len(restore),
        len(existing),
        len(result["primary_keys"]),
        len(identity),
        sum(c["changed_now"] for c in identity),
        result["seconds"],
    )
    return result
