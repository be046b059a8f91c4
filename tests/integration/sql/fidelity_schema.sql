-- Source schema for the end-to-end fidelity test: the types and shapes the pipeline must carry
-- row-for-row (see README "Fidelity").
CREATE SCHEMA sales;
CREATE TYPE public.mood AS ENUM ('sad', 'ok', 'happy', 'très "joyeux"');

CREATE TABLE public.types_num (
    id int PRIMARY KEY,
    n38 numeric(38, 10),
    nu numeric,
    m money,
    f4 real,
    f8 double precision
);
CREATE TABLE public.types_time (
    id int PRIMARY KEY,
    ts timestamp,
    ts3 timestamp(3),
    tstz timestamptz,
    d date,
    t time,
    ttz timetz,
    iv interval
);
CREATE TABLE public.types_misc (
    id int PRIMARY KEY,
    b boolean,
    tx text,
    vc varchar(50),
    ch char(5),
    by bytea,
    u uuid,
    j json,
    jb jsonb,
    e public.mood,
    r4 int4range,
    rtz tstzrange,
    rn numrange,
    ip inet,
    cn cidr,
    mac macaddr
);
CREATE TABLE public.types_array (id int PRIMARY KEY, ia int[], ta text[], ba boolean[]);
CREATE TABLE public.ident (
    id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    s serial,
    v text
);
CREATE TABLE public."Order Items" (
    "OrderId" int,
    "select" int,
    "CamelCase" text,
    "user" text,
    PRIMARY KEY ("OrderId", "select")
);
CREATE TABLE sales.customers (code text PRIMARY KEY, name text, since date);
CREATE TABLE sales.orders (
    region text,
    order_no int,
    customer text REFERENCES sales.customers (code),
    amount numeric(12, 2),
    PRIMARY KEY (region, order_no)
);
CREATE INDEX orders_customer ON sales.orders (customer);
CREATE TABLE public.measurements (
    id int,
    logdate date,
    v numeric(10, 2),
    PRIMARY KEY (id, logdate)
) PARTITION BY RANGE (logdate);
CREATE TABLE public.measurements_2026q1 PARTITION OF public.measurements FOR VALUES FROM ('2026-01-01') TO ('2026-04-01');
CREATE TABLE public.measurements_2026q2 PARTITION OF public.measurements FOR VALUES FROM ('2026-04-01') TO ('2026-07-01');
CREATE TABLE public.toasty (id int PRIMARY KEY, big text, bigb bytea, counter int);

-- Non-compressible text, so values really move out of line (TOAST).
CREATE FUNCTION public.rnd_text(seed text, n int) RETURNS text LANGUAGE sql IMMUTABLE AS
$$ SELECT string_agg(md5(seed || i::text), '' ORDER BY i) FROM generate_series(1, n) i $$;
-- No primary key: exact duplicate rows are legal here and must survive (native logical replication path).
CREATE TABLE public.audit_log (at date, actor text, action text, payload jsonb);
ALTER TABLE public.audit_log REPLICA IDENTITY FULL;

-- Materialized views: pg_dump creates them without data. One over a table the writer never changes (identical after
-- the load's refresh), one over a table it changes (stale on the source: named, not failed), one left WITH NO DATA
-- on the source (stays unpopulated on the target).
CREATE MATERIALIZED VIEW public.mood_labels AS SELECT m, m::text AS label FROM unnest(enum_range(NULL::public.mood)) m;
CREATE MATERIALIZED VIEW public.misc_counts AS SELECT e, count(*) AS n FROM public.types_misc GROUP BY e;
CREATE MATERIALIZED VIEW public.misc_later AS SELECT id FROM public.types_misc WITH NO DATA;

-- Large objects: not in the WAL's logical stream; copied with their oids after the load (a small one, an empty one
-- and one of 1.5 MB, two lo_put chunks), so the oid column does not dangle on the target.
CREATE TABLE public.documents (id int PRIMARY KEY, title text, content oid);
INSERT INTO public.documents VALUES
    (1, 'small', lo_from_bytea(9000001, 'héllo large object'::bytea)),
    (2, 'empty', lo_from_bytea(9000002, ''::bytea)),
    (3, 'big', lo_from_bytea(9000003, decode(repeat(md5('x'), 98304), 'hex')));
