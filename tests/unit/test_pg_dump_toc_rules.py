"""Which sequences `select_entries` keeps when a migration copies a subset of tables. No database.

Fake: LISTING is `pg_restore -l -v` of a real PostgreSQL 15 schema-only dump of this schema, trimmed to the
entries that matter (dump ids and oids as pg_dump wrote them):

    CREATE SEQUENCE invoice_no AS integer INCREMENT 5 MINVALUE 10 MAXVALUE 100000 START 20 CACHE 3 CYCLE;
    COMMENT ON SEQUENCE invoice_no IS '...';
    CREATE TABLE a (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY);
    CREATE TABLE b (id serial PRIMARY KEY);
    CREATE SEQUENCE c_seq; CREATE TABLE c (id bigint DEFAULT nextval('c_seq'));
    ALTER SEQUENCE c_seq OWNED BY c.id;

What pg_dump writes for them: a standalone sequence depends on its schema only; an owned sequence (serial,
OWNED BY) depends on its table too, and has a separate SEQUENCE OWNED BY entry that depends on the sequence
only; an identity sequence depends on its table and has no OWNED BY entry (its statement is
`ALTER TABLE a ALTER COLUMN id ADD GENERATED ... AS IDENTITY`, so it cannot exist without the table).
"""

from __future__ import annotations

import pytest

from pgmigrate.schema.pg_dump_toc import parse_toc, select_entries

pytestmark = pytest.mark.unit

LISTING = """;
; Selected TOC Entries:
;
3358; 0 0 ENCODING - ENCODING
4; 2615 2200 SCHEMA - public pg_database_owner
216; 1259 16640 TABLE public a postgres
;\tdepends on: 4
215; 1259 16639 SEQUENCE public a_id_seq postgres
;\tdepends on: 216 4
218; 1259 16646 TABLE public b postgres
;\tdepends on: 4
217; 1259 16645 SEQUENCE public b_id_seq postgres
;\tdepends on: 4 218
3363; 0 0 SEQUENCE OWNED BY public b_id_seq postgres
;\tdepends on: 217
220; 1259 16653 TABLE public c postgres
;\tdepends on: 4
219; 1259 16652 SEQUENCE public c_seq postgres
;\tdepends on: 220 4
3364; 0 0 SEQUENCE OWNED BY public c_seq postgres
;\tdepends on: 219
214; 1259 16638 SEQUENCE public invoice_no postgres
;\tdepends on: 4
3365; 0 0 COMMENT public SEQUENCE invoice_no postgres
;\tdepends on: 214
3208; 2604 16649 DEFAULT public b id postgres
;\tdepends on: 218 217 218
3209; 2604 16656 DEFAULT public c id postgres
;\tdepends on: 219 220 220
3211; 2606 16644 CONSTRAINT public a a_pkey postgres
;\tdepends on: 216
3213; 2606 16651 CONSTRAINT public b b_pkey postgres
;\tdepends on: 218
"""
TABLE_A, TABLE_B, TABLE_C = 16640, 16646, 16653
SCHEMA, INVOICE_NO, INVOICE_COMMENT = 4, 214, 3365
A_ID_SEQ, B_ID_SEQ, B_OWNED_BY, C_SEQ, C_OWNED_BY = 215, 217, 3363, 219, 3364


def test_subset_keeps_a_standalone_sequence_nothing_kept_uses():
    kept = select_entries(parse_toc(LISTING), {TABLE_A})
    # invoice_no is used by no default of a kept table (the application calls nextval('invoice_no')).
    assert {SCHEMA, INVOICE_NO, INVOICE_COMMENT} <= kept
    assert {216, A_ID_SEQ, 3211} <= kept  # the table, its identity sequence and its primary key


def test_subset_keeps_owned_sequences_of_tables_left_out_without_their_owned_by():
    kept = select_entries(parse_toc(LISTING), {TABLE_A})
    # b's and c's sequences exist on the target, standalone: OWNED BY would name a table that is not there.
    assert {B_ID_SEQ, C_SEQ} <= kept
    assert not {B_OWNED_BY, C_OWNED_BY, 218, 220, 3208, 3209, 3213} & kept


def test_subset_drops_the_identity_sequence_of_a_table_left_out():
    kept = select_entries(parse_toc(LISTING), {TABLE_B})
    assert A_ID_SEQ not in kept and 216 not in kept  # ALTER TABLE a ... ADD GENERATED needs the table
    assert {218, B_ID_SEQ, B_OWNED_BY, 3208, 3213, C_SEQ, INVOICE_NO, INVOICE_COMMENT} <= kept
    assert C_OWNED_BY not in kept


def test_every_table_keeps_every_sequence_and_its_ownership():
    entries = parse_toc(LISTING)
    assert select_entries(entries, None) == {e.dump_id for e in entries if e.desc != "ENCODING"}
    assert select_entries(entries, {TABLE_A, TABLE_B, TABLE_C}) == select_entries(entries, None)


VIEWS = (
    LISTING
    + """230; 1247 16700 TYPE public mood postgres
;\tdepends on: 4
231; 1259 16710 MATERIALIZED VIEW public mood_labels postgres
;\tdepends on: 230 4
232; 1259 16720 VIEW public b_ids postgres
;\tdepends on: 218 4
233; 1259 16730 VIEW public clock postgres
;\tdepends on: 4
"""
)


def test_subset_keeps_views_that_read_no_table_and_drops_views_over_tables_left_out():
    kept = select_entries(parse_toc(VIEWS), {TABLE_A})
    # A (materialized) view over an enum's values or a function is the application's, though no table anchors it.
    assert {230, 231, 233} <= kept
    assert 232 not in kept  # reads b, which is left out
