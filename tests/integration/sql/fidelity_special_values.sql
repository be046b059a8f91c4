-- Values Debezium's default conversions alter when streamed; the PostgresTextFormConverter
-- (include/converters) carries them as PostgreSQL text. Rows 1-6 exist before the migration; the
-- e2e writer then copies them to new ids and rotates them between rows, so every value below also
-- travels through the change stream (see special_values_changes in test_pg_migration_e2e.py).
-- timetz keeps +00 here: a non-UTC offset cannot be streamed (README, "Known limits").
CREATE EXTENSION IF NOT EXISTS hstore WITH SCHEMA public;

CREATE TABLE public.types_special (
    id int PRIMARY KEY,
    f4 real,
    f8 double precision,
    nu numeric,
    n12 numeric(12, 3),
    d date,
    ts timestamp,
    tstz timestamptz,
    ttz timetz,
    ea public.mood[],
    na numeric[],
    i2 int[],
    t2 text[],
    hs public.hstore,
    b1 bit(1),
    b5 bit(5),
    vb10 varbit(10),
    vb varbit
);

INSERT INTO public.types_special VALUES
    (1, 'NaN', 'NaN', 'NaN', 1.5, 'infinity', 'infinity', 'infinity', '03:04:05+00',
     '{sad,"très \"joyeux\""}', '{1.50,NaN,Infinity,-Infinity,NULL}', '{{1,2},{3,NULL}}', '{{a,"b c"},{NULL,""}}',
     '"a"=>"1", "b"=>NULL, "q\"k"=>"v\\"', B'1', B'00101', B'001', B'0000'),
    (2, 'Infinity', '-Infinity', 'Infinity', -0.001, '-infinity', '-infinity', '-infinity', '23:59:59.999999+00',
     '{}', '{}', '[0:1]={7,8}', '{{"{}",NULL}}', '', B'0', B'00000', B'', B'1'),
    (3, '-Infinity', 'Infinity', '-Infinity', 0, '0044-03-15 BC', '0044-03-15 12:00:00.5 BC',
     '0044-03-15 12:00:00+02 BC', '00:00:00+00', '{ok,NULL}', '{0.000,1e-20}', '{{{1}},{{2}}}', '{"[0]"}',
     '"k"=>""', NULL, B'10000', B'0000000001', B'0'),
    (4, '-0', '-0', '-0.000', 123456789.125, '4713-11-24 BC', '4713-11-24 00:00:00 BC', '2026-01-02 03:04:05.654321+05:30',
     '12:00:00.5+00', NULL, '{123456789012345678901234567890.123456789}', '{}', '{}', NULL, B'1', NULL, NULL, B''),
    (5, 1.4e-45, 4.9e-324, '1e-300', NULL, '5874897-12-31', '294276-12-31 23:59:59.999999',
     '294276-12-31 23:59:59.999999+00', NULL, '{happy}', '{NaN}', '{{NULL,NULL}}', '{{NULL}}', '"x"=>"y"',
     B'0', B'11111', B'1111111111', B'01'),
    (6, 3.4028235e38, 1.7976931348623157e308, 0.1, 0.1, '1582-10-15', '1582-10-15 00:00:00', '1582-10-15 00:00:00+00',
     '12:34:56.789+00', '{sad,sad}', '{-0.5}', '{1}', '{"NULL"}', '"NULL"=>"null"', B'1', B'01010', B'10', B'10');
