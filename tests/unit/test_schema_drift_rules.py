"""Schema drift planner (pgmigrate.schema.schema_drift, drift_plan, drift_statements) and the schema_mismatch alert
rule: additive vs non-additive classification and the statements, with identifiers quoted by sql.Identifier. No
database, no Airflow.

Fakes: the differences and the source snapshot values are hand-written in the shape `schema_compare` returns
(`SchemaDifference`, `read_schema(...).values`), not read from a server."""

from __future__ import annotations

import pytest
from psycopg import sql

from pgmigrate.alerts.evaluation import Readings, evaluate
from pgmigrate.alerts.rules import P1, Thresholds, schema_mismatch_alert
from pgmigrate.core.catalog import TableRef
from pgmigrate.schema.drift_plan import halt_message
from pgmigrate.schema.drift_statements import concurrent_index, split_name
from pgmigrate.schema.schema_compare import SchemaDifference as Diff
from pgmigrate.schema.schema_drift import classify, drift, volatile_default

pytestmark = pytest.mark.unit

# Fake source snapshot values (what read_schema returns for the objects the differences name).
SOURCE = {
    ("column_type", "public.items.note"): "text",
    ("column_default", "public.items.note"): "'none'::text",
    ("column_not_null", "public.items.note"): "NOT NULL",
    ("column_type", 'public.items."Seen At"'): "timestamp with time zone",
    ("column_default", 'public.items."Seen At"'): "now()",
    ("primary_key", "public.extras"): "PRIMARY KEY (id)",
    ("column_type", "public.items.qty"): "bigint",
    ("column_type", "public.items.code"): "bigint",
    ("column_identity", "public.items.code"): "identity",
}


def texts(plan) -> list[str]:
    return [s for c in plan.additive for s in c.statement_texts()]


def test_new_column_keeps_type_default_and_not_null_with_quoted_names():
    plan = classify([Diff("column", "public.items.note", "present", None)], SOURCE)
    assert not plan.non_additive and plan.resync_tables == []
    assert texts(plan) == [
        'ALTER TABLE "public"."items" ADD COLUMN IF NOT EXISTS "note" text DEFAULT \'none\'::text NOT NULL;'
    ]
    statement = plan.additive[0].statements[0]
    assert isinstance(statement, sql.Composed)  # names composed with sql.Identifier, not formatted into text


def test_column_with_a_per_row_default_is_added_and_its_table_read_again():
    plan = classify([Diff("column", 'public.items."Seen At"', "present", None)], SOURCE)
    assert texts(plan) == [
        'ALTER TABLE "public"."items" ADD COLUMN IF NOT EXISTS "Seen At" timestamp with time zone DEFAULT now();'
    ]
    assert plan.resync_tables == [TableRef("public", "items")]
    assert volatile_default("nextval('public.s'::regclass)") and not volatile_default("'{a,b}'::text[]")


def test_new_table_with_a_primary_key_is_additive_and_loaded():
    plan = classify([Diff("table", "public.extras", "table", None)], SOURCE)
    assert plan.new_tables == [TableRef("public", "extras")] and not plan.non_additive
    assert plan.snapshot_tables == [TableRef("public", "extras")]


def test_new_keyless_table_is_not_synced():
    plan = classify([Diff("table", "public.log", "table", None)], SOURCE)
    assert plan.new_tables == [] and "primary key" in plan.non_additive[0].note


def test_new_index_is_built_concurrently_if_not_exists():
    definition = "CREATE UNIQUE INDEX items_note_idx ON public.items USING btree (note)"
    plan = classify([Diff("index", "public.items_note_idx", definition, None)], SOURCE)
    assert texts(plan) == [
        "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS items_note_idx ON public.items USING btree (note);"
    ]
    assert plan.additive[0].table == TableRef("public", "items")
    partitioned = "CREATE INDEX m_idx ON ONLY public.m USING btree (a)"
    assert (
        concurrent_index(partitioned).as_string(None) == "CREATE INDEX IF NOT EXISTS m_idx ON public.m USING btree (a)"
    )


def test_foreign_key_is_added_not_valid_and_after_other_changes():
    fk = Diff("constraint", "public.extras.extras_item_fk", "FOREIGN KEY (item_id) REFERENCES public.items(id)", None)
    check = Diff("constraint", "public.extras.extras_label_check", "CHECK ((label <> ANY ('{x,y}'::text[])))", None)
    plan = classify([fk, check, Diff("column", "public.items.note", "present", None)], SOURCE)
    statements = texts(plan)
    assert statements[-1].endswith("FOREIGN KEY (item_id) REFERENCES public.items(id) NOT VALID;")
    assert "'{x,y}'::text[]" in statements[1]  # braces in the server's text are not format fields


def test_type_change_drop_and_rename_are_non_additive_with_the_statement():
    differences = [
        Diff("column_type", "public.items.qty", "bigint", "integer"),
        Diff("column", "public.items.name", None, "present"),
        Diff("table", "public.gone", None, "table"),
    ]
    plan = classify(differences, SOURCE)
    assert not plan.additive
    assert plan.operator_statements() == [
        'ALTER TABLE "public"."items" DROP COLUMN "name";',
        'ALTER TABLE "public"."items" ALTER COLUMN "qty" TYPE bigint USING "qty"::bigint;',
        'DROP TABLE "public"."gone";',
    ]
    message = halt_message("shop", plan)
    assert "scripts/migration restart --migration-id shop" in message
    assert "resync --migration-id shop --table public.items" in message and "--table public.gone" not in message


def test_a_column_dropped_and_one_added_with_its_type_is_a_rename():
    source = {("column_type", "public.items.title"): "text"}
    target = {("column_type", "public.items.name"): "text"}
    plan = classify(
        [Diff("column", "public.items.name", None, "present"), Diff("column", "public.items.title", "present", None)],
        source,
        target,
    )
    assert not plan.additive
    assert plan.operator_statements() == ['ALTER TABLE "public"."items" RENAME COLUMN "name" TO "title";']


def test_new_identity_column_is_left_to_the_operator():
    plan = classify([Diff("column", "public.items.code", "present", None)], SOURCE)
    assert plan.operator_statements() == [
        'ALTER TABLE "public"."items" ADD COLUMN "code" bigint GENERATED BY DEFAULT AS IDENTITY;'
    ]


def test_defaults_nullability_and_sequences_are_additive():
    plan = classify(
        [
            Diff("column_default", "public.items.qty", "0", None),
            Diff("column_not_null", "public.items.qty", None, "NOT NULL"),
            Diff("sequence", "public.ticket", "bigint START 5 INCREMENT 1 MINVALUE 1 MAXVALUE 100 CACHE 1", None),
        ],
        SOURCE,
    )
    assert not plan.non_additive
    assert texts(plan) == [
        'CREATE SEQUENCE IF NOT EXISTS "public"."ticket" AS bigint INCREMENT BY 1 MINVALUE 1 MAXVALUE 100 '
        "START WITH 5 CACHE 1 NO CYCLE;",
        'ALTER TABLE "public"."items" ALTER COLUMN "qty" SET DEFAULT 0;',
        'ALTER TABLE "public"."items" ALTER COLUMN "qty" DROP NOT NULL;',
    ]


def test_not_valid_foreign_keys_on_the_target_are_expected_until_the_cutover_validates_them():
    """The monitor may read the schemas between the switch and validate_foreign_keys: no DDL alert for that."""
    pending = Diff("constraint_validated", "public.o.o_fk", "valid", "NOT VALID")
    assert drift([pending], "streaming") == []
    assert drift([pending], "cut_over") == []
    assert drift([pending], "rolling_back") == [pending]
    valid_on_target_only = Diff("constraint_validated", "public.o.o_fk", "NOT VALID", "valid")
    assert drift([valid_on_target_only], "cut_over") == [valid_on_target_only]
    alert = schema_mismatch_alert("shop", [d.as_dict() for d in drift([pending], "cut_over")], "cut_over")
    assert alert is None


def test_split_name_undoes_display_quoting():
    assert split_name('"My.Schema".orders."Note"') == ["My.Schema", "orders", "Note"]


def test_schema_mismatch_is_one_p1_naming_the_differences():
    differences = [Diff("column", "public.items.note", "present", None).as_dict()]
    alert = schema_mismatch_alert("shop", differences)
    assert alert.severity == P1 and alert.condition == "schema_mismatch"
    assert "column public.items.note: source present | target (absent)" in alert.message
    assert schema_mismatch_alert("shop", []) is None
    evaluation = evaluate("shop", Readings(phase="streaming", schema_differences=[]), Thresholds(), {"schema_mismatch"})
    assert "schema_mismatch" in evaluation.evaluated and not evaluation.active  # evaluated, clear: resolves
    unread = evaluate("shop", Readings(phase="streaming"), Thresholds(), {"schema_mismatch"})
    assert "schema_mismatch" not in unread.evaluated  # could not read the schemas: left open
