"""pg_dump's table of contents, and running pg_dump/pg_restore: what both halves of the schema copy share.

`parse_toc` reads `pg_restore -l -v`: each entry's catalog object (classid, oid) and the entries it
depends on. `select_entries` chooses from it what belongs to a migration, following the dump's dependency
graph (see `schema_copy.py` for why a subset is chosen this way rather than with `pg_dump -t`). pg_dump
writes every statement; we only choose entries, never edit SQL text. `run_tool` runs a client tool with
the password in the environment, never in argv.

pg_dump must be at least the source server's major version: set PGMIGRATE_PG_BIN to its directory.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from pgmigrate.core.endpoints import PgEndpoint

log = logging.getLogger(__name__)

PG_BIN_DIR = Path(os.environ.get("PGMIGRATE_PG_BIN", "/usr/lib/postgresql/15/bin"))
TOOL_TIMEOUT_S = 3600

# Archive entry kinds we never restore: settings pg_restore applies itself, security labels, the source's
# replication objects, objects that need servers we do not copy, data. Grants (ACL) and default privileges
# (DEFAULT ACL) are restored: their roles must exist on the target (preflight's `roles`).
EXCLUDED_DESCS = frozenset(
    {
        "ENCODING",
        "STDSTRINGS",
        "SEARCHPATH",
        "DATABASE",
        "DATABASE PROPERTIES",
        "SECURITY LABEL",
        "PUBLICATION",
        "PUBLICATION TABLE",
        "PUBLICATION TABLES IN SCHEMA",
        "SUBSCRIPTION",
        "FOREIGN TABLE",
        "SERVER",
        "USER MAPPING",
        "EVENT TRIGGER",
        "TABLE DATA",
        "SEQUENCE SET",
        "MATERIALIZED VIEW DATA",
        "BLOB",
        "BLOBS",
        "BLOB METADATA",
        "LARGE OBJECT",
    }
)
# Multi-word entry kinds of a schema-only archive, longest first, to split "<desc> <schema> <name> <owner>".
# Some start with another kind ("TABLE ATTACH" / "TABLE"): those are told apart by their catalog id, so a
# table in a schema called ATTACH still parses as a TABLE. Data-only kinds ("TABLE DATA") cannot occur.
_DESC_CLASS = {"TABLE ATTACH": 0, "INDEX ATTACH": 0, "SEQUENCE OWNED BY": 0, "DEFAULT ACL": 826}
_DESCS = sorted(
    {
        "FK CONSTRAINT",
        "CHECK CONSTRAINT",
        "ROW SECURITY",
        "MATERIALIZED VIEW",
        "OPERATOR CLASS",
        "OPERATOR FAMILY",
        "PROCEDURAL LANGUAGE",
        "SHELL TYPE",
        "TEXT SEARCH CONFIGURATION",
        "TEXT SEARCH DICTIONARY",
        "TEXT SEARCH PARSER",
        "TEXT SEARCH TEMPLATE",
        "ACCESS METHOD",
        "FOREIGN DATA WRAPPER",
        "FOREIGN TABLE",
        "SECURITY LABEL",
        "DATABASE PROPERTIES",
        "PUBLICATION TABLE",
        "PUBLICATION TABLES IN SCHEMA",
        "USER MAPPING",
        "EVENT TRIGGER",
        "LARGE OBJECT",
        *_DESC_CLASS,
    },
    key=len,
    reverse=True,
)
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


# What a subset keeps for its own sake: tables, views (one that reads no table, e.g. over an enum's values or a
# function, is still the application's; one over a table left out is dropped with it), and the schemas' default
# privileges.
_ANCHORS = frozenset({"TABLE", "VIEW", "MATERIALIZED VIEW", "DEFAULT ACL"})


def select_entries(entries: list[TocEntry], wanted_tables: set[int] | None) -> set[int]:
    """Dump ids to restore. `wanted_tables`: source oids of the tables to copy (with their partitions), or
    None for everything in the dumped schemas.

    An entry is dropped when it is excluded, is an unwanted table, or needs a dropped one (a foreign key to
    a table left out, a view over it). For a subset, objects not tied to any table or view (types, functions,
    schemas, extensions) are kept only when something kept depends on them. Sequences are the exception:
    every one is kept, because an application may use a sequence through `nextval('invoice_no')` alone, with
    no column default naming it. A sequence owned by a column left out (serial, OWNED BY) is still created,
    standalone: pg_dump makes it depend on its table, but only its SEQUENCE OWNED BY entry needs the table,
    and that entry goes with the table. An identity sequence has no such entry (its statement is the
    table's `ALTER TABLE ... ADD GENERATED ... AS IDENTITY`), so it goes with its table.
    """
    by_id = {e.dump_id: e for e in entries}
    needs = _needs(entries, by_id)
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
            dropped[i] = own or any(is_dropped(d, seen | {i}) for d in needs[i])
        return dropped[i]

    def is_anchored(i: int, seen: frozenset[int] = frozenset()) -> bool:
        if i not in anchored:
            e = by_id.get(i)
            if e is None or i in seen:
                return False
            anchored[i] = e.desc in _ANCHORS or any(is_anchored(d, seen | {i}) for d in needs[i])
        return anchored[i]

    alive = [e for e in entries if not is_dropped(e.dump_id)]
    if wanted_tables is None:
        keep = {e.dump_id for e in alive if e.classid}
    else:
        keep = {e.dump_id for e in alive if e.classid and (e.desc == "SEQUENCE" or is_anchored(e.dump_id))}
        todo = [d for i in keep for d in needs[i]]
        while todo:  # what the kept objects need
            i = todo.pop()
            if i in keep or i not in by_id or is_dropped(i) or not by_id[i].classid:
                continue
            keep.add(i)
            todo.extend(needs[i])
    # Entries without an object of their own (COMMENT, ATTACH, OWNED BY, ROW SECURITY) follow their parents.
    followers = [e.dump_id for e in alive if not e.classid and needs[e.dump_id]]
    keep |= {i for i in followers if all(d in keep for d in needs[i])}
    return keep


def _needs(entries: list[TocEntry], by_id: dict[int, TocEntry]) -> dict[int, tuple[int, ...]]:
    """Each entry's dependencies, with an owned sequence's dependency on its table moved to its SEQUENCE
    OWNED BY entry: the ownership needs the table, the sequence does not."""
    needs = {e.dump_id: e.deps for e in entries}
    for e in entries:
        if e.desc != "SEQUENCE OWNED BY":
            continue
        for seq in e.deps:
            if seq in by_id and by_id[seq].desc == "SEQUENCE":
                tables = tuple(d for d in by_id[seq].deps if d in by_id and by_id[d].desc == "TABLE")
                needs[seq] = tuple(d for d in needs[seq] if d not in tables)
                needs[e.dump_id] = (*needs[e.dump_id], *tables)
    return needs


# --- running the tools --------------------------------------------------------------------------------


def tool_path(name: str) -> str:
    path = PG_BIN_DIR / name
    if not path.exists():
        raise SchemaCopyError(f"{path} not found: install the PostgreSQL 15 client or set PGMIGRATE_PG_BIN.")
    return str(path)


def _errors(stderr: str) -> str:
    keep = [ln for ln in stderr.splitlines() if re.search(r"error|ERROR|DETAIL|HINT|Command was|LINE", ln)]
    return "\n".join((keep or stderr.splitlines())[:20])


def run_tool(args: list[str], endpoint: PgEndpoint, what: str) -> str:
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


def exact_pattern(name: str) -> str:
    """An exact-match pg_dump pattern: inside double quotes, wildcard characters are literal."""
    return '"' + name.replace('"', '""') + '"'
