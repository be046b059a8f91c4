"""Unit tests of preflight's pure rules and its failure message. Tables and type facts are built by hand
here (no database); `tests/integration/test_preflight.py` runs the same rules against real servers."""

from __future__ import annotations

from dataclasses import replace

import pytest

from pgmigrate.core.catalog import Column, TableInfo, TableRef
from pgmigrate.core.column_types import routed_columns, uncarriable_columns, unmatchable_keyless_columns
from pgmigrate.core.endpoints import PgEndpoint
from pgmigrate.preflight.report import PreflightError, PreflightReport
from pgmigrate.preflight.rules import (
    CheckResult,
    DatabaseIdentity,
    check_capacity,
    check_connection,
    check_distinct_databases,
    check_names,
    check_params,
    check_roles,
    check_wal_level,
    skipped,
)
from pgmigrate.preflight.table_rules import (
    check_column_types,
    check_replica_identity,
    check_target_tables,
    check_unlogged_tables,
    replica_identity_gaps,
)
from pgmigrate.schema.roles import Role, create_role_statements
from pgmigrate.stream.native_replication import needs_native_channel

pytestmark = pytest.mark.unit

SOURCE = PgEndpoint("db.example", 5432, "shop", "migrator", "s3cret-pass")


def col(name, type_name, oid, kind="b", element_oid=None, element_kind=None, generated="", base=None):
    """`base`: (oid, typtype, typname, element oid) of the type under the column's domains, as catalog reads it."""
    base_oid, base_kind, base_name, base_elem = base or (oid, kind, type_name, element_oid if element_kind else None)
    return Column(
        name,
        type_name,
        oid,
        kind,
        element_kind,
        element_oid,
        "",
        generated,
        False,
        True,
        base_oid,
        base_kind,
        base_name,
        base_elem,
    )


def table(name, columns=(), pk=("id",), ident="d", ri_index=False, kind="r", partitions=(), schema="public"):
    return TableInfo(
        ref=TableRef(schema, name),
        kind=kind,
        primary_key=list(pk),
        replica_identity=ident,
        has_replica_identity_index=ri_index,
        columns=list(columns),
        partitions=list(partitions),
    )


# --- column types ---------------------------------------------------------------------------------

MOOD, ADDR, POSINT, BOXDOM, CITEXT, CUBE, INTDOM, MYRANGE = 20001, 20002, 20003, 20004, 20005, 20006, 20007, 20008
ARR_MOOD, ARR_POSINT, ARR_CITEXT, ARR_CUBE, ARRDOM = 20101, 20103, 20105, 20106, 20107
FLOATDOM, DATEDOM = 20009, 20010


def test_types_debezium_carries_stay_on_debezium():
    t = table(
        "ok",
        [
            col("id", "bigint", 20),
            col("name", "name", 19, element_oid=18),  # catalog fills element_oid for name; not an array
            col("p", "point", 600, element_oid=701),
            col("doc", "jsonb", 3802),
            col("x", "xml", 142),
            col("ts", "tsvector", 3614),
            col("tags", "text[]", 1009, element_oid=25, element_kind="b"),
            col("ids", "uuid[]", 2951, element_oid=2950, element_kind="b"),
            col("m", "mood", MOOD, kind="e"),
            col("ms", "mood[]", ARR_MOOD, element_oid=MOOD, element_kind="e"),
            col("n", "posint", POSINT, kind="d", base=(23, "b", "int4", None)),
            col("nn", "intdom", INTDOM, kind="d", base=(23, "b", "int4", None)),  # a domain over a domain
            col("ad", "arrdom", ARRDOM, kind="d", base=(1007, "b", "_int4", 23)),  # a domain over int[]
            col("email", "citext", CITEXT),
            col("emails", "citext[]", ARR_CITEXT, element_oid=CITEXT, element_kind="b"),
            col("money", "money", 790),
            col("r", "int4range", 3904, kind="r"),
            # Arrays of anything travel as PostgreSQL array text (PostgresTextFormConverter).
            col("iv", "interval[]", 1187, element_oid=1186, element_kind="b"),
            col("pd", "posint[]", ARR_POSINT, element_oid=POSINT, element_kind="d"),
            col("cs", "cube[]", ARR_CUBE, element_oid=CUBE, element_kind="b"),
            col("ats", "timetz[]", 1270, element_oid=1266, element_kind="b"),  # offsets included
            col("lsns", "pg_lsn[]", 3221, element_oid=3220, element_kind="b"),
        ],
    )
    assert routed_columns([t]) == []
    assert uncarriable_columns([t]) == []
    assert not needs_native_channel(t)


def test_types_debezium_cannot_carry_route_the_table_to_the_native_channel_by_name():
    t = table(
        "routed",
        [
            col("id", "bigint", 20),
            col("b", "box", 603, element_oid=600),
            col("lsn", "pg_lsn", 3220),
            col("q", "tsquery", 3615),
            col("a", "addr", ADDR, kind="c"),
            col("bd", "boxdom", BOXDOM, kind="d", base=(603, "b", "box", None)),
            col("c", "cube", CUBE),
            col("fr", "floatrange", MYRANGE, kind="r"),
            col("mr", "int4multirange", 4451, kind="m"),
            col("iv", "int2vector", 22, element_oid=21),  # array category, but not a real array: '1 2 3'
            col("at", "timetz", 1266),
            # Domains over the converter's text-form types get Debezium's own conversion (NaN, infinity altered).
            col("price", "pricedom", FLOATDOM, kind="d", base=(701, "b", "float8", None)),
            col("due", "duedom", DATEDOM, kind="d", base=(1082, "b", "date", None)),
        ],
        schema="Sales",
    )
    found = [f.replace('"', "") for f in routed_columns([t])]  # TableRef quotes "Sales"
    assert [f.split(":")[0] for f in found] == [
        "Sales.routed.b",
        "Sales.routed.lsn",
        "Sales.routed.q",
        "Sales.routed.a",
        "Sales.routed.bd",
        "Sales.routed.c",
        "Sales.routed.fr",
        "Sales.routed.mr",
        "Sales.routed.iv",
        "Sales.routed.at",
        "Sales.routed.price",
        "Sales.routed.due",
    ]
    assert any(f.startswith("Sales.routed.price: pricedom (a domain over float8 gets Debezium's own") for f in found)
    assert "Sales.routed.b: box (built-in type Debezium has no mapping for)" in found
    assert any(f.startswith("Sales.routed.a: addr (composite type") for f in found)
    assert any(f.startswith("Sales.routed.at: timetz (Debezium turns streamed timetz offsets into +00") for f in found)
    assert uncarriable_columns([t]) == []
    assert needs_native_channel(t)
    result = check_column_types(uncarriable_columns([t]), routed_columns([t]))
    assert result.ok
    assert "native channel" in result.detail and "Sales".lower() in result.detail.lower()
    assert "routed.lsn: pg_lsn" in result.detail.replace('"', "")


def test_types_no_channel_can_carry_are_refused_by_name_with_the_fix():
    t = table(
        "stats",
        [
            col("id", "bigint", 20),
            col("plan", "pg_node_tree", 194),
            col("nd", "pg_ndistinct", 3361),
            col("gs", "gtsvector[]", 3644, element_oid=3642, element_kind="b"),
            col("ok", "text", 25),
        ],
    )
    found = uncarriable_columns([t])
    assert [f.split(":")[0] for f in found] == ["public.stats.plan", "public.stats.nd", "public.stats.gs"]
    assert "accepts no input for type pg_node_tree" in found[0]
    result = check_column_types(found, routed_columns([t]))
    assert not result.ok
    assert "public.stats.plan" in result.problem and "TYPE text" in result.fix


def test_keyless_tables_with_a_type_without_equality_are_refused_keyed_ones_are_not():
    doc = replace(col("doc", "json", 114), has_equality=False)  # as catalog reads json: no btree or hash opclass
    keyless = table("log", [col("at", "timestamptz", 1184), doc], pk=(), ident="f")
    keyed = table("docs", [col("id", "bigint", 20), doc])
    assert unmatchable_keyless_columns([keyless, keyed]) == [
        "public.log.doc: json (a table without a primary key is matched by its whole row, and PostgreSQL has no "
        "equality operator for this type: its first UPDATE or DELETE would stop replication)"
    ]


def test_generated_columns_are_not_judged():
    t = table("g", [col("id", "bigint", 20), col("b", "box", 603, generated="s")])
    assert routed_columns([t]) == []
    assert not needs_native_channel(t)


# --- replica identity -----------------------------------------------------------------------------


def test_replica_identity_gaps():
    tables = [
        table("with_pk"),
        table("no_pk", pk=()),
        table("full", pk=(), ident="f"),
        table("by_index", pk=(), ident="i", ri_index=True),
        table("nothing", ident="n"),  # a primary key does not help when the identity is NOTHING
    ]
    assert [t.name for t in replica_identity_gaps(tables)] == ["no_pk", "nothing"]


def test_partitioned_table_is_judged_by_its_partitions():
    parts = [TableRef("public", "ev_2024"), TableRef("public", "ev_2025")]
    ev = table("ev", pk=(), ident="f", kind="p", partitions=parts)
    leaves = {parts[0]: ("f", False, False), parts[1]: ("d", False, False)}
    assert replica_identity_gaps([ev], leaves) == [parts[1]]


def test_replica_identity_failure_names_tables_and_fix():
    gaps = [TableRef("public", "no_pk"), TableRef("Sales", "Order Items")]
    r = check_replica_identity(gaps, applied=[])
    assert not r.ok
    assert "public.no_pk" in r.problem and '"Sales"."Order Items"' in r.problem
    assert 'ALTER TABLE "public"."no_pk" REPLICA IDENTITY FULL;' in r.fix
    assert 'ALTER TABLE "Sales"."Order Items" REPLICA IDENTITY FULL;' in r.fix


def test_replica_identity_applied_is_reported():
    r = check_replica_identity([TableRef("public", "no_pk")], applied=[TableRef("public", "no_pk")])
    assert r.ok and "applied REPLICA IDENTITY FULL to public.no_pk" in r.detail


# --- server settings, role, names -----------------------------------------------------------------


def test_wal_level_replica_fails_with_alter_system_fix():
    r = check_wal_level({"wal_level": "replica"})
    assert not r.ok and "'replica'" in r.problem
    assert "ALTER SYSTEM SET wal_level = logical;" in r.fix and "restart" in r.fix
    assert check_wal_level({"wal_level": "logical"}).ok


def test_capacity():
    settings = {"max_replication_slots": "4", "max_wal_senders": "4"}
    assert check_capacity(settings, slots_used=3, senders_used=3, own_slot=False).ok
    full = check_capacity(settings, slots_used=4, senders_used=4, own_slot=False)
    assert not full.ok and "no free replication slot" in full.problem and "no free WAL sender" in full.problem
    assert "max_replication_slots = 5" in full.fix and "max_wal_senders = 5" in full.fix
    # Rerun: the slot is ours; it needs a sender again only when it is not streaming.
    assert not check_capacity(settings, 4, 4, own_slot=True).ok
    assert check_capacity(settings, 4, 4, own_slot=True, own_slot_active=True).ok


def test_names_clash_unless_owned():
    kwargs = dict(
        slot="pgmigrate_shop",
        publication="pgmigrate_shop",
        slot_row={"plugin": "pgoutput", "database": "shop", "active": False},
        publication_exists=True,
        source_db="shop",
        connectors=["pgmigrate-shop-source", "pgmigrate-shop-sink"],
        connect_names_in_use={"pgmigrate-shop-sink", "other"},
    )
    r = check_names(**kwargs, owned_by_this_migration=False)
    assert not r.ok
    for text in ("replication slot pgmigrate_shop", "publication pgmigrate_shop", "pgmigrate-shop-sink"):
        assert text in r.problem
    assert "Pick another migration_id" in r.fix and "pg_drop_replication_slot('pgmigrate_shop')" in r.fix
    assert check_names(**kwargs, owned_by_this_migration=True).ok
    wrong_db = {**kwargs, "slot_row": {"plugin": "pgoutput", "database": "other", "active": False}}
    assert not check_names(**wrong_db, owned_by_this_migration=True).ok


def test_target_tables_with_rows_fail():
    states = {TableRef("public", "a"): "absent", TableRef("public", "b"): "has rows"}
    target = PgEndpoint("tgt", 5432, "shop", "postgres", "pw")
    r = check_target_tables(states, target, "migration_target")
    assert not r.ok and "public.b" in r.problem and "public.a" not in r.problem
    assert 'TRUNCATE "public"."b";' in r.fix and "`migration_target`" in r.fix


# --- connections and the message -------------------------------------------------------------------


@pytest.mark.parametrize(
    "error,expect",
    [
        ('FATAL:  password authentication failed for user "migrator"', "set the password"),
        ('FATAL:  database "shop" does not exist', 'CREATE DATABASE "shop";'),
        ("Connection refused\n\tIs the server running on that host?", "pg_isready -h db.example -p 5432"),
    ],
)
def test_connection_failure_names_where_and_fix(error, expect):
    r = check_connection("source", SOURCE, "migration_source", error)
    assert not r.ok
    assert "migrator@db.example:5432/shop" in r.problem
    assert " ".join(error.split("\n")[0].split()) in r.problem  # the driver's message, whitespace collapsed
    assert "`migration_source`" in r.fix and expect in r.fix
    assert "s3cret-pass" not in r.problem + r.fix


def test_params_unknown_tables_and_schemas():
    r = check_params("tables not found on the source: public.nope", ["missing"], 3)
    assert not r.ok and "public.nope" in r.problem and "missing" in r.problem
    assert not check_params(None, [], 0).ok
    assert check_params(None, [], 2).ok


def test_failure_message_lists_every_failure_with_fix_and_skips():
    report = PreflightReport(
        "shop",
        [
            CheckResult("source_connection", ok=True),
            CheckResult("wal_level", ok=False, problem="wal_level is 'replica'", fix="ALTER SYSTEM SET wal_level…"),
            CheckResult("params", ok=False, problem="tables not found: public.nope", fix="correct `tables`."),
            skipped("target_tables", "target"),
        ],
    )
    assert not report.ok and [r.name for r in report.failed] == ["wal_level", "params"]
    with pytest.raises(PreflightError) as exc:
        report.raise_if_failed()
    message = str(exc.value)
    assert "failed 2 of 4 checks" in message
    assert "1. [wal_level] wal_level is 'replica'" in message and "Fix: ALTER SYSTEM SET wal_level" in message
    assert "2. [params] tables not found: public.nope" in message
    assert "Not run because a connection failed" in message and "target_tables" in message
    assert exc.value.report is report
    assert report.to_dict()["ok"] is False


def test_passing_report_does_not_raise():
    PreflightReport("shop", [CheckResult("wal_level", ok=True)]).raise_if_failed()


def test_keyless_tables_pass_and_say_how_they_travel():
    from pgmigrate.preflight.table_rules import check_primary_keys

    r = check_primary_keys([table("orders"), table("log", pk=(), ident="f")], "pgmigrate_x_keyless")
    assert r.ok and "public.log" in r.detail and "pgmigrate_x_keyless" in r.detail and "duplicate" in r.detail
    assert check_primary_keys([table("orders")], "s").detail == "every table has a primary key"


def test_keyless_table_identified_by_index_is_refused_with_the_fix():
    from pgmigrate.preflight.table_rules import check_primary_keys

    r = check_primary_keys([table("uniq", pk=(), ident="i", ri_index=True)], "s")
    assert not r.ok and "public.uniq" in r.problem
    assert 'ALTER TABLE "public"."uniq" REPLICA IDENTITY FULL;' in r.fix


def test_subscription_rights_on_the_target():
    from pgmigrate.preflight.rules import check_subscription_rights

    facts = {"role": "app", "superuser": False, "create_subscription": False, "max_logical_replication_workers": "1"}
    r = check_subscription_rights(facts, keyless_count=2)
    assert not r.ok and "CREATE SUBSCRIPTION" in r.problem and "max_logical_replication_workers" in r.problem
    assert 'GRANT pg_create_subscription TO "app";' in r.fix
    assert check_subscription_rights(facts, keyless_count=0).ok
    assert check_subscription_rights({**facts, "superuser": True, "max_logical_replication_workers": "4"}, 1).ok


def test_unlogged_tables_are_refused_by_name_with_set_logged_and_the_param():
    tables = [TableRef("public", "sessions"), TableRef("Odd Schema", "Cache")]
    result = check_unlogged_tables(tables, applied=[])
    assert not result.ok
    assert "2 unlogged tables" in result.problem and "public.sessions" in result.problem
    assert 'ALTER TABLE "public"."sessions" SET LOGGED;' in result.fix
    assert 'ALTER TABLE "Odd Schema"."Cache" SET LOGGED;' in result.fix
    assert "set_logged_for_unlogged=true" in result.fix and "ACCESS EXCLUSIVE" in result.fix


def test_unlogged_tables_pass_when_applied_and_name_the_error_when_not():
    tables = [TableRef("public", "sessions")]
    assert check_unlogged_tables([], []).ok
    applied = check_unlogged_tables(tables, applied=tables)
    assert applied.ok and "public.sessions" in applied.detail
    failed = check_unlogged_tables(tables, applied=[], error="must be owner of table sessions")
    assert not failed.ok and "must be owner" in failed.problem and "SET LOGGED;" in failed.fix


def test_distinct_databases_compares_server_identity_and_database_oid():
    src = PgEndpoint("db.internal", 5432, "shop", "u", "p")
    tgt = PgEndpoint("10.0.0.7", 5432, "shop", "u", "p")
    same = check_distinct_databases(DatabaseIdentity("7715", 16384), DatabaseIdentity("7715", 16384), src, tgt, "t")
    assert not same.ok and "same database" in same.problem and "7715" in same.problem and "`t`" in same.fix
    # Two databases of one server, or same-named databases of two servers: distinct.
    assert check_distinct_databases(DatabaseIdentity("7715", 16384), DatabaseIdentity("7715", 16390), src, tgt, "t").ok
    assert check_distinct_databases(DatabaseIdentity("7715", 16384), DatabaseIdentity("9999", 16384), src, tgt, "t").ok


# --- roles ----------------------------------------------------------------------------------------


def test_missing_roles_are_created_with_their_login_and_memberships_before_anything_else():
    owner, app = Role("app_owner", False, True, False), Role("app", True, False, False, ("app_owner", "elsewhere"))
    statements = create_role_statements([owner, app], present={"postgres"})
    # `elsewhere` exists neither on the target nor among the created roles: no GRANT that would fail.
    assert statements == [
        'CREATE ROLE "app" LOGIN NOINHERIT;',
        'CREATE ROLE "app_owner" NOLOGIN;',
        'GRANT "app_owner" TO "app";',
    ]
    used_on = {"app": ["table public.t (SELECT)"], "app_owner": ["table public.t (owner)"]}
    result = check_roles(["app", "app_owner"], used_on, statements, [], [], "migrator", "shop", True)
    assert not result.ok and result.statements == statements and result.run_on == "target database 'shop'"
    assert "app_owner (table public.t (owner))" in result.problem and "PASSWORD" in result.fix


def test_owners_the_target_role_cannot_become_get_a_grant_or_the_keep_ownership_way_out():
    result = check_roles(
        [], {"o": ["table public.t (owner)"]}, [], ["o", "postgres"], ["postgres"], "migrator", "shop", True
    )
    assert not result.ok
    assert result.statements == ['GRANT "o" TO "migrator";']
    assert "superuser postgres" in result.problem and "keep_ownership=false" in result.fix
    passing = check_roles([], {"o": ["table public.t (owner)"]}, [], [], [], "migrator", "shop", False)
    assert passing.ok and "ownership not kept" in passing.detail
