-- Initial rows (before the migration starts).
INSERT INTO public.types_num
SELECT g, (g * 1234567.0123456789)::numeric(38, 10), (g::numeric ^ 5) / 7, (g * 1.25)::money,
       g / 3.0::real, g / 7.0::double precision
FROM generate_series(1, 200) g;
INSERT INTO public.types_num VALUES
    (1001, 1234567890123456789012345678.0123456789, 'NaN', '-92233720368547758.08', 3.4028235e38, 1.7976931348623157e308),
    (1002, -0.0000000001, 1e-300, '92233720368547758.07', 1.4e-45, 4.9e-324),
    (1003, 0, 123456789012345678901234567890123456789012345678901234567890.123456789012345678901234567890, 0, 0, 0);

INSERT INTO public.types_time
SELECT g, '2026-01-02 03:04:05.123456'::timestamp + g * interval '1 day 1 second',
       '2026-01-02 03:04:05.123'::timestamp(3) + g * interval '1 hour',
       '2026-01-02 03:04:05.654321+02'::timestamptz + g * interval '1 minute',
       '2026-01-02'::date + g, '03:04:05.123456'::time + g * interval '1 second', '03:04:05.5+00'::timetz,
       make_interval(months => g % 14, days => g % 40, secs => g * 1.5)
FROM generate_series(1, 200) g;
INSERT INTO public.types_time VALUES
    (1001, '1970-01-01', '1999-12-31 23:59:59.999', '-infinity', '0001-01-01', '00:00', '23:59:59.999999+00', '-1 year -2 mons +3 days 04:05:06.789');

INSERT INTO public.types_misc
SELECT g, g % 2 = 0, 'text ' || g || ' äöü 日本語 😀 e' || chr(769), 'vc' || g, left('ch' || g, 5),
       decode(md5(g::text), 'hex'), md5(g::text)::uuid,
       ('{"k": ' || g || ', "k": "dup"}')::json, jsonb_build_object('n', g, 'nested', jsonb_build_array(g, 'x', null)),
       (ARRAY['sad', 'ok', 'happy', 'très "joyeux"']::public.mood[])[1 + g % 4],
       int4range(g, g + 10), tstzrange('2026-01-01', '2026-02-01', '[)'), numrange(g / 3.0, NULL),
       ('10.0.' || (g % 255) || '.1')::inet, ('10.' || (g % 255) || '.0.0/16')::cidr,
       ('08:00:2b:01:02:' || lpad(to_hex(g % 255), 2, '0'))::macaddr
FROM generate_series(1, 200) g;
INSERT INTO public.types_misc (id, tx, ch, by, j, jb, r4) VALUES
    (1001, '', '', '\x', '[]', '{}', 'empty'),
    (1002, E'tab\there\nnewline "quoted" \\backslash', 'a', '\x00ff', 'null', '[1, 2]', '(,)');

INSERT INTO public.types_array
SELECT g, ARRAY[g, NULL, g * 2], ARRAY['a' || g, NULL, '"q"', '', 'NULL'], ARRAY[g % 2 = 0, NULL]
FROM generate_series(1, 200) g;

INSERT INTO public.ident (v) SELECT 'v' || g FROM generate_series(1, 100) g;

INSERT INTO public."Order Items"
SELECT g / 3, g % 3, 'Camel ' || g, 'user' || g FROM generate_series(1, 300) g;

INSERT INTO sales.customers VALUES ('C1', 'Upper', '2020-01-01'), ('c1', 'lower', '2020-01-02'), ('C1 ', 'trailing', NULL);
INSERT INTO sales.customers SELECT 'cust' || g, 'Customer ' || g, '2021-01-01'::date + g FROM generate_series(1, 100) g;
INSERT INTO sales.orders SELECT (ARRAY['EU', 'US', 'APAC'])[1 + g % 3], g, 'cust' || (1 + g % 100), g * 1.5
FROM generate_series(1, 300) g;

INSERT INTO public.measurements
SELECT g, '2026-01-01'::date + (g % 180), g * 0.5 FROM generate_series(1, 400) g;

INSERT INTO public.toasty SELECT g, public.rnd_text('t' || g, 1000), decode(public.rnd_text('b' || g, 500), 'hex'), 0
FROM generate_series(1, 20) g;

-- Each of these rows three times over: duplicates that an UPDATE or DELETE of one copy must not collapse.
INSERT INTO public.audit_log
SELECT '2026-01-01'::date + g % 10, 'user' || g % 10, 'dup', jsonb_build_object('g', g % 10)
FROM generate_series(1, 30) g;
INSERT INTO public.audit_log VALUES (NULL, NULL, NULL, NULL), (NULL, NULL, NULL, NULL);
