"""Preflight against the real source (5433) and target (5434) PostgreSQL 15 servers of the local stack.

Each test gets a fresh database `pftest` on both servers (dropped afterwards). The migration's own slot
and publication names are only looked up, never created here: their clash logic is unit-tested.
`wal_level=replica` cannot be produced on the shared server; that rule is unit-tested on a fake dict.
"""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest

from pgmigrate.core.endpoints import PgEndpoint
from pgmigrate.core.params import MigrationParams
from pgmigrate.preflight.checks import run_preflight

pytestmark = pytest.mark.integration

DB = "pftest"
SOURCE = PgEndpoint("127.0.0.1", 5433, DB, "postgres", "postgres")
TARGET = PgEndpoint("127.0.0.1", 5434, DB, "postgres", "postgres")
NOREPL_ROLE, NOREPL_PASSWORD = "pftest_noreplication", "pftest-norepl-pw"

GOOD_SCHEMA = """
CREATE EXTENSION citext;
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE DOMAIN posint AS integer CHECK (VALUE > 0);
CREATE TABLE customers (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, email citext, m mood, n posint,
                        doc jsonb, tags text[], seen timestamptz, price numeric(10, 2), ip inet, ts tsvector);
CREATE TABLE orders (id bigserial PRIMARY KEY, customer_id bigint REFERENCES customers (id), total numeric);
CREATE TABLE events (id bigint, at date, payload jsonb, PRIMARY KEY (id, at)) PARTITION BY RANGE (at);
CREATE TABLE events_2025 PARTITION OF events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
"""


def admin(port: int) -> psycopg.Connection:
    return psycopg.connect(
        host="127.0.0.1", port=port, user="postgres", password="postgres", dbname="postgres", autocommit=True
    )


def recreate(port: int) -> None:
    with admin(port) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {DB}")


def run_sql(endpoint: PgEndpoint, text: str) -> None:
    with endpoint.connect(autocommit=True) as conn:
        conn.execute(text)


def params(**overrides) -> MigrationParams:
    return MigrationParams.from_dict({"migration_id": "pftest-pre", "schemas": ["public"], **overrides})


@pytest.fixture
def dbs() -> Iterator[None]:
    for port in (5433, 5434):
        recreate(port)
    run_sql(SOURCE, GOOD_SCHEMA)
    yield
    for port in (5433, 5434):
        with admin(port) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")


@pytest.fixture
def norepl_role(dbs) -> Iterator[PgEndpoint]:
    with admin(5433) as conn:
        conn.execute(f"DROP ROLE IF EXISTS {NOREPL_ROLE}")
        conn.execute(f"CREATE ROLE {NOREPL_ROLE} LOGIN PASSWORD '{NOREPL_PASSWORD}'")
    yield PgEndpoint("127.0.0.1", 5433, DB, NOREPL_ROLE, NOREPL_PASSWORD)
    with admin(5433) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
        conn.execute(f"DROP ROLE IF EXISTS {NOREPL_ROLE}")


def by_name(report):
    return {r.name: r for r in report.results}


def test_good_schema_passes_every_check(dbs):
    report = run_preflight(SOURCE, TARGET, params(), connect_names_in_use={"someone-elses-connector"})
    assert report.ok, report.failure_message()
    assert {r.name for r in report.results} == {
        "source_connection",
        "target_connection",
        "distinct_databases",
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
        "target_role",
        "target_tables",
        "roles",
        "target_subscription",
        "source_subscription",
    }
    assert "3 tables selected" in by_name(report)["params"].detail
    report.raise_if_failed()


def test_table_without_primary_key_fails_with_table_and_fix(dbs):
    run_sql(SOURCE, 'CREATE TABLE "No Key" (a int, b text); CREATE TABLE keyless_log (line text)')
    report = run_preflight(SOURCE, TARGET, params())
    result = by_name(report)["replica_identity"]
    assert not result.ok
    assert '"No Key"' in result.problem and "keyless_log" in result.problem
    assert 'ALTER TABLE "public"."No Key" REPLICA IDENTITY FULL;' in result.fix
    assert 'ALTER TABLE "public"."keyless_log" REPLICA IDENTITY FULL;' in result.fix
    assert [r.name for r in report.failed] == ["replica_identity"]
    assert 'ALTER TABLE "public"."No Key" REPLICA IDENTITY FULL;' in report.failure_message()
    keys = by_name(report)["primary_keys"]
    assert keys.ok and '"No Key"' in keys.detail and "logical replication" in keys.detail


def test_unlogged_tables_fail_by_name_and_the_param_makes_them_logged(dbs):
    run_sql(
        SOURCE,
        """
        CREATE UNLOGGED TABLE sessions (id int PRIMARY KEY, token text);
        CREATE TABLE visits (id int, at date, PRIMARY KEY (id, at)) PARTITION BY RANGE (at);
        CREATE UNLOGGED TABLE visits_2026 PARTITION OF visits FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
    """,
    )
    report = run_preflight(SOURCE, TARGET, params())
    result = by_name(report)["unlogged_tables"]
    assert not result.ok and "public.sessions" in result.problem and "public.visits_2026" in result.problem
    assert 'ALTER TABLE "public"."sessions" SET LOGGED;' in result.fix
    assert [r.name for r in report.failed] == ["unlogged_tables"]

    applied = run_preflight(SOURCE, TARGET, params(set_logged_for_unlogged=True))
    assert applied.ok, applied.failure_message()
    assert "applied SET LOGGED" in by_name(applied)["unlogged_tables"].detail
    with SOURCE.connect() as conn:
        rows = conn.execute("SELECT relname, relpersistence FROM pg_class WHERE relname IN ('sessions', 'visits_2026')")
        persistence = dict(rows.fetchall())
    assert persistence == {"sessions": "p", "visits_2026": "p"}
    assert by_name(run_preflight(SOURCE, TARGET, params()))["unlogged_tables"].detail == "no unlogged tables"


def test_fix_no_pk_applies_replica_identity_full(dbs):
    run_sql(SOURCE, 'CREATE TABLE "No Key" (a int)')
    report = run_preflight(SOURCE, TARGET, params(), fix_no_pk=True)
    # Replica identity is fixed; the table goes through native logical replication (duplicates kept).
    assert report.ok, report.failure_message()
    assert "pgmigrate_pftest_pre_native" in by_name(report)["primary_keys"].detail
    assert "can create" in by_name(report)["target_subscription"].detail
    assert 'applied REPLICA IDENTITY FULL to public."No Key"' in by_name(report)["replica_identity"].detail
    with SOURCE.connect() as conn:
        assert conn.execute("SELECT relreplident FROM pg_class WHERE relname = 'No Key'").fetchone()[0] == "f"
    # The param does the same, and a rerun finds nothing left to fix.
    rerun = run_preflight(SOURCE, TARGET, params(replica_identity_full_for_no_pk=True))
    assert "every table" in by_name(rerun)["replica_identity"].detail


def test_keyless_table_with_replica_identity_index_is_refused(dbs):
    run_sql(
        SOURCE,
        "CREATE TABLE uniq (a int NOT NULL); CREATE UNIQUE INDEX uniq_a ON uniq (a);"
        "ALTER TABLE uniq REPLICA IDENTITY USING INDEX uniq_a",
    )
    report = run_preflight(SOURCE, TARGET, params())
    assert [r.name for r in report.failed] == ["primary_keys"], report.failure_message()
    assert 'ALTER TABLE "public"."uniq" REPLICA IDENTITY FULL;' in by_name(report)["primary_keys"].fix


def test_non_empty_target_table_fails(dbs):
    run_sql(TARGET, "CREATE TABLE orders (id bigint PRIMARY KEY); INSERT INTO orders VALUES (1)")
    run_sql(TARGET, "CREATE TABLE customers (id bigint PRIMARY KEY)")
    report = run_preflight(SOURCE, TARGET, params())
    result = by_name(report)["target_tables"]
    assert not result.ok
    assert "public.orders" in result.problem and "public.customers" not in result.problem
    assert 'TRUNCATE "public"."orders";' in result.fix and "`migration_target`" in result.fix


def test_the_same_database_under_another_name_is_refused_first(dbs):
    """One connection for both, or the same server through another address: refused before any other check, so no
    fix (the target check's TRUNCATE) is ever proposed for what are the production tables."""
    run_sql(SOURCE, "INSERT INTO customers (email) VALUES ('a@example.com')")
    same = PgEndpoint("localhost", 5433, DB, "postgres", "postgres")
    for target in (SOURCE, same):
        report = run_preflight(SOURCE, target, params(target_conn_id="pftest_target"))
        assert [r.name for r in report.failed] == ["distinct_databases"], report.failure_message()
        assert [r.name for r in report.results] == ["source_connection", "target_connection", "distinct_databases"]
        message = report.failure_message()
        assert "same database" in message and "`pftest_target`" in message and "TRUNCATE" not in message
    with psycopg.connect(host="127.0.0.1", port=5433, user="postgres", password="postgres", dbname=DB) as conn:
        assert conn.execute("SELECT count(*) FROM customers").fetchone()[0] == 1


def test_wrong_password_names_the_connection(dbs):
    wrong = PgEndpoint("127.0.0.1", 5433, DB, "postgres", "not-the-password")
    report = run_preflight(wrong, TARGET, params(source_conn_id="pftest_source"))
    result = by_name(report)["source_connection"]
    assert not result.ok
    assert "postgres@127.0.0.1:5433/pftest" in result.problem
    assert "password authentication failed" in result.problem
    assert "`pftest_source`" in result.fix
    message = report.failure_message()
    assert "not-the-password" not in message
    assert [r.name for r in report.failed] == ["source_connection"]
    assert {r.name for r in report.skipped} >= {"wal_level", "source_role", "target_tables"}
    assert "Not run because a connection failed" in message
    assert by_name(report)["target_connection"].ok


def test_missing_target_database_is_reported_with_its_fix(dbs):
    missing = PgEndpoint("127.0.0.1", 5434, "pftest_does_not_exist", "postgres", "postgres")
    result = by_name(run_preflight(SOURCE, missing, params()))["target_connection"]
    assert not result.ok and 'database "pftest_does_not_exist" does not exist' in result.problem
    assert 'CREATE DATABASE "pftest_does_not_exist";' in result.fix


def test_unknown_table_in_params_fails_naming_it(dbs):
    report = run_preflight(SOURCE, TARGET, params(tables=["public.customers", "public.nope"]))
    result = by_name(report)["params"]
    assert not result.ok and "public.nope" in result.problem
    assert [r.name for r in report.failed] == ["params"]  # the known table is still checked, and passes
    assert "public.nope" in report.failure_message()


def test_role_without_replication_fails_with_alter_role_fix(norepl_role):
    report = run_preflight(norepl_role, TARGET, params())
    result = by_name(report)["source_role.replication"]
    assert not result.ok
    assert f"role {NOREPL_ROLE} lacks the REPLICATION attribute" in result.problem
    assert f'ALTER ROLE "{NOREPL_ROLE}" REPLICATION;' in result.fix
    assert f'GRANT CREATE ON DATABASE "{DB}" TO "{NOREPL_ROLE}";' in by_name(report)["source_role.create"].fix
    assert f'ALTER ROLE "{NOREPL_ROLE}" REPLICATION;' in report.failure_message()


def test_types_debezium_cannot_carry_are_routed_and_only_uncarriable_ones_refused(dbs):
    """Composite, multirange, pg_lsn, box, a domain over one of them and a domain over float8 travel by the native
    channel (named in the check's detail); a column of a type PostgreSQL accepts no input for is refused by name
    with the fix."""
    run_sql(SOURCE, "CREATE TYPE addr AS (street text, zip int)")
    run_sql(SOURCE, "CREATE DOMAIN boxdom AS box")
    run_sql(SOURCE, "CREATE DOMAIN pricedom AS float8 CHECK (VALUE >= 0)")
    run_sql(
        SOURCE,
        "CREATE TABLE geo (id int PRIMARY KEY, b box, a addr, lsn pg_lsn, mr int4multirange, bd boxdom, ok point, "
        "pr pricedom)",
    )
    run_sql(SOURCE, "CREATE TABLE plain (id int PRIMARY KEY, t text)")
    result = by_name(run_preflight(SOURCE, TARGET, params()))["column_types"]
    assert result.ok, result.problem
    for column in (
        "public.geo.b: box",
        "public.geo.a: addr (composite type",
        "public.geo.lsn: pg_lsn",
        "public.geo.mr: int4multirange",
        "public.geo.bd: boxdom",
        "public.geo.pr: pricedom (a domain over float8 gets Debezium's own conversion",
    ):
        assert column in result.detail, (column, result.detail)
    assert "native channel" in result.detail
    assert "geo.ok" not in result.detail and "plain" not in result.detail

    run_sql(
        SOURCE,
        "CREATE TABLE plans AS SELECT 1 AS id, conbin AS plan FROM pg_constraint WHERE conbin IS NOT NULL LIMIT 1",
    )
    run_sql(SOURCE, "ALTER TABLE plans ADD PRIMARY KEY (id)")
    result = by_name(run_preflight(SOURCE, TARGET, params()))["column_types"]
    assert not result.ok
    assert "public.plans.plan: pg_node_tree (PostgreSQL accepts no input for type pg_node_tree" in result.problem
    assert "TYPE text" in result.fix and "geo" not in result.problem

    # A keyless table is matched by its whole row: a type without equality (json) would stop the native channel.
    run_sql(SOURCE, "DROP TABLE plans")
    run_sql(SOURCE, "CREATE TABLE events_log (at timestamptz, doc json, tags jsonb, shape box[])")
    run_sql(SOURCE, "ALTER TABLE events_log REPLICA IDENTITY FULL")
    result = by_name(run_preflight(SOURCE, TARGET, params()))["column_types"]
    assert not result.ok
    assert "public.events_log.doc: json (a table without a primary key is matched by its whole row" in result.problem
    assert "public.events_log.shape: box[]" in result.problem and "events_log.tags" not in result.problem
    assert "primary key" in result.fix and "jsonb" in result.fix


def test_roles_owning_or_granted_migrated_objects_must_exist_on_the_target(dbs):
    """Roles are per server: a grantee or owner missing on the target is named with CREATE ROLE (and its
    membership); once created, the check passes and says grants and ownership are kept."""
    roles = ("pf_app_owner", "pf_app")
    for port in (5433, 5434):
        with admin(port) as conn:
            for role in roles:
                conn.execute(f"DROP ROLE IF EXISTS {role}")
    with admin(5433) as conn:
        conn.execute("CREATE ROLE pf_app_owner NOLOGIN")
        conn.execute("CREATE ROLE pf_app LOGIN IN ROLE pf_app_owner")
    try:
        run_sql(SOURCE, "CREATE TABLE ledger (id int PRIMARY KEY, amount int)")
        run_sql(SOURCE, "ALTER TABLE ledger OWNER TO pf_app_owner")
        run_sql(SOURCE, "GRANT SELECT ON ledger TO pf_app")
        run_sql(SOURCE, "ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO pf_app")
        result = by_name(run_preflight(SOURCE, TARGET, params()))["roles"]
        assert not result.ok
        assert "pf_app_owner (table public.ledger (owner))" in result.problem, result.problem
        assert "pf_app (" in result.problem and "table public.ledger (SELECT)" in result.problem
        assert result.statements == [
            'CREATE ROLE "pf_app" LOGIN;',
            'CREATE ROLE "pf_app_owner" NOLOGIN;',
            'GRANT "pf_app_owner" TO "pf_app";',
        ], result.statements
        assert "PASSWORD" in result.fix
        with admin(5434) as conn:
            for statement in result.statements:
                conn.execute(statement)
        result = by_name(run_preflight(SOURCE, TARGET, params()))["roles"]
        assert result.ok, result.problem
        assert "ownership kept" in result.detail
    finally:
        for endpoint_ in (SOURCE, TARGET):
            with endpoint_.connect(autocommit=True) as conn:  # what they own or hold in the database
                for role in roles:
                    if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone():
                        conn.execute(f"DROP OWNED BY {role}")
        for port in (5433, 5434):
            with admin(port) as conn:
                for role in roles:
                    conn.execute(f"DROP ROLE IF EXISTS {role}")


def test_connector_names_in_use_clash(dbs):
    names = params().names
    report = run_preflight(SOURCE, TARGET, params(), connect_names_in_use={names.sink_connector})
    result = by_name(report)["names"]
    assert not result.ok and names.sink_connector in result.problem and "Pick another migration_id" in result.fix
    owned = run_preflight(SOURCE, TARGET, params(), {names.sink_connector}, owned_by_this_migration=True)
    assert owned.ok
