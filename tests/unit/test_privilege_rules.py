"""Unit tests of the least-privilege rules (`pgmigrate.preflight.privileges`) and the report's grant block. The role
facts are built by hand here (fakes: no database); `tests/integration/test_least_privilege.py` reads them
from real servers with real non-superuser roles."""

from __future__ import annotations

import pytest

from pgmigrate.core.catalog import TableRef
from pgmigrate.preflight.privileges import (
    FenceRights,
    SourceRoleFacts,
    TargetRoleFacts,
    check_source_privileges,
    check_target_privileges,
)
from pgmigrate.preflight.report import PreflightReport
from pgmigrate.preflight.rules import check_subscription_rights

pytestmark = pytest.mark.unit

ORDERS, ODD = TableRef("public", "orders"), TableRef("Sales", "Odd Name")
ORDERS_SEQ, INVOICE_NO = TableRef("public", "orders_id_seq"), TableRef("Sales", "invoice no")
# The fence's privileges, none granted, with one application role that may write a migrated table.
NO_FENCE_RIGHTS = FenceRights(
    reads_all_stats=False, signal_backend=False, createrole=False, application_roles=["shop_app"]
)
FENCE_RIGHTS = FenceRights(application_roles=["shop_app"])


def bare_source(**kw) -> SourceRoleFacts:
    """A fake source role with nothing granted but LOGIN."""
    facts = dict(
        role="mig_src",
        dbname="shop",
        superuser=False,
        replication=False,
        create_on_db=False,
        unreadable=[ORDERS, ODD],
        unreadable_sequences=[ORDERS_SEQ],
        sequences_not_updatable=[ORDERS_SEQ],
        not_owned=[ORDERS],
        can_set_replication_role=False,
        fence=NO_FENCE_RIGHTS,
    )
    return SourceRoleFacts(**{**facts, **kw})


def granted_source(**kw) -> SourceRoleFacts:
    """A fake source role with everything granted (what the fake bare_source lacks)."""
    facts = dict(
        replication=True,
        create_on_db=True,
        unreadable=[],
        unreadable_sequences=[],
        sequences_not_updatable=[],
        not_owned=[],
        can_set_replication_role=True,
        fence=FENCE_RIGHTS,
    )
    return bare_source(**{**facts, **kw})


def bare_target(**kw) -> TargetRoleFacts:
    """A fake target role with nothing granted but LOGIN, on a target where the sequences already exist."""
    facts = dict(
        role="mig_dst",
        dbname="shop_new",
        superuser=False,
        create_on_db=False,
        schemas_blocked=["public"],
        can_set_replication_role=False,
        not_owned=[ORDERS],
        replication=False,
        unreadable_sequences=[INVOICE_NO],
        sequences_not_updatable=[ORDERS_SEQ, INVOICE_NO],
        fence=NO_FENCE_RIGHTS,
    )
    return TargetRoleFacts(**{**facts, **kw})


def granted_target(**kw) -> TargetRoleFacts:
    facts = dict(
        create_on_db=True,
        schemas_blocked=[],
        can_set_replication_role=True,
        not_owned=[],
        replication=True,
        unreadable_sequences=[],
        sequences_not_updatable=[],
        fence=FENCE_RIGHTS,
    )
    return bare_target(**{**facts, **kw})


def test_source_role_fails_once_per_missing_privilege_with_exact_statements():
    results = check_source_privileges(bare_source())
    by_name = {r.name: r for r in results}
    assert list(by_name) == [
        "source_role.replication",
        "source_role.create",
        "source_role.select",
        "source_role.publish",
        "source_role.sequence_update",
        "source_role.session_replication_role",
        "source_role.read_all_stats",
        "source_role.signal_backend",
        "source_role.createrole",
    ]
    assert not any(r.ok for r in results)
    assert by_name["source_role.replication"].statements == ['ALTER ROLE "mig_src" REPLICATION;']
    assert by_name["source_role.create"].statements == ['GRANT CREATE ON DATABASE "shop" TO "mig_src";']
    assert by_name["source_role.select"].statements == [
        'GRANT SELECT ON "public"."orders" TO "mig_src";',
        'GRANT SELECT ON "Sales"."Odd Name" TO "mig_src";',
        'GRANT SELECT ON SEQUENCE "public"."orders_id_seq" TO "mig_src";',
    ]
    assert by_name["source_role.publish"].statements == ['ALTER TABLE "public"."orders" OWNER TO "mig_src";']
    assert by_name["source_role.sequence_update"].statements == [
        'GRANT UPDATE ON SEQUENCE "public"."orders_id_seq" TO "mig_src";'
    ]
    assert by_name["source_role.session_replication_role"].statements == [
        'GRANT SET ON PARAMETER session_replication_role TO "mig_src";'
    ]
    assert by_name["source_role.read_all_stats"].statements == ['GRANT pg_read_all_stats TO "mig_src";']
    assert by_name["source_role.signal_backend"].statements == ['GRANT pg_signal_backend TO "mig_src";']
    assert by_name["source_role.createrole"].statements == ['ALTER ROLE "mig_src" CREATEROLE;']
    assert all(r.run_on == "source database 'shop'" for r in results)
    assert all(s in r.fix for r in results for s in r.statements)


def test_source_role_passes_as_one_result_when_granted_or_superuser():
    assert [(r.name, r.ok) for r in check_source_privileges(granted_source())] == [("source_role", True)]
    assert [(r.name, r.ok) for r in check_source_privileges(bare_source(superuser=True))] == [("source_role", True)]


def test_publication_ownership_not_needed_when_the_publication_exists():
    names = [r.name for r in check_source_privileges(bare_source(publication_exists=True))]
    assert "source_role.publish" not in names


def test_existing_control_schema_needs_usage_and_create():
    r = check_source_privileges(bare_source(control_schema_blocked=True))
    assert 'GRANT USAGE, CREATE ON SCHEMA "pgmigrate" TO "mig_src";' in {s for x in r for s in x.statements}


def test_target_role_fails_once_per_missing_privilege_with_exact_statements():
    by_name = {r.name: r for r in check_target_privileges(bare_target())}
    assert list(by_name) == [
        "target_role.create",
        "target_role.schema",
        "target_role.session_replication_role",
        "target_role.owner",
        "target_role.replication",
        "target_role.sequence_select",
        "target_role.sequence_update",
        "target_role.read_all_stats",
        "target_role.signal_backend",
        "target_role.createrole",
    ]
    assert by_name["target_role.create"].statements == ['GRANT CREATE ON DATABASE "shop_new" TO "mig_dst";']
    assert by_name["target_role.schema"].statements == ['GRANT USAGE, CREATE ON SCHEMA "public" TO "mig_dst";']
    assert by_name["target_role.session_replication_role"].statements == [
        'GRANT SET ON PARAMETER session_replication_role TO "mig_dst";'
    ]
    assert by_name["target_role.owner"].statements == ['ALTER TABLE "public"."orders" OWNER TO "mig_dst";']
    assert by_name["target_role.replication"].statements == ['ALTER ROLE "mig_dst" REPLICATION;']
    assert by_name["target_role.sequence_select"].statements == [
        'GRANT SELECT ON SEQUENCE "Sales"."invoice no" TO "mig_dst";'
    ]
    assert by_name["target_role.sequence_update"].statements == [
        'GRANT UPDATE ON SEQUENCE "public"."orders_id_seq" TO "mig_dst";',
        'GRANT UPDATE ON SEQUENCE "Sales"."invoice no" TO "mig_dst";',
    ]
    assert by_name["target_role.read_all_stats"].statements == ['GRANT pg_read_all_stats TO "mig_dst";']
    assert by_name["target_role.signal_backend"].statements == ['GRANT pg_signal_backend TO "mig_dst";']
    assert by_name["target_role.createrole"].statements == ['ALTER ROLE "mig_dst" CREATEROLE;']
    # Before PostgreSQL 15 the parameter cannot be granted: only a superuser may set it.
    old = {r.name: r for r in check_target_privileges(bare_target(server_version_num=140010))}
    assert old["target_role.session_replication_role"].statements == ['ALTER ROLE "mig_dst" SUPERUSER;']


def test_target_role_passes_when_granted_or_superuser():
    assert [(r.name, r.ok) for r in check_target_privileges(granted_target())] == [("target_role", True)]
    assert [(r.name, r.ok) for r in check_target_privileges(bare_target(superuser=True))] == [("target_role", True)]


def test_each_cutover_and_rollback_failure_says_which_step_needs_it():
    source = {r.name: r.problem for r in check_source_privileges(bare_source())}
    target = {r.name: r.problem for r in check_target_privileges(bare_target())}
    assert "setval" in source["source_role.sequence_update"] and "rollback" in source["source_role.sequence_update"]
    assert "USAGE does not allow" in source["source_role.select"]  # SELECT on sequences, not USAGE
    assert "reverse JDBC sink" in source["source_role.session_replication_role"]
    assert "reverse" in target["target_role.replication"]
    assert "pg_logical_slot_peek_binary_changes" in target["target_role.replication"]
    assert "cutover sets them" in target["target_role.sequence_update"]
    assert "the cutover's fence" in source["source_role.createrole"]
    assert "a rollback's fence" in target["target_role.createrole"]
    for prefix, problems in (("source_role", source), ("target_role", target)):
        assert "pg_stat_activity" in problems[f"{prefix}.read_all_stats"]
        signal, createrole = problems[f"{prefix}.signal_backend"], problems[f"{prefix}.createrole"]
        assert "shop_app" in signal and "pg_terminate_backend" in signal
        assert "shop_app" in createrole and "default_transaction_read_only" in createrole
        assert "Needed only because these roles may write a migrated table" in createrole


def test_fence_needs_createrole_and_pg_signal_backend_only_with_application_roles():
    alone = FenceRights(reads_all_stats=False, signal_backend=False, createrole=False, application_roles=[])
    for results in (
        check_source_privileges(granted_source(fence=alone)),
        check_target_privileges(granted_target(fence=alone)),
    ):
        # Nobody else may write a migrated table: the fence has no role to change and no session to end...
        assert [r.name.split(".")[1] for r in results] == ["read_all_stats"]  # ...but the checklist must see


def test_session_replication_role_before_postgres_15_needs_a_superuser_on_the_source_too():
    old = {r.name: r for r in check_source_privileges(bare_source(server_version_num=140010))}
    assert old["source_role.session_replication_role"].statements == ['ALTER ROLE "mig_src" SUPERUSER;']


def test_createrole_on_postgres_16_mentions_admin_option():
    def createrole_fix(version: int) -> str:
        results = check_source_privileges(bare_source(server_version_num=version))
        return next(r.fix for r in results if r.name == "source_role.createrole")

    assert "ADMIN OPTION" in createrole_fix(160004)
    assert "ADMIN OPTION" not in createrole_fix(150018)


def test_subscription_on_postgres_15_needs_a_superuser_and_says_the_alternative():
    facts = {
        "role": "mig_dst",
        "superuser": False,
        "create_subscription": False,
        "dbname": "shop_new",
        "max_logical_replication_workers": "4",
        "server_version_num": 150018,
    }
    r = check_subscription_rights(facts, keyless_count=1)
    assert not r.ok and r.statements == ['ALTER ROLE "mig_dst" SUPERUSER;']
    assert "primary key" in r.fix and r.run_on == "target database 'shop_new'"
    r16 = check_subscription_rights({**facts, "server_version_num": 160004}, keyless_count=1)
    assert r16.statements == ['GRANT pg_create_subscription TO "mig_dst";']


def test_failure_message_ends_with_one_copy_pasteable_block_per_server():
    report = PreflightReport("shop-2026")
    report.results += check_source_privileges(bare_source()) + check_target_privileges(bare_target())
    message = report.failure_message()
    block = message[message.index("Missing privileges: run as a superuser") :].splitlines()
    assert block[1] == "-- on the source database 'shop':"
    assert block[2:4] == ['ALTER ROLE "mig_src" REPLICATION;', 'GRANT CREATE ON DATABASE "shop" TO "mig_src";']
    target_at = block.index("-- on the target database 'shop_new':")
    assert block[target_at + 1] == 'GRANT CREATE ON DATABASE "shop_new" TO "mig_dst";'
    # heading, two server lines, 11 source statements (2 replication/create, 3 SELECT, 1 owner, then 1 setval,
    # 1 session_replication_role, 3 fence) and 11 target (create, schema, parameter, owner, replication,
    # 1 SELECT and 2 UPDATE on sequences, 3 fence)
    assert len(block) == 1 + 2 + 11 + 11
    assert PreflightReport("ok").grant_script() == []
