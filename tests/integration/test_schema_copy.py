"""Schema copy with the real pg_dump/pg_restore 15 between the stack's source (5433) and target (5434).

The source database `pftest_schema` is built once for the module; each test starts from an empty target
database of the same name. Both are dropped at the end.
"""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest

from pgmigrate.core.catalog import UnknownTables
from pgmigrate.core.endpoints import PgEndpoint
from pgmigrate.cutover.sequences import sequences_snapshot
from pgmigrate.schema.pg_dump_toc import SchemaCopyError, parse_toc, select_entries
from pgmigrate.schema.post_data import apply_post_data
from pgmigrate.schema.schema_copy import copy_pre_data

pytestmark = pytest.mark.integration

DB = "pftest_schema"
SOURCE = PgEndpoint("127.0.0.1", 5433, DB, "postgres", "postgres")
TARGET = PgEndpoint("127.0.0.1", 5434, DB, "postgres", "postgres")
SCHEMAS = ["public", "Sales"]

SOURCE_SCHEMA = """
CREATE EXTENSION citext;
CREATE SCHEMA ext;
CREATE EXTENSION pgcrypto WITH SCHEMA ext;
CREATE SCHEMA "Sales";
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE TYPE unused_enum AS ENUM ('x', 'y');
CREATE TYPE "Sales".money_pair AS (amount numeric(12, 2), currency char(3));
CREATE DOMAIN posint AS integer CHECK (VALUE > 0);
CREATE SEQUENCE "Sales".invoice_no START 1000;
CREATE TABLE customers (
    id integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email citext NOT NULL,
    m mood NOT NULL DEFAULT 'ok',
    loyalty posint,
    token bytea DEFAULT ext.gen_random_bytes(8),
    CONSTRAINT email_has_at CHECK (position('@' in email) > 1)
);
CREATE UNIQUE INDEX customers_email ON customers (email);
COMMENT ON TABLE customers IS 'who buys';
CREATE TABLE "Sales"."Order Items" (
    id bigserial PRIMARY KEY,
    "select" text NOT NULL,
    customer_id integer NOT NULL REFERENCES customers (id),
    invoice bigint NOT NULL DEFAULT nextval('"Sales".invoice_no'),
    price "Sales".money_pair,
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX "Order Items by select" ON "Sales"."Order Items" ("select");
CREATE FUNCTION "Sales".touch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN NEW.updated_at := now(); RETURN NEW; END $$;
CREATE TRIGGER touch_order_items BEFORE UPDATE ON "Sales"."Order Items"
    FOR EACH ROW EXECUTE FUNCTION "Sales".touch();
CREATE TABLE events (
    id bigint NOT NULL, at date NOT NULL, customer_id integer REFERENCES customers (id), payload jsonb,
    PRIMARY KEY (id, at)
) PARTITION BY RANGE (at);
CREATE TABLE events_2025 PARTITION OF events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
CREATE TABLE events_2026 PARTITION OF events FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
CREATE INDEX events_payload ON events USING gin (payload);
INSERT INTO customers (email, loyalty) VALUES ('a@example.com', 1), ('b@example.com', 2);
INSERT INTO "Sales"."Order Items" ("select", customer_id) VALUES ('first', 1), ('second', 2), ('third', 1);
"""

TABLES_SQL = """
SELECT n.nspname || '.' || c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND n.nspname IN ('public', 'Sales') ORDER BY 1
"""
SECONDARY_INDEXES_SQL = """
SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname IN ('public', 'Sales') AND NOT i.indisprimary ORDER BY 1
"""
PRIMARY_KEYS_SQL = """
SELECT t.relname FROM pg_constraint k JOIN pg_class t ON t.oid = k.conrelid
JOIN pg_namespace n ON n.oid = t.relnamespace WHERE k.contype = 'p' AND n.nspname IN ('public', 'Sales') ORDER BY 1
"""
USER_TYPES_SQL = """
SELECT t.typname FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
WHERE n.nspname IN ('public', 'Sales') AND t.typtype IN ('e', 'd', 'c')
  AND NOT EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = t.typrelid AND c.relkind <> 'c')  -- not a table's row type
ORDER BY 1
"""
FKS_SQL = """
SELECT k.conname, k.convalidated FROM pg_constraint k JOIN pg_class t ON t.oid = k.conrelid
WHERE k.contype = 'f' AND k.conparentid = 0 ORDER BY 1
"""
# Relations of "Sales" and the table that owns each (OWNED BY or identity), if any.
SALES_RELATIONS_SQL = """
SELECT c.relname, c.relkind::text, d.refobjid::regclass::text
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.refclassid = 'pg_class'::regclass
     AND d.deptype IN ('a', 'i')
WHERE n.nspname = 'Sales' ORDER BY 1
"""
TRIGGERS_SQL = "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal AND tgparentid = 0 ORDER BY 1"


def admin(port: int) -> psycopg.Connection:
    return psycopg.connect(
        host="127.0.0.1", port=port, user="postgres", password="postgres", dbname="postgres", autocommit=True
    )


def recreate(port: int) -> None:
    with admin(port) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {DB}")


def rows(endpoint: PgEndpoint, query: str, *args) -> list:
    with endpoint.connect(autocommit=True) as conn:
        return conn.execute(query, args or None).fetchall()


def column(endpoint: PgEndpoint, query: str, *args) -> list:
    return [r[0] for r in rows(endpoint, query, *args)]


def execute(endpoint: PgEndpoint, statement: str) -> None:
    with endpoint.connect(autocommit=True) as conn:
        conn.execute(statement)


@pytest.fixture(scope="module")
def source_db() -> Iterator[None]:
    recreate(5433)
    execute(SOURCE, SOURCE_SCHEMA)
    yield
    for port in (5433, 5434):
        with admin(port) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")


@pytest.fixture
def target_db(source_db) -> None:
    recreate(5434)


ALL_TABLES = ["Sales.Order Items", "public.customers", "public.events", "public.events_2025", "public.events_2026"]


def test_pre_data_creates_tables_with_primary_keys_but_no_secondary_objects(target_db):
    result = copy_pre_data(SOURCE, TARGET, SCHEMAS, [])
    assert column(TARGET, TABLES_SQL) == ALL_TABLES
    assert column(TARGET, PRIMARY_KEYS_SQL) == ["Order Items", "customers", "events", "events_2025", "events_2026"]
    assert column(TARGET, SECONDARY_INDEXES_SQL) == []
    assert column(TARGET, FKS_SQL) == [] and column(TARGET, TRIGGERS_SQL) == []
    # Types, the enum's labels, extensions (pgcrypto's own schema included), sequences, defaults, checks.
    labels = "SELECT enumlabel FROM pg_enum WHERE enumtypid = 'public.mood'::regtype ORDER BY enumsortorder"
    assert column(TARGET, labels) == ["sad", "ok", "happy"]
    assert column(TARGET, USER_TYPES_SQL) == ["money_pair", "mood", "posint", "unused_enum"]
    assert sorted(column(TARGET, "SELECT extname FROM pg_extension")) == ["citext", "pgcrypto", "plpgsql"]
    assert sorted(result["extensions"]) == ["citext", "pgcrypto"]
    assert column(TARGET, "SELECT to_regclass('\"Sales\".invoice_no')::text") == ['"Sales".invoice_no']
    checks = "SELECT conname FROM pg_constraint WHERE contype = 'c' AND conrelid = 'customers'::regclass"
    assert column(TARGET, checks) == ["email_has_at"]
    assert column(TARGET, "SELECT obj_description('customers'::regclass)") == ["who buys"]
    assert "public.customers" in result["tables"] and '"Sales"."Order Items"' in result["tables"]
    # GENERATED ALWAYS became BY DEFAULT on the target, and is reported for the state record.
    identity = "SELECT attidentity FROM pg_attribute WHERE attrelid = 'customers'::regclass AND attname = 'id'"
    assert column(TARGET, identity) == ["d"]
    assert result["identity_columns"] == [
        {"schema": "public", "table": "customers", "column": "id", "changed_now": True}
    ]
    # What the sink does: insert the source's ids, and quoted/reserved names work.
    execute(TARGET, "INSERT INTO customers (id, email) VALUES (42, 'c@example.com')")
    execute(TARGET, """INSERT INTO "Sales"."Order Items" (id, "select", customer_id) VALUES (7, 'x', 999)""")


def test_pre_data_rerun_is_a_no_op(target_db):
    copy_pre_data(SOURCE, TARGET, SCHEMAS, [])
    again = copy_pre_data(SOURCE, TARGET, SCHEMAS, [])
    assert again["created"] == []
    assert again["existing"] > 10
    # Still reported (it was changed by the first run), so a rerun never erases it from the state.
    assert again["identity_columns"] == [
        {"schema": "public", "table": "customers", "column": "id", "changed_now": False}
    ]
    assert column(TARGET, TABLES_SQL) == ALL_TABLES


def test_post_data_adds_indexes_foreign_keys_and_triggers_and_reruns(target_db):
    copy_pre_data(SOURCE, TARGET, SCHEMAS, [])
    result = apply_post_data(SOURCE, TARGET, SCHEMAS, [])
    assert column(TARGET, SECONDARY_INDEXES_SQL) == [
        "Order Items by select",
        "customers_email",
        "events_2025_payload_idx",
        "events_2026_payload_idx",
        "events_payload",
    ]
    assert rows(TARGET, FKS_SQL) == [("Order Items_customer_id_fkey", True), ("events_customer_id_fkey", True)]
    assert column(TARGET, TRIGGERS_SQL) == ["touch_order_items"]
    assert sorted(result["foreign_keys"]["validated"]) == sorted(result["foreign_keys"]["added"])
    assert result["foreign_keys"]["pending_validation"] == []
    assert result["triggers"] == [
        {"table": '"Sales"."Order Items"', "trigger": "touch_order_items", "enabled": "origin"}
    ]
    assert result["warnings"] == []
    # The partitioned indexes are attached, so the root's index is valid.
    assert column(TARGET, "SELECT indisvalid FROM pg_index WHERE indexrelid = 'events_payload'::regclass") == [True]
    again = apply_post_data(SOURCE, TARGET, SCHEMAS, [])
    assert again["created"] == [] and again["foreign_keys"]["added"] == []
    assert copy_pre_data(SOURCE, TARGET, SCHEMAS, [])["created"] == []  # pre-data after post-data: still no-op


def test_foreign_key_with_orphans_stays_not_valid_until_rerun(target_db):
    copy_pre_data(SOURCE, TARGET, SCHEMAS, [])
    # A child row whose parent has not arrived yet (topics are applied independently while streaming).
    execute(TARGET, """INSERT INTO "Sales"."Order Items" (id, "select", customer_id) VALUES (1, 'early', 1)""")
    result = apply_post_data(SOURCE, TARGET, SCHEMAS, [])
    pending = result["foreign_keys"]["pending_validation"]
    assert [p["constraint"] for p in pending] == ['Order Items_customer_id_fkey on "Sales"."Order Items"']
    assert pending[0]["added"] is True and "violates foreign key constraint" in pending[0]["error"]
    assert ("Order Items_customer_id_fkey", False) in rows(TARGET, FKS_SQL)
    execute(TARGET, "INSERT INTO customers (id, email) VALUES (1, 'a@example.com')")  # the parent arrives
    again = apply_post_data(SOURCE, TARGET, SCHEMAS, [])
    assert again["foreign_keys"]["validated"] == ['Order Items_customer_id_fkey on "Sales"."Order Items"']
    assert again["foreign_keys"]["pending_validation"] == []
    assert ("Order Items_customer_id_fkey", True) in rows(TARGET, FKS_SQL)


def test_table_subset_copies_only_those_tables_and_the_types_they_need(target_db):
    result = copy_pre_data(SOURCE, TARGET, SCHEMAS, [("public", "customers")])
    assert result["tables"] == ["public.customers"]
    assert column(TARGET, TABLES_SQL) == ["public.customers"]
    assert column(TARGET, USER_TYPES_SQL) == ["mood", "posint"]  # not unused_enum, not "Sales".money_pair
    # Every sequence comes along (an application may call nextval() on any), so "Sales" holds just those;
    # "Order Items_id_seq" without its OWNED BY, since its table stays behind.
    assert rows(TARGET, SALES_RELATIONS_SQL) == [("Order Items_id_seq", "S", None), ("invoice_no", "S", None)]
    assert sorted(column(TARGET, "SELECT extname FROM pg_extension")) == ["citext", "pgcrypto", "plpgsql"]
    post = apply_post_data(SOURCE, TARGET, SCHEMAS, [("public", "customers")])
    assert column(TARGET, SECONDARY_INDEXES_SQL) == ["customers_email"]
    assert post["foreign_keys"] == {"added": [], "validated": [], "pending_validation": [], "skipped": []}


def test_subset_reports_foreign_keys_to_tables_left_out(target_db):
    tables = [("Sales", "Order Items")]
    pre = copy_pre_data(SOURCE, TARGET, SCHEMAS, tables)
    assert column(TARGET, TABLES_SQL) == ["Sales.Order Items"]
    assert column(TARGET, USER_TYPES_SQL) == ["money_pair"]
    assert pre["identity_columns"] == []
    post = apply_post_data(SOURCE, TARGET, SCHEMAS, tables)
    assert post["foreign_keys"]["skipped"] == [
        'Order Items_customer_id_fkey on "Sales"."Order Items" references public.customers, which is not migrated'
    ]
    assert column(TARGET, TRIGGERS_SQL) == ["touch_order_items"]  # and its function came along


def test_existing_table_with_other_columns_stops_with_the_difference(target_db):
    execute(TARGET, "CREATE TABLE customers (id integer PRIMARY KEY, email text)")
    with pytest.raises(SchemaCopyError) as exc:
        copy_pre_data(SOURCE, TARGET, SCHEMAS, [])
    message = str(exc.value)
    assert "table public.customers" in message and "m missing on the target" in message
    assert "email is text on the target, public.citext on the source" in message
    assert "DROP TABLE" in message
    assert column(TARGET, TABLES_SQL) == ["public.customers"]  # nothing else was created


def test_unknown_table_is_refused(target_db):
    with pytest.raises(UnknownTables, match="public.nope"):
        copy_pre_data(SOURCE, TARGET, SCHEMAS, [("public", "nope")])


def test_sequences_snapshot_reads_every_sequence(source_db):
    snapshot = {(s["schema"], s["name"]): s for s in sequences_snapshot(SOURCE, SCHEMAS)}
    assert set(snapshot) == {("Sales", "Order Items_id_seq"), ("Sales", "invoice_no"), ("public", "customers_id_seq")}
    assert snapshot[("Sales", "Order Items_id_seq")]["last_value"] == 3
    assert snapshot[("Sales", "Order Items_id_seq")]["owned_by"] == '"Sales"."Order Items".id'
    invoice = snapshot[("Sales", "invoice_no")]
    assert invoice["last_value"] == 1002 and invoice["owned_by"] is None and invoice["identity"] is False
    identity = snapshot[("public", "customers_id_seq")]
    assert identity["identity"] is True and identity["last_value"] == 2 and identity["is_called"] is True


# --- the table of contents: pure, no database (they would sit in tests/unit in a later split) ----------

LISTING = """;
; Selected TOC Entries:
;
7; 2615 100 SCHEMA - Sales postgres
2; 3079 101 EXTENSION - citext
;\tdepends on: 5
5; 2615 2200 SCHEMA - public pg_database_owner
897; 1247 102 TYPE public mood postgres
;\tdepends on: 5
900; 1247 103 TYPE public unused_enum postgres
;\tdepends on: 5
219; 1259 104 TABLE public customers postgres
;\tdepends on: 897 2 5 897
221; 1259 105 TABLE Sales Order Items postgres
;\tdepends on: 7
230; 1259 106 TABLE ATTACH me postgres
;\tdepends on: 5
220; 1259 107 SEQUENCE Sales Order Items_id_seq postgres
;\tdepends on: 7 221
3508; 0 0 SEQUENCE OWNED BY Sales Order Items_id_seq postgres
;\tdepends on: 220
3509; 0 0 COMMENT public TABLE customers postgres
;\tdepends on: 219
3336; 2606 108 CONSTRAINT public customers customers_pkey postgres
;\tdepends on: 219
3355; 2606 109 FK CONSTRAINT Sales Order Items Order Items_customer_id_fkey postgres
;\tdepends on: 221 219 3336
"""


def test_parse_toc_reads_kinds_names_and_dependencies():
    entries = {e.dump_id: e for e in parse_toc(LISTING)}
    assert entries[221].desc == "TABLE" and entries[221].tag == "Sales Order Items postgres"
    assert entries[230].desc == "TABLE" and entries[230].tag == "ATTACH me postgres"  # schema "ATTACH"
    assert entries[3508].desc == "SEQUENCE OWNED BY" and entries[3508].deps == (220,)
    assert entries[3355].desc == "FK CONSTRAINT" and entries[3355].deps == (221, 219, 3336)
    assert entries[219].deps == (897, 2, 5)  # repeated dependencies once
    assert entries[3355].line.startswith("3355; 2606 109 FK CONSTRAINT ")


def test_select_entries_follows_dependencies():
    entries = parse_toc(LISTING)
    assert select_entries(entries, None) == {e.dump_id for e in entries}
    # Only customers: its type, extension, schema, constraint and comment; not the other table or the
    # foreign key that points from it to customers; not the type nothing needs. The other table's sequence
    # stays (with its schema), without its OWNED BY.
    assert select_entries(entries, {104}) == {5, 2, 897, 219, 3509, 3336, 7, 220}
    # Only "Order Items": the foreign key to customers is dropped with customers.
    assert select_entries(entries, {105}) == {7, 221, 220, 3508}


def test_grants_default_privileges_and_owners_are_copied_and_compared(target_db):
    """Roles exist on both servers (preflight's `roles` sees to it): the copy keeps each object's owner, its grants
    (column grants too) and the schema's default privileges; `compare_privileges` finds none differing, then finds
    a grant changed on the target."""
    from pgmigrate.schema.roles import compare_privileges, privilege_snapshot

    roles = ("sc_owner", "sc_reader")
    for port in (5433, 5434):
        with admin(port) as conn:
            for role in roles:
                if not conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone():
                    conn.execute(f"CREATE ROLE {role} NOLOGIN")
    try:
        execute(
            SOURCE,
            """
            CREATE SCHEMA ledger AUTHORIZATION sc_owner;
            CREATE TABLE ledger.entries (id int PRIMARY KEY, amount int, secret text);
            ALTER TABLE ledger.entries OWNER TO sc_owner;
            GRANT SELECT (id, amount) ON ledger.entries TO sc_reader;
            GRANT USAGE ON SCHEMA ledger TO sc_reader;
            CREATE VIEW ledger.totals AS SELECT sum(amount) FROM ledger.entries;
            ALTER VIEW ledger.totals OWNER TO sc_owner;
            GRANT SELECT ON ledger.totals TO sc_reader;
            ALTER DEFAULT PRIVILEGES FOR ROLE sc_owner IN SCHEMA ledger GRANT SELECT ON TABLES TO sc_reader;
        """,
        )
        copy_pre_data(SOURCE, TARGET, ["ledger"], [])
        apply_post_data(SOURCE, TARGET, ["ledger"], [])  # default privileges are post-data entries
        owners = rows(
            TARGET,
            "SELECT c.relname, pg_get_userbyid(c.relowner) FROM pg_class c "
            "WHERE c.relnamespace = 'ledger'::regnamespace AND c.relkind IN ('r', 'v') ORDER BY 1",
        )
        assert owners == [("entries", "sc_owner"), ("totals", "sc_owner")]
        assert column(TARGET, "SELECT pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = 'ledger'") == [
            "sc_owner"
        ]
        with SOURCE.connect(autocommit=True) as src, TARGET.connect(autocommit=True) as tgt:
            source_snapshot = privilege_snapshot(src, ["ledger"], owners=True)
            assert compare_privileges(source_snapshot, privilege_snapshot(tgt, ["ledger"], owners=True)) == []
            assert source_snapshot[("column grants", "ledger.entries.amount")] == "sc_reader: SELECT"
            assert any(k[0] == "default privileges grants" for k in source_snapshot), source_snapshot
            tgt.execute("GRANT SELECT (secret) ON ledger.entries TO sc_reader")
            differences = compare_privileges(source_snapshot, privilege_snapshot(tgt, ["ledger"], owners=True))
        assert differences == [("column grants", "ledger.entries.secret", None, "sc_reader: SELECT")], differences
    finally:
        for port, db_endpoint in ((5433, SOURCE), (5434, TARGET)):
            with db_endpoint.connect(autocommit=True) as conn:
                conn.execute("DROP SCHEMA IF EXISTS ledger CASCADE")
                for role in roles:
                    conn.execute(f"DROP OWNED BY {role}")
            with admin(port) as conn:
                for role in roles:
                    conn.execute(f"DROP ROLE IF EXISTS {role}")
