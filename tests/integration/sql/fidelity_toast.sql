-- Out-of-line (TOASTed) values of the types the text-form converter carries (in `toasty`, beside its text and
-- bytea), and a key with an odd name: the writer updates these rows through another column, so each change carries the unchanged-TOAST placeholder
-- until ToastReselector refills it (issue 14, items 1-2). Random digits, so the values really move out of line.
ALTER TABLE public.toasty
    ADD COLUMN embedding float4[],  -- 1536 floats, ~6 kB: an embedding
    ADD COLUMN tags text[],
    ADD COLUMN attrs public.hstore,
    ADD COLUMN flags varbit;
CREATE FUNCTION public.rnd_embedding(seed text, n int) RETURNS float4[] LANGUAGE sql IMMUTABLE AS
$$ SELECT array_agg((('x' || substr(md5(seed || i::text), 1, 8))::bit(32)::int / 2147483648.0)::float4 ORDER BY i)
   FROM generate_series(1, n) i $$;
UPDATE public.toasty SET
    embedding = public.rnd_embedding('e' || id, 1536),
    tags = ARRAY(SELECT md5('a' || id || i) FROM generate_series(1, 200) i),
    attrs = public.hstore(ARRAY(SELECT 'k' || i FROM generate_series(1, 200) i),
                          ARRAY(SELECT md5('h' || id || i) FROM generate_series(1, 200) i)),
    flags = ('x' || public.rnd_text('v' || id, 100))::varbit;

-- Debezium 3.6's own reselector writes key names unquoted into its SELECT: this key made it fail (a mixed-case,
-- non-ASCII table name that stays with Debezium, and a key with a space).
CREATE TABLE public."ToastyNotés" ("Note Id" int PRIMARY KEY, "Body" text, seen int NOT NULL DEFAULT 0);
INSERT INTO public."ToastyNotés" ("Note Id", "Body") SELECT g, public.rnd_text('n' || g, 200) FROM generate_series(1, 20) g;

-- A placeholder must never reach the target as data, not even for a moment (a later change could hide it). The
-- trigger fires for replicated rows too (ENABLE ALWAYS; pg_dump carries that) and logs any such write into a table
-- the source never writes: on the target, a logged row makes source and target differ.
CREATE TABLE public.placeholder_writes (id bigserial PRIMARY KEY, tbl text, row_text text);
CREATE FUNCTION public.log_placeholder_write() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF row_to_json(NEW)::text ~ ('__pgmigrate_unchanged_toast_|__debezium_unavailable_value|'
            || encode(convert_to('__pgmigrate_unchanged_toast_', 'UTF8'), 'hex') || '|'
            || encode(convert_to('__debezium_unavailable_value', 'UTF8'), 'hex')) THEN
        INSERT INTO public.placeholder_writes (tbl, row_text) VALUES (TG_TABLE_NAME, left(row_to_json(NEW)::text, 300));
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER log_placeholder_write BEFORE INSERT OR UPDATE ON public.toasty
    FOR EACH ROW EXECUTE FUNCTION public.log_placeholder_write();
CREATE TRIGGER log_placeholder_write BEFORE INSERT OR UPDATE ON public."ToastyNotés"
    FOR EACH ROW EXECUTE FUNCTION public.log_placeholder_write();
ALTER TABLE public.toasty ENABLE ALWAYS TRIGGER log_placeholder_write;
ALTER TABLE public."ToastyNotés" ENABLE ALWAYS TRIGGER log_placeholder_write;
