"""Roles, ownership and grants of the migrated objects: what the target needs before the schema copy, and how the
validation compares them.

Roles are cluster-wide, so pg_dump of a database carries none: a grant to `app` or an object owned by `app_owner`
restores only on a target server where those roles exist. Preflight reads every role that owns or holds a
privilege on a migrated schema, table, view, sequence, function or type (default privileges of the schemas too)
and lists the ones missing on the target with the CREATE ROLE statements to run (passwords cannot be read: the
fix says to set them). The schema copy then restores grants and default privileges always, and ownership when
`keep_ownership` is on (the default): the target role must then be able to become each owner (a superuser, or a
member of every owner role), which preflight checks too, as for the roles whose default privileges are set
(ALTER DEFAULT PRIVILEGES FOR ROLE needs the same, whatever `keep_ownership`). `compare_privileges` is the
validation's side.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import psycopg
from psycopg import sql

from pgmigrate.core.catalog import CONTROL_SCHEMA
from pgmigrate.core.endpoints import PgEndpoint
from pgmigrate.core.params import MigrationParams

# Every object of the schemas with its owner and its grants, one row per grantee (0: PUBLIC; none: NULL):
# (kind, name as shown, owner oid, grantee oid, privileges). A default-privileges entry's "owner" is the role whose
# future objects it covers.
_OBJECTS_SQL = """
WITH ns AS (SELECT oid, nspname FROM pg_namespace WHERE nspname = ANY(%(schemas)s) AND nspname <> %(control)s),
objs(kind, name, owner, acl) AS (
SELECT 'schema', quote_ident(n.nspname), n.nspowner, n.nspacl FROM pg_namespace n JOIN ns ON ns.oid = n.oid
UNION ALL
SELECT CASE c.relkind WHEN 'S' THEN 'sequence' WHEN 'v' THEN 'view' WHEN 'm' THEN 'materialized view'
       ELSE 'table' END,
       quote_ident(ns.nspname) || '.' || quote_ident(c.relname), c.relowner, c.relacl
FROM pg_class c JOIN ns ON ns.oid = c.relnamespace WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
UNION ALL
SELECT 'column', quote_ident(ns.nspname) || '.' || quote_ident(c.relname) || '.' || quote_ident(a.attname),
       NULL, a.attacl
FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN ns ON ns.oid = c.relnamespace
WHERE a.attacl IS NOT NULL AND a.attnum > 0 AND NOT a.attisdropped
UNION ALL
SELECT 'function', quote_ident(ns.nspname) || '.' || quote_ident(p.proname) || '('
       || pg_get_function_identity_arguments(p.oid) || ')', p.proowner, p.proacl
FROM pg_proc p JOIN ns ON ns.oid = p.pronamespace
WHERE NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid
                  AND d.deptype = 'e')
UNION ALL
SELECT 'type', quote_ident(ns.nspname) || '.' || quote_ident(t.typname), t.typowner, t.typacl
FROM pg_type t JOIN ns ON ns.oid = t.typnamespace
WHERE t.typtype IN ('e', 'd', 'c', 'r', 'm', 'b')
  AND NOT (t.typtype = 'c' AND EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = t.typrelid AND c.relkind <> 'c'))
  AND NOT EXISTS (SELECT 1 FROM pg_type e WHERE e.typarray = t.oid)
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_type'::regclass AND d.objid = t.oid
                  AND d.deptype = 'e')
UNION ALL
SELECT 'default privileges', coalesce(quote_ident(ns.nspname), '(all schemas)') || ' for '
       || pg_get_userbyid(d.defaclrole) || ' on ' || d.defaclobjtype::text, d.defaclrole, d.defaclacl
FROM pg_default_acl d JOIN ns ON ns.oid = d.defaclnamespace
)
SELECT o.kind, o.name, o.owner, g.grantee, g.privileges
FROM objs o LEFT JOIN LATERAL (
    SELECT a.grantee, string_agg(a.privilege_type, ', ' ORDER BY a.privilege_type) AS privileges
    FROM aclexplode(o.acl) a GROUP BY a.grantee
) g ON true
ORDER BY 1, 2, 4
"""

_ROLE_SQL = """
SELECT r.oid, r.rolname, r.rolcanlogin, r.rolinherit, r.rolsuper,
       coalesce((SELECT array_agg(g.rolname ORDER BY g.rolname) FROM pg_auth_members m
                 JOIN pg_roles g ON g.oid = m.roleid WHERE m.member = r.oid), '{}')
FROM pg_roles r WHERE r.oid = ANY(%s)
"""


@dataclass(frozen=True)
class Role:
    name: str
    can_login: bool
    inherit: bool
    superuser: bool
    member_of: tuple[str, ...] = ()


@dataclass
class SourceRoles:
    """What the migrated objects need: owners and grantees (by name), the objects each one is named on."""

    roles: dict[str, Role] = field(default_factory=dict)
    owners: set[str] = field(default_factory=set)
    default_privilege_roles: set[str] = field(default_factory=set)  # ALTER DEFAULT PRIVILEGES FOR ROLE x: membership
    used_on: dict[str, list[str]] = field(default_factory=dict)  # role -> "table public.orders (owner)", …


def _objects(conn: psycopg.Connection, schemas: Iterable[str]) -> list[tuple[str, str, int | None, int | None, str]]:
    return conn.execute(_OBJECTS_SQL, {"schemas": list(schemas), "control": CONTROL_SCHEMA}).fetchall()


def read_source_roles(conn: psycopg.Connection, schemas: Iterable[str]) -> SourceRoles:
    """Owners and grantees of every object of `schemas` (the control schema left out)."""
    found = SourceRoles()
    names = dict(conn.execute("SELECT oid, rolname FROM pg_roles").fetchall())
    oids: set[int] = set()
    seen: set[tuple[str, str]] = set()
    for kind, name, owner, grantee, privileges in _objects(conn, schemas):
        if owner is not None and (kind, name) not in seen:
            seen.add((kind, name))
            oids.add(owner)
            if kind == "default privileges":
                found.default_privilege_roles.add(names[owner])
                found.used_on.setdefault(names[owner], []).append(f"{kind} {name}")
            else:
                if not names[owner].startswith("pg_"):  # pg_database_owner (public): built in, cannot be granted
                    found.owners.add(names[owner])
                found.used_on.setdefault(names[owner], []).append(f"{kind} {name} (owner)")
        if grantee and grantee != owner:
            oids.add(grantee)
            found.used_on.setdefault(names[grantee], []).append(f"{kind} {name} ({privileges})")
    for _oid, name, login, inherit, superuser, member_of in conn.execute(_ROLE_SQL, (sorted(oids),)).fetchall():
        found.roles[name] = Role(name, login, inherit, superuser, tuple(member_of))
    return found


def target_role_names(conn: psycopg.Connection) -> set[str]:
    return {r[0] for r in conn.execute("SELECT rolname FROM pg_roles").fetchall()}


def owners_the_target_cannot_become(conn: psycopg.Connection, owners: Iterable[str]) -> list[str]:
    """Owner roles (present on the target) the connected role may not give objects to: ALTER … OWNER TO needs a
    superuser or a member of the new owner."""
    if conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone()[0]:
        return []
    present = target_role_names(conn)
    return sorted(
        o
        for o in owners
        if o in present and not conn.execute("SELECT pg_has_role(current_user, %s, 'MEMBER')", (o,)).fetchone()[0]
    )


def create_role_statements(missing: Iterable[Role], present: set[str]) -> list[str]:
    """CREATE ROLE for each missing role with its LOGIN/INHERIT attributes, then its memberships in roles that
    exist on the target or are created here. Passwords cannot be read from the source: set them."""
    missing = sorted(missing, key=lambda r: r.name)
    created = {r.name for r in missing}
    statements = []
    for role in missing:
        attributes = ("LOGIN" if role.can_login else "NOLOGIN") + ("" if role.inherit else " NOINHERIT")
        statements.append(sql.SQL("CREATE ROLE {} {};").format(sql.Identifier(role.name), sql.SQL(attributes)))
    for role in missing:
        for group in role.member_of:
            if group in present or group in created:
                statements.append(sql.SQL("GRANT {} TO {};").format(sql.Identifier(group), sql.Identifier(role.name)))
    return [s.as_string(None) for s in statements]


def privilege_snapshot(conn: psycopg.Connection, schemas: Iterable[str], owners: bool) -> dict[tuple[str, str], str]:
    """(kind, object) -> the owner's name / the grants as text, for `compare_privileges`. An owner's own privileges
    are left out of the grants (they follow the owner), so that `owners=False` compares only what was granted."""
    snapshot: dict[tuple[str, str], str] = {}
    names = {**dict(conn.execute("SELECT oid, rolname FROM pg_roles").fetchall()), 0: "PUBLIC"}
    grants: dict[tuple[str, str], list[str]] = {}
    for kind, name, owner, grantee, privileges in _objects(conn, schemas):
        if owners and owner is not None:
            snapshot[(f"{kind} owner", name)] = names[owner]
        if grantee is not None and grantee != owner:
            grants.setdefault((f"{kind} grants", name), []).append(f"{names[grantee]}: {privileges}")
    snapshot.update({key: "; ".join(sorted(g)) for key, g in grants.items()})
    return snapshot


def compare_privileges(
    source: Mapping[tuple[str, str], str], target: Mapping[tuple[str, str], str]
) -> list[tuple[str, str, str | None, str | None]]:
    """(kind, object, source, target) for every owner or grant that differs."""
    return [
        (kind, name, source.get((kind, name)), target.get((kind, name)))
        for kind, name in sorted(source.keys() | target.keys())
        if source.get((kind, name)) != target.get((kind, name))
    ]


def compare_migration_privileges(source: PgEndpoint, target: PgEndpoint, params: MigrationParams):
    """Owners (when `keep_ownership`) and grants of the migration's schemas that differ, source vs target."""
    with source.connect(autocommit=True) as src, target.connect(autocommit=True) as tgt:
        return compare_privileges(
            privilege_snapshot(src, params.schemas, params.keep_ownership),
            privilege_snapshot(tgt, params.schemas, params.keep_ownership),
        )
