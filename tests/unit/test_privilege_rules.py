"""Unit tests of the least-privilege rules (`pgmigrate.privileges`) and the report's grant block. The role
facts are built by hand here (fakes: no database); `tests/integration/test_least_privilege.py` reads them
from real servers with real non-superuser roles."""

from __future__ import annotations

import pytest

from pgmigrate.catalog import TableRef
from pgmigrate.preflight import PreflightReport
from pgmigrate.preflight_rules import check_subscription_rights
from pgmigrate.privileges import (
    SourceRoleFacts,
    TargetRoleFacts,
    check_source_privileges,
    check_target_privileges,
)

pytestmark = pytest.mark.unit

ORDERS, ODD = TableRef("public", "orders"), TableRef("Sales", "Odd Name")


def bare_source(**kw) -> SourceRoleFacts:
    """A fake source role with nothing granted but LOGIN."""
    facts = dict(role="mig_src", dbname="shop", superuser=False, replication=False, create_on_db=False,
                 unreadable=[ORDERS, ODD], unreadable_sequences=[TableRef("public", "orders_id_seq")],
                 not_owned=[ORDERS])  # fmt: skip
    return SourceRoleFacts(**{**facts, **kw})


def bare_target(**kw) -> TargetRoleFacts:
    facts = dict(role="mig_dst", dbname="shop_new", superuser=False, create_on_db=False,
                 schemas_blocked=["public"], can_set_replication_role=False, not_owned=[ORDERS])  # fmt: skip
    return TargetRoleFacts(**{**facts, **kw})


def test_source_role_fails_once_per_missing_privilege_with_exact_statements():
    results = check_source_privileges(bare_source())
    by_name = {r.name: r for r in results}
    assert list(by_name) == ["source_role.replication", "source_role.create", "source_role.select",
                             "source_role.publish"]  # fmt: skip
    assert not any(r.ok for r in results)
    assert by_name["source_role.replication"].statements == ['ALTER ROLE "mig_src" REPLICATION;']
    assert by_name["source_role.create"].statements == ['GRANT CREATE ON DATABASE "shop" TO "mig_src";']
    assert by_name["source_role.select"].statements == [
        'GRANT SELECT ON "public"."orders" TO "mig_src";',
        'GRANT SELECT ON "Sales"."Odd Name" TO "mig_src";',
        'GRANT SELECT ON SEQUENCE "public"."orders_id_seq" TO "mig_src";',
    ]
    assert by_name["source_role.publish"].statements == ['ALTER TABLE "public"."orders" OWNER TO "mig_src";']
    assert all(r.run_on == "source database 'shop'" for r in results)
    assert all(s in r.fix for r in results for s in r.statements)


def test_source_role_passes_as_one_result_when_granted_or_superuser():
    granted = bare_source(replication=True, create_on_db=True, unreadable=[], unreadable_sequences=[], not_owned=[])
    assert [(r.name, r.ok) for r in check_source_privileges(granted)] == [("source_role", True)]
    assert [(r.name, r.ok) for r in check_source_privileges(bare_source(superuser=True))] == [("source_role", True)]


def test_publication_ownership_not_needed_when_the_publication_exists():
    names = [r.name for r in check_source_privileges(bare_source(publication_exists=True))]
    assert "source_role.publish" not in names


def test_existing_control_schema_needs_usage_and_create():
    r = check_source_privileges(bare_source(control_schema_blocked=True))
    assert 'GRANT USAGE, CREATE ON SCHEMA "pgmigrate" TO "mig_src";' in {s for x in r for s in x.statements}


def test_target_role_fails_once_per_missing_privilege_with_exact_statements():
    by_name = {r.name: r for r in check_target_privileges(bare_target())}
    assert by_name["target_role.create"].statements == ['GRANT CREATE ON DATABASE "shop_new" TO "mig_dst";']
    assert by_name["target_role.schema"].statements == ['GRANT USAGE, CREATE ON SCHEMA "public" TO "mig_dst";']
    assert by_name["target_role.session_replication_role"].statements == [
        'GRANT SET ON PARAMETER session_replication_role TO "mig_dst";'
    ]
    assert by_name["target_role.owner"].statements == ['ALTER TABLE "public"."orders" OWNER TO "mig_dst";']
    # Before PostgreSQL 15 the parameter cannot be granted: only a superuser may set it.
    old = {r.name: r for r in check_target_privileges(bare_target(server_version_num=140010))}
    assert old["target_role.session_replication_role"].statements == ['ALTER ROLE "mig_dst" SUPERUSER;']


def test_target_role_passes_when_granted():
    granted = bare_target(create_on_db=True, schemas_blocked=[], can_set_replication_role=True, not_owned=[])
    assert [(r.name, r.ok) for r in check_target_privileges(granted)] == [("target_role", True)]


def test_subscription_on_postgres_15_needs_a_superuser_and_says_the_alternative():
    facts = {"role": "mig_dst", "superuser": False, "create_subscription": False, "dbname": "shop_new",
             "max_logical_replication_workers": "4", "server_version_num": 150018}  # fmt: skip
    r = check_subscription_rights(facts, keyless_count=1)
    assert not r.ok and r.statements == ['ALTER ROLE "mig_dst" SUPERUSER;']
    assert "primary key" in r.fix and r.run_on == "target database 'shop_new'"
    r16 = check_subscription_rights({**facts, "server_version_num": 160004}, keyless_count=1)
    assert r16.statements == ['GRANT pg_create_subscription TO "mig_dst";']


def test_failure_message_ends_with_one_copy_pasteable_block_per_server():
    report = PreflightReport("shop-2026")
    report.results += check_source_privileges(bare_source()) + check_target_privileges(bare_target())
    message = report.failure_message()
    block = message[message.index("Missing privileges: run as a superuser"):].splitlines()
    assert block[1] == "-- on the source database 'shop':"
    assert block[2:4] == ['ALTER ROLE "mig_src" REPLICATION;', 'GRANT CREATE ON DATABASE "shop" TO "mig_src";']
    target_at = block.index("-- on the target database 'shop_new':")
    assert block[target_at + 1] == 'GRANT CREATE ON DATABASE "shop_new" TO "mig_dst";'
    assert len(block) == 1 + 2 + 6 + 4  # heading, two server lines, 6 source and 4 target statements
    assert PreflightReport("ok").grant_script() == []
