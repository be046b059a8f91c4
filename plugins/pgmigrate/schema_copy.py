"""Copy the source schema to the target in two parts, with pg_dump/pg_restore (PostgreSQL 15 binaries).

`copy_pre_data` runs before any data moves: types, enums, domains, extensions, functions, sequences, tables
(with their CHECK constraints and defaults) AND the primary keys, because the JDBC sink upserts by primary
key; pg_dump files PKs under post-data, so they are taken from there and restored right after pre-data.
`apply_post_data` runs once the snapshot is in: secondary indexes, unique/exclusion constraints, NOT VALID
checks, rules, policies, statistics, triggers, then the foreign keys. `sequences_snapshot` only reads.

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
- Pre-data is one transaction (`--single-transaction`): it applies completely or not at all. Post-data
  is not: each index/constraint commits on its own, so a long index build does not hold every lock, and a
  crash leaves finished work that a rerun skips. A plain CREATE INDEX pauses the sink's writes to that table
  while it builds (Kafka holds the changes; the sink catches up after); CONCURRENTLY cannot run in a
  transaction nor on partitioned tables, so we take the pause before cutover rather than a second code path.

Choices worth knowing:
- Identity columns GENERATED ALWAYS become BY DEFAULT on the target, since the sink inserts the source's
  ids. `copy_pre_data` returns every such column, changed now or on an earlier run, so the caller can record
  them (cutover sets them back to ALWAYS). Sequences are created at their start values and synced at cutover.
- Foreign keys are added `NOT VALID` (brief lock, no scan) and then `VALIDATE`d (a scan under SHARE UPDATE
  EXCLUSIVE, which does not block the sink's writes). While streaming, rows of different tables arrive in
  per-topic order, so validation may meet a child row whose parent is not in yet: such a key stays NOT VALID,
  is reported as pending, and is validated by a rerun (or at cutover). PostgreSQL 15 cannot add a NOT VALID
  key on a partitioned table; those are added validated, and reported pending if orphans stop them.
- Triggers are created as on the source (pg_dump keeps ENABLE REPLICA/ALWAYS/DISABLE). They must not fire
  for the sink's writes (their effects arrive from the source already), and FK checks must not reject rows
  that arrive out of order: the sink connects with `session_replication_role=replica`
  (connector_configs.build_sink_config), under which ordinary triggers and FK triggers do not fire, exactly
  as for built-in logical replication. The application's sessions (origin) fire them after cutover with no
  switch to flip. Trade-off: that setting needs a superuser sink role, or on PostgreSQL 15+
  `GRANT SET ON PARAMETER session_replication_role TO <sink role>`; the alternative (DISABLE TRIGGER now,
  ENABLE at cutover) adds a cutover step that must not be forgotten. ENABLE ALWAYS triggers fire for the
  sink too, ENABLE REPLICA ones only for the sink: both are returned as warnings. Unique constraints are
  enforced whatever the role.
- Ownership and grants: restored with `--no-owner --no-privileges` (objects belong to the target login,
  no GRANTs copied), which suits the local stack and a single application role. A production target with
  several roles needs the roles created first and a restore without those flags.
- Also left out: publications/subscriptions (the migration makes its own), security labels, tablespaces,
  foreign tables, event triggers. Materialized views are created empty (schema-only): refresh at cutover.
- pg_dump must be at least the source server's major version: set PGMIGRATE_PG_BIN to its directory.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from pgmigrate.catalog import CONTROL_SCHEMA, TableRef, list_tables, select_tables
from pgmigrate.endpoints import PgEndpoint

log = logging.getLogger(__name__)

PG_BIN_DIR = Path(os.environ.get("PGMIGRATE_PG_BIN", "/usr/lib/postgresql/15/bin"))
TOOL_TIMEOUT_S = 3600

# Archive entry kinds we never restore: settings pg_restore applies itself, grants and labels (see
# --no-privileges), the source's replication objects, objects that need servers we do not copy, data.
EXCLUDED_DESCS = frozenset({
    "ENCODING", "STDSTRINGS", "SEARCHPATH", "DATABASE", "DATABASE PROPERTIES", "ACL", "DEFAULT ACL",
    "SECURITY LABEL", "PUBLICATION", "PUBLICATION TABLE", "PUBLICATION TABLES IN SCHEMA", "SUBSCRIPTION",
    "FOREIGN TABLE", "SERVER", "USER MAPPING", "EVENT TRIGGER", "TABLE DATA", "SEQUENCE SET",
    "MATERIALIZED VIEW DATA", "BLOB", "BLOBS", "BLOB METADATA", "LARGE OBJECT",
})  # fmt: skip
# Multi-word entry kinds of a schema-only archive, longest first, to split "<desc> <schema> <name> <owner>".
# Some start with another kind ("TABLE ATTACH" / "TABLE"): those are told apart by their catalog id, so a
# table in a schema called ATTACH still parses as a TABLE. Data-only kinds ("TABLE DATA") cannot occur.
_DESC_CLASS = {"TABLE ATTACH": 0, "INDEX ATTACH": 0, "SEQUENCE OWNED BY": 0, "DEFAULT ACL": 826}
_DESCS = sorted(
    {"FK CONSTRAINT", "CHECK CONSTRAINT", "ROW SECURITY", "MATERIALIZED VIEW", "OPERATOR CLASS", "OPERATOR FAMILY",
     "PROCEDURAL LANGUAGE", "SHELL TYPE", "TEXT SEARCH CONFIGURATION", "TEXT SEARCH DICTIONARY",
     "TEXT SEARCH PARSER", "TEXT SEARCH TEMPLATE", "ACCESS METHOD", "FOREIGN DATA WRAPPER", "FOREIGN TABLE",
     "SECURITY LABEL", "DATABASE PROPERTIES", "PUBLICATION TABLE", "PUBLICATION TABLES IN SCHEMA",
     "USER MAPPING", "EVENT TRIGGER", "LARGE OBJECT", *_DESC_CLASS},
    key=len,
    reverse=True,
)  # fmt: skip
_ENTRY_RE = re.compile(r"^(\d+); (\d+) (\d+) (.*)$")


class SchemaCopyError(RuntimeError):
    pass


@dataclass(frozen=True)
class TocEntry:
    dump_id: int
    classid: int  # catalog of the object (pg_class, pg_type, …); 0 for entries without an object of their own
    objid: int
    desc: str
    tag: str  # "<schema> <name> <owner>" as pg_restore prints it: for messages only (names may hold spaces)
    deps: tuple[int, ...] = ()

    @property
    def line(self) -> str:
        return f"{self.dump_id}; {self.classid} {self.objid} {self.desc} {self.tag}"


def parse_toc(listing: str) -> list[TocEntry]:
    """Entries of `pg_restore -l -v` output, with the dump ids each depends on."""
    entries: list[TocEntry] = []
    for line in listing.splitlines():
        if line.startswith(";\tdepends on:") and entries:
            deps = tuple(dict.fromkeys(int(d) for d in line.split(":", 1)[1].split()))
            entries[-1] = TocEntry(**{**entries[-1].__dict__, "deps": deps})
            continue
        m = _ENTRY_RE.match(line)
        if not m:
            continue
        dump_id, classid, objid, rest = int(m.group(1)), int(m.group(2)), int(m.group(3)), m.group(4)
        desc = next(
            (d for d in _DESCS if (rest == d or rest.startswith(d + " ")) and _DESC_CLASS.get(d, classid) == classid),
            rest.split(" ", 1)[0],
        )
        entries.append(TocEntry(dump_id, classid, objid, desc, rest[len(desc) :].strip()))
    return entries


def select_entries(entries: list[TocEntry], wanted_tables: set[int] | None) -> set[int]:
    """Dump ids to restore. `wanted_tables`: source oids of the tables to copy (with their partitions), or
    None for everything in the dumped schemas.

    An entry is dropped when it is excluded, is an unwanted table, or depends on a dropped one (a foreign
    key to a table left out, a view over it). For a subset, objects not tied to any table (types,
    functions, sequences, schemas, extensions) are kept only when something kept depends on them.
    """
    by_id = {e.dump_id: e for e in entries}
    dropped: dict[int, bool] = {}
    anchored: dict[int, bool] = {}

    def is_dropped(i: int, seen: frozenset[int] = frozenset()) -> bool:
        if i not in dropped:
            e = by_id.get(i)
            if e is None or i in seen:
                return False
            own = e.desc in EXCLUDED_DESCS or (
                e.desc == "TABLE" and wanted_tables is not None and e.objid not in wanted_tables
            )
            dropped[i] = own or any(is_dropped(d, seen | {i}) for d in e.deps)
        return dropped[i]

    def is_anchored(i: int, seen: frozenset[int] = frozenset()) -> bool:
        if i not in anchored:
            e = by_id.get(i)
            if e is None or i in seen:
                return False
            anchored[i] = e.desc == "TABLE" or any(is_anchored(d, seen | {i}) for d in e.deps)
        return anchored[i]

    alive = [e for e in entries if not is_dropped(e.dump_id)]
    if wanted_tables is None:
        keep = {e.dump_id for e in alive if e.classid}
    else:
        keep = {e.dump_id for e in alive if e.classid and is_anchored(e.dump_id)}
        todo = [d for i in keep for d in by_id[i].deps]
        while todo:  # what the kept objects need
            i = todo.pop()
            if i in keep or i not in by_id or is_dropped(i) or not by_id[i].classid:
                continue
            keep.add(i)
            todo.extend(by_id[i].deps)
    # Entries without an object of their own (COMMENT, ATTACH, OWNED BY, ROW SECURITY) follow their parents.
    keep |= {e.dump_id for e in alive if not e.classid and e.deps and all(d in keep for d in e.deps)}
    return keep


# --- running the tools --------------------------------------------------------------------------------


def _tool(name: str) -> str:
    path = PG_BIN_DIR / name
    if not path.exists():
        raise SchemaCopyError(f"{path} not found: install the PostgreSQL 15 client or set PGMIGRATE_PG_BIN.")
    return str(path)


def _errors(stderr: str) -> str:
    keep = [ln for ln in stderr.splitlines() if re.search(r"error|ERROR|DETAIL|HINT|Command was|LINE", ln)]
    return "\n".join((keep or stderr.splitlines())[:20])


def _run(args: list[str], endpoint: PgEndpoint, what: str) -> str:
    """Run a client tool; the password travels in PGPASSWORD (endpoint.libpq_env), never in argv."""
    started = time.monotonic()
    try:
        proc = subprocess.run(args, env=endpoint.libpq_env(), capture_output=True, text=True, timeout=TOOL_TIMEOUT_S)
    except subprocess.TimeoutExpired as exc:
        raise SchemaCopyError(f"{what} on {endpoint.label} did not finish in {TOOL_TIMEOUT_S}s; rerun it.") from exc
    if proc.returncode != 0:
        raise SchemaCopyError(f"{what} on {endpoint.label} failed (exit {proc.returncode}):\n{_errors(proc.stderr)}")
    log.debug("%s on %s took %.1fs", what, endpoint.label, time.monotonic() - started)
    return proc.stdout


def _pattern(name: str) -> str:
    """An exact-match pg_dump pattern: inside double quotes, wildcard characters are literal."""
    return '"' + name.replace('"', '""') + '"'


_EXTENSIONS_SQL = """
WITH RECURSIVE ns AS (SELECT oid FROM pg_namespace WHERE nspname = ANY(%(schemas)s)),
objs(classid, objid) AS (
    SELECT 'pg_class'::regclass, oid FROM pg_class WHERE relnamespace IN (SELECT oid FROM ns)
    UNION SELECT 'pg_type'::regclass, oid FROM pg_type WHERE typnamespace IN (SELECT oid FROM ns)
    UNION SELECT 'pg_proc'::regclass, oid FROM pg_proc WHERE pronamespace IN (SELECT oid FROM ns)
    UNION SELECT 'pg_constraint'::regclass, oid FROM pg_constraint WHERE connamespace IN (SELECT oid FROM ns)
    UNION SELECT 'pg_attrdef'::regclass, d.oid FROM pg_attrdef d JOIN pg_class c ON c.oid = d.adrelid
          WHERE c.relnamespace IN (SELECT oid FROM ns)
    UNION SELECT 'pg_trigger'::regclass, t.oid FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
          WHERE c.relnamespace IN (SELECT oid FROM ns)
),
refs(classid, objid) AS (
    SELECT d.refclassid, d.refobjid FROM pg_depend d JOIN objs o ON o.classid = d.classid AND o.objid = d.objid
    UNION  -- arrays and domains of extension types: follow to the element and base types
    SELECT 'pg_type'::regclass, x.oid FROM refs r JOIN pg_type t ON r.classid = 'pg_type'::regclass AND t.oid = r.objid
    CROSS JOIN LATERAL (VALUES (t.typelem), (t.typbasetype)) x(oid) WHERE x.oid <> 0
)
SELECT e.extname, n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
WHERE e.extname <> 'plpgsql' AND (e.extnamespace IN (SELECT oid FROM ns) OR EXISTS (
    SELECT 1 FROM pg_depend m JOIN refs r ON r.classid = m.classid AND r.objid = m.objid
    WHERE m.refclassid = 'pg_extension'::regclass AND m.refobjid = e.oid AND m.deptype = 'e'))
ORDER BY 1
"""


@dataclass
class _Plan:
    """The dump and everything decided from it, shared by both halves."""

    source: PgEndpoint
    target: PgEndpoint
    schemas: list[str]
    workdir: Path
    entries: dict[int, TocEntry] = field(default_factory=dict)
    keep: set[int] = field(default_factory=set)
    post: set[int] = field(default_factory=set)
    pk: set[int] = field(default_factory=set)  # PK constraints, the ATTACHes of their indexes, their comments
    wanted: set[int] | None = None
    extensions: dict[str, str] = field(default_factory=dict)  # name -> schema
    address: dict[int, tuple[str, list[str], list[str]]] = field(default_factory=dict)  # dump id -> address
    identity: dict[int, str] = field(default_factory=dict)  # dump id -> "table public.customers" for messages
    attach_child: dict[int, int] = field(default_factory=dict)  # ATTACH dump id -> dump id of the child
    index_of: dict[int, int] = field(default_factory=dict)  # dump id of a CONSTRAINT -> oid of its index

    @property
    def dump(self) -> Path:
        return self.workdir / "schema.dump"

    def ordered(self, ids: Iterable[int]) -> list[TocEntry]:
        order = {i: n for n, i in enumerate(self.entries)}
        return sorted((self.entries[i] for i in ids), key=lambda e: order[e.dump_id])

    def shown(self, i: int) -> str:
        """For messages: "table public.customers", "comment (table public.customers)"."""
        e = self.entries[i]
        if i in self.identity:
            return self.identity[i]
        parent = self.attach_child.get(i) or next((d for d in e.deps if d in self.identity), None)
        return f"{e.desc.lower()} ({self.identity[parent]})" if parent else f"{e.desc.lower()} {e.tag}".strip()


def _normalise(tables: Iterable[Any]) -> list[tuple[str, str]]:
    return [(t.schema, t.name) if isinstance(t, TableRef) else (t[0], t[1]) for t in tables]


def _prepare(src: psycopg.Connection, source: PgEndpoint, target: PgEndpoint, schemas: Iterable[str],
             tables: Iterable[Any], workdir: Path) -> _Plan:  # fmt: skip
    """Dump the schemas, read the table of contents and decide what belongs to this migration."""
    schemas = [s for s in dict.fromkeys(schemas) if s != CONTROL_SCHEMA]
    plan = _Plan(source, target, schemas, workdir)
    wanted_pairs = _normalise(tables)
    plan.extensions = dict(src.execute(_EXTENSIONS_SQL, {"schemas": schemas}).fetchall())
    if wanted_pairs:
        selected = select_tables(list_tables(src, schemas), schemas, wanted_pairs)  # raises UnknownTables
        refs = [t.ref for t in selected]
        rows = src.execute(
            "SELECT c.oid, p.relid::oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "JOIN unnest(%s::text[], %s::text[]) w(s, r) ON w.s = n.nspname AND w.r = c.relname "
            "LEFT JOIN LATERAL pg_partition_tree(c.oid) p ON true",
            ([r.schema for r in refs], [r.name for r in refs]),
        ).fetchall()
        plan.wanted = {o for row in rows for o in row if o}
    args = [_tool("pg_dump"), "--format=custom", "--schema-only", "--strict-names", "--no-publications",
            "--no-subscriptions", "--no-security-labels", "--no-tablespaces", f"--file={plan.dump}"]  # fmt: skip
    args += [f"--schema={_pattern(s)}" for s in schemas]
    args += [f"--extension={_pattern(e)}" for e in plan.extensions]
    _run(args, source, "pg_dump --schema-only")
    listing = _run([_tool("pg_restore"), "--list", "--verbose", str(plan.dump)], source, "pg_restore --list")
    post = _run([_tool("pg_restore"), "--list", "--section=post-data", str(plan.dump)], source, "pg_restore --list")
    entries = parse_toc(listing)
    plan.entries = {e.dump_id: e for e in entries}
    plan.post = {e.dump_id for e in parse_toc(post)}
    plan.keep = select_entries(entries, plan.wanted)
    _source_facts(src, plan)
    return plan


def _source_facts(conn: psycopg.Connection, plan: _Plan) -> None:
    kept = plan.ordered(plan.keep)
    objs = [e for e in kept if e.classid]
    rows = conn.execute(
        "SELECT a.type, a.object_names, a.object_args, i.type || ' ' || i.identity "
        "FROM unnest(%s::oid[], %s::oid[]) WITH ORDINALITY AS o(classid, objid, n), "
        "LATERAL pg_identify_object_as_address(o.classid, o.objid, 0) a, "
        "LATERAL pg_identify_object(o.classid, o.objid, 0) i ORDER BY o.n",
        ([e.classid for e in objs], [e.objid for e in objs]),
    ).fetchall()
    for e, (kind, names, args, shown) in zip(objs, rows, strict=True):
        plan.address[e.dump_id] = (kind, names, args)
        plan.identity[e.dump_id] = shown
    constraints = [e for e in kept if e.desc == "CONSTRAINT"]
    rows = conn.execute(
        "SELECT oid, contype = 'p', conindid FROM pg_constraint WHERE oid = ANY(%s)", ([e.objid for e in constraints],)
    ).fetchall()
    facts = {oid: (is_pk, index) for oid, is_pk, index in rows}
    plan.pk = {e.dump_id for e in constraints if facts.get(e.objid, (False, 0))[0]}
    plan.index_of = {e.dump_id: facts[e.objid][1] for e in constraints if e.objid in facts}
    inherits = dict(conn.execute("SELECT inhrelid, inhparent FROM pg_inherits").fetchall())
    for e in kept:
        if e.desc in ("TABLE ATTACH", "INDEX ATTACH"):
            child = _attach_child(plan, e, inherits)
            if child is not None:
                plan.attach_child[e.dump_id] = child
                if child in plan.pk:
                    plan.pk.add(e.dump_id)
    plan.pk |= {e.dump_id for e in kept if e.desc == "COMMENT" and set(e.deps) & plan.pk}


def _attach_child(plan: _Plan, e: TocEntry, inherits: dict[int, int]) -> int | None:
    """The dependency of a TABLE/INDEX ATTACH entry that is the partition being attached: the one whose
    parent (pg_inherits) is another of its dependencies. A PK's index is reached through its constraint."""
    kinds = ("TABLE",) if e.desc == "TABLE ATTACH" else ("INDEX", "CONSTRAINT")
    relations = {
        d: plan.index_of.get(d) if plan.entries[d].desc == "CONSTRAINT" else plan.entries[d].objid
        for d in e.deps
        if plan.entries[d].desc in kinds
    }
    return next((d for d, oid in relations.items() if inherits.get(oid) in relations.values()), None)


# --- the target side ----------------------------------------------------------------------------------


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
    diff += [f"{c} is {target[c]} on the target, {source[c]} on the source" for c in source
             if c in target and target[c] != source[c]]  # fmt: skip
    diff += [f"{c} exists only on the target" for c in target if c not in source]
    return diff


def _to_restore(plan: _Plan, candidates: list[TocEntry], src: psycopg.Connection, tgt: psycopg.Connection):
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
        elif any(d in restore for d in e.deps):  # COMMENT, SEQUENCE OWNED BY…: with their parent
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


def _relation_address(plan: _Plan, i: int) -> tuple[str, list[str], list[str]]:
    kind, names, args = plan.address[i]
    if kind == "table constraint":  # a PK/unique constraint's index is named like the constraint
        return ("index", [names[0], names[-1]], [])
    return kind, names, args


def _restore(plan: _Plan, ids: list[int], name: str, single_transaction: bool) -> None:
    if not ids:
        return
    listfile = plan.workdir / f"{name}.list"
    listfile.write_text("".join(plan.entries[i].line + "\n" for i in ids))
    args = [_tool("pg_restore"), f"--dbname={plan.target.dbname}", "--no-owner", "--no-privileges",
            "--no-tablespaces", "--no-security-labels", "--no-publications", "--no-subscriptions",
            "--exit-on-error", f"--use-list={listfile}", str(plan.dump)]  # fmt: skip
    if single_transaction:
        args.insert(2, "--single-transaction")
    _run(args, plan.target, f"pg_restore of {name} ({len(ids)} entries)")


def _connections(source: PgEndpoint, target: PgEndpoint) -> tuple[psycopg.Connection, psycopg.Connection]:
    src = source.connect(autocommit=True)
    try:
        tgt = target.connect(autocommit=True)
    except BaseException:
        src.close()
        raise
    for conn in (src, tgt):  # type names come out schema-qualified alike on both sides
        conn.execute("SET search_path = pg_catalog")
    return src, tgt


def _ensure_extension_schemas(plan: _Plan, restore: list[int], tgt: psycopg.Connection) -> None:
    """pg_dump writes CREATE EXTENSION … WITH SCHEMA s but not s itself when s is not a migrated schema."""
    for i in restore:
        if plan.entries[i].desc == "EXTENSION":
            schema = plan.extensions.get(plan.address[i][1][0])
            if schema and schema not in plan.schemas:
                tgt.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))


def _identity_by_default(plan: _Plan, src: psycopg.Connection, tgt: psycopg.Connection) -> list[dict[str, Any]]:
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


def _tables(plan: _Plan) -> list[TableRef]:
    return [TableRef(*plan.address[e.dump_id][1][:2]) for e in plan.ordered(plan.keep) if e.desc == "TABLE"]


def copy_pre_data(
    source: PgEndpoint, target: PgEndpoint, schemas: Iterable[str], tables: Iterable[Any] = ()
) -> dict[str, Any]:
    """Create on the target what the data needs: pre-data plus primary keys; ALWAYS identities become BY
    DEFAULT. `tables`: (schema, table) pairs or TableRefs, empty for every table of `schemas`. Idempotent.
    Returns a JSON-able summary; record its `identity_columns` in the state for cutover."""
    started = time.monotonic()
    src, tgt = _connections(source, target)
    with src, tgt, tempfile.TemporaryDirectory(prefix="pgmigrate-schema-") as tmp:
        plan = _prepare(src, source, target, schemas, tables, Path(tmp))
        candidates = plan.ordered(i for i in plan.keep if i not in plan.post or i in plan.pk)
        restore, existing = _to_restore(plan, candidates, src, tgt)
        _ensure_extension_schemas(plan, restore, tgt)
        _restore(plan, restore, "pre-data", single_transaction=True)
        identity = _identity_by_default(plan, src, tgt)
        result = {
            "schemas": plan.schemas,
            "tables": [t.qualified for t in _tables(plan)],
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
        target.label, len(result["tables"]), len(restore), len(existing), len(result["primary_keys"]),
        len(identity), sum(c["changed_now"] for c in identity), result["seconds"],
    )  # fmt: skip
    return result


_FK_SQL = """
SELECT c.oid, n.nspname, t.relname, c.conname, pg_get_constraintdef(c.oid), c.convalidated, t.relkind,
       c.conrelid, c.confrelid::regclass::text
FROM pg_constraint c JOIN pg_class t ON t.oid = c.conrelid JOIN pg_namespace n ON n.oid = t.relnamespace
WHERE c.oid = ANY(%s) ORDER BY 2, 3, 4
"""


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0]


def _foreign_keys(
    plan: _Plan, ids: list[int], src: psycopg.Connection, tgt: psycopg.Connection
) -> tuple[dict[str, Any], set[int]]:
    """Add the kept foreign keys NOT VALID, then validate each in its own transaction (see module docstring).
    Returns the summary and the source oids of the keys added now."""
    added, validated, pending, added_oids = [], [], [], set()
    rows = src.execute(_FK_SQL, ([plan.entries[i].objid for i in ids],)).fetchall()
    for oid, schema, table, name, definition, valid_on_source, relkind, _, _ in rows:
        label = f"{name} on {TableRef(schema, table).qualified}"
        ident, con = sql.Identifier(schema, table), sql.Identifier(name)
        state = tgt.execute(
            "SELECT c.convalidated FROM pg_constraint c JOIN pg_class t ON t.oid = c.conrelid "
            "JOIN pg_namespace n ON n.oid = t.relnamespace "
            "WHERE n.nspname = %s AND t.relname = %s AND c.conname = %s AND c.contype = 'f'",
            (schema, table, name),
        ).fetchone()
        if state is None:
            # PostgreSQL 15 refuses NOT VALID foreign keys on partitioned tables; a source key that is itself
            # NOT VALID already says so in its definition.
            not_valid = valid_on_source and relkind != "p"
            # `definition` is DDL generated by the source server (pg_get_constraintdef, search_path pg_catalog
            # so every name is qualified and quoted by PostgreSQL itself), like the pg_dump output we restore.
            statement = sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} {}{}").format(
                ident, con, sql.SQL(definition), sql.SQL(" NOT VALID" if not_valid else "")
            )
            try:
                tgt.execute(statement)
            except psycopg.errors.ForeignKeyViolation as exc:
                pending.append({"constraint": label, "added": False, "error": _first_line(exc)})
                continue
            added.append(label)
            added_oids.add(oid)
            is_valid = valid_on_source and not not_valid
            if is_valid:  # added validated in one step (partitioned table)
                validated.append(label)
        else:
            is_valid = state[0]
        if valid_on_source and not is_valid:
            try:
                tgt.execute(sql.SQL("ALTER TABLE {} VALIDATE CONSTRAINT {}").format(ident, con))
                validated.append(label)
            except psycopg.errors.ForeignKeyViolation as exc:
                pending.append({"constraint": label, "added": True, "error": _first_line(exc)})
    return {"added": added, "validated": validated, "pending_validation": pending}, added_oids


def _skipped_foreign_keys(plan: _Plan, src: psycopg.Connection) -> list[str]:
    """Foreign keys of migrated tables that reference a table left out of the subset."""
    if plan.wanted is None:
        return []
    left_out = [e.objid for e in plan.entries.values() if e.desc == "FK CONSTRAINT" and e.dump_id not in plan.keep]
    rows = src.execute(_FK_SQL, (left_out,)).fetchall()
    return [
        f"{name} on {TableRef(schema, table).qualified} references {referenced}, which is not migrated"
        for _, schema, table, name, _, _, _, conrelid, referenced in rows
        if conrelid in plan.wanted
    ]


def _triggers(plan: _Plan, tgt: psycopg.Connection) -> list[dict[str, str]]:
    refs = _tables(plan)
    rows = tgt.execute(
        "SELECT n.nspname, c.relname, t.tgname, t.tgenabled FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        "JOIN unnest(%s::text[], %s::text[]) w(s, r) ON w.s = n.nspname AND w.r = c.relname "
        "WHERE NOT t.tgisinternal AND t.tgparentid = 0 ORDER BY 1, 2, 3",
        ([r.schema for r in refs], [r.name for r in refs]),
    ).fetchall()
    enabled = {"O": "origin", "D": "disabled", "R": "replica", "A": "always"}
    return [
        {"table": TableRef(s, r).qualified, "trigger": name, "enabled": enabled.get(state, state)}
        for s, r, name, state in rows
    ]


def apply_post_data(
    source: PgEndpoint, target: PgEndpoint, schemas: Iterable[str], tables: Iterable[Any] = ()
) -> dict[str, Any]:
    """Create on the target the rest of the schema: indexes, constraints, rules, policies, triggers, then
    foreign keys (NOT VALID, then validated). Run after the snapshot is in. Idempotent; a foreign key that
    cannot be validated yet is reported in `foreign_keys.pending_validation`, and a rerun retries it."""
    started = time.monotonic()
    src, tgt = _connections(source, target)
    with src, tgt, tempfile.TemporaryDirectory(prefix="pgmigrate-schema-") as tmp:
        plan = _prepare(src, source, target, schemas, tables, Path(tmp))
        fks = [e.dump_id for e in plan.ordered(plan.keep) if e.desc == "FK CONSTRAINT"]
        fk_comments = [
            i for i in plan.keep if plan.entries[i].desc == "COMMENT" and set(plan.entries[i].deps) & set(fks)
        ]
        rest = plan.ordered(
            i for i in plan.keep & plan.post if i not in plan.pk and i not in fks and i not in fk_comments
        )
        restore, existing = _to_restore(plan, rest, src, tgt)
        _restore(plan, restore, "post-data", single_transaction=False)
        foreign_keys, added = _foreign_keys(plan, fks, src, tgt)
        added_ids = {i for i in fks if plan.entries[i].objid in added}
        _restore(plan, [e.dump_id for e in plan.ordered(fk_comments) if set(e.deps) & added_ids], "fk-comments", False)
        foreign_keys["skipped"] = _skipped_foreign_keys(plan, src)
        triggers = _triggers(plan, tgt)
        why = {
            "always": "ENABLE ALWAYS: it fires for the sink's writes too, whatever session_replication_role",
            "replica": "ENABLE REPLICA: it fires for the sink's writes, and not for the application's after cutover",
        }
        warnings = [
            f"trigger {t['trigger']} on {t['table']} is {why[t['enabled']]}" for t in triggers if t["enabled"] in why
        ]
        result = {
            "schemas": plan.schemas,
            "tables": [t.qualified for t in _tables(plan)],
            "created": [plan.shown(i) for i in restore],
            "existing": len(existing),
            "foreign_keys": foreign_keys,
            "triggers": triggers,
            "warnings": warnings,
            "seconds": round(time.monotonic() - started, 1),
        }
    log.info(
        "schema post-data on %s: %d objects created, %d already there; foreign keys: %d added, %d validated, "
        "%d pending validation, %d skipped; %d triggers in %.1fs",
        target.label, len(restore), len(existing), len(foreign_keys["added"]), len(foreign_keys["validated"]),
        len(foreign_keys["pending_validation"]), len(foreign_keys["skipped"]), len(triggers), result["seconds"],
    )  # fmt: skip
    for warning in warnings:
        log.warning(warning)
    return result


_SEQUENCES_SQL = """
SELECT n.nspname, c.relname, format_type(s.seqtypid, NULL), s.seqincrement, pg_sequence_last_value(c.oid),
       tn.nspname, t.relname, a.attname, d.deptype = 'i'
FROM pg_sequence s JOIN pg_class c ON c.oid = s.seqrelid JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = c.oid
     AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')
LEFT JOIN pg_class t ON t.oid = d.refobjid LEFT JOIN pg_namespace tn ON tn.oid = t.relnamespace
LEFT JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
WHERE n.nspname = ANY(%s) ORDER BY 1, 2
"""


def sequences_snapshot(source: PgEndpoint, schemas: Iterable[str]) -> list[dict[str, Any]]:
    """Every sequence of `schemas` with its current value, read only, for the state record (the cutover
    sets the target's sequences past these). `last_value` is None for a sequence never used. Needs
    SELECT or USAGE on the sequences."""
    schemas = [s for s in dict.fromkeys(schemas) if s != CONTROL_SCHEMA]
    with source.connect(autocommit=True) as conn:
        rows = conn.execute(_SEQUENCES_SQL, (schemas,)).fetchall()
    return [
        {
            "schema": schema,
            "name": name,
            "data_type": data_type,
            "increment": increment,
            "last_value": last_value,
            "is_called": last_value is not None,
            "owned_by": f"{TableRef(ts, tr).qualified}.{col}" if tr else None,
            "identity": bool(identity),
        }
        for schema, name, data_type, increment, last_value, ts, tr, col, identity in rows
    ]
