"""The schema copy's plan: one schema-only dump of the migrated schemas, the entries of its table of contents
that belong to this migration (the selected tables and what they need), and each entry's object as the
source names it, for the lookup on the target.

Both halves of the copy (`schema_copy.copy_pre_data`, `post_data.apply_post_data`) start from it; apart
from them because it only reads the source and the dump, where they compare with and write to the target.
`schema_copy`'s docstring says how entries are chosen and why.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from pgmigrate.core.catalog import CONTROL_SCHEMA, TableRef, list_tables, read_relations, select_tables
from pgmigrate.core.endpoints import PgEndpoint
from pgmigrate.schema.pg_dump_toc import TocEntry, exact_pattern, parse_toc, run_tool, select_entries, tool_path

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
class SchemaPlan:
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
    keep_ownership: bool = False  # restore the source's owners (pre-data only: post-data objects have none)

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


def prepare_plan(
    src: psycopg.Connection,
    source: PgEndpoint,
    target: PgEndpoint,
    schemas: Iterable[str],
    tables: Iterable[Any],
    workdir: Path,
) -> SchemaPlan:
    """Dump the schemas, read the table of contents and decide what belongs to this migration."""
    schemas = [s for s in dict.fromkeys(schemas) if s != CONTROL_SCHEMA]
    plan = SchemaPlan(source, target, schemas, workdir)
    wanted_pairs = _normalise(tables)
    plan.extensions = dict(src.execute(_EXTENSIONS_SQL, {"schemas": schemas}).fetchall())
    if wanted_pairs:
        selected = select_tables(list_tables(src, schemas), schemas, wanted_pairs)  # raises UnknownTables
        refs = [t.ref for t in selected]
        rows = read_relations(
            src,
            "SELECT c.oid, p.relid::oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace {relations} "
            "LEFT JOIN LATERAL pg_partition_tree(c.oid) p ON true",
            refs,
        )
        plan.wanted = {o for row in rows for o in row if o}
    args = [
        tool_path("pg_dump"),
        "--format=custom",
        "--schema-only",
        "--strict-names",
        "--no-publications",
        "--no-subscriptions",
        "--no-security-labels",
        "--no-tablespaces",
        f"--file={plan.dump}",
    ]
    args += [f"--schema={exact_pattern(s)}" for s in schemas]
    args += [f"--extension={exact_pattern(e)}" for e in plan.extensions]
    run_tool(args, source, "pg_dump --schema-only")
    listing = run_tool([tool_path("pg_restore"), "--list", "--verbose", str(plan.dump)], source, "pg_restore --list")
    post = run_tool(
        [tool_path("pg_restore"), "--list", "--section=post-data", str(plan.dump)], source, "pg_restore --list"
    )
    entries = parse_toc(listing)
    plan.entries = {e.dump_id: e for e in entries}
    plan.post = {e.dump_id for e in parse_toc(post)}
    plan.keep = select_entries(entries, plan.wanted)
    _source_facts(src, plan)
    return plan


def _source_facts(conn: psycopg.Connection, plan: SchemaPlan) -> None:
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


def _attach_child(plan: SchemaPlan, e: TocEntry, inherits: dict[int, int]) -> int | None:
    """The dependency of a TABLE/INDEX ATTACH entry that is the partition being attached: the one whose
    parent (pg_inherits) is another of its dependencies. A PK's index is reached through its constraint."""
    kinds = ("TABLE",) if e.desc == "TABLE ATTACH" else ("INDEX", "CONSTRAINT")
    relations = {
        d: plan.index_of.get(d) if plan.entries[d].desc == "CONSTRAINT" else plan.entries[d].objid
        for d in e.deps
        if plan.entries[d].desc in kinds
    }
    return next((d for d, oid in relations.items() if inherits.get(oid) in relations.values()), None)


def plan_tables(plan: SchemaPlan) -> list[TableRef]:
    return [TableRef(*plan.address[e.dump_id][1][:2]) for e in plan.ordered(plan.keep) if e.desc == "TABLE"]
