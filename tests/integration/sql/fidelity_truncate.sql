-- TRUNCATE while streaming (issue 14, item 4): a table a foreign key references, truncated together with the table
-- referencing it, and a table truncated alone. The writer truncates and refills them; the target must follow at
-- the same point of each table's stream.
CREATE TABLE public.batches (id int PRIMARY KEY, label text NOT NULL);
CREATE TABLE public.batch_lines (id int PRIMARY KEY, batch_id int NOT NULL REFERENCES public.batches (id), qty int);
CREATE TABLE public.scratch (id int PRIMARY KEY, note text);
INSERT INTO public.batches SELECT g, 'seed ' || g FROM generate_series(1, 5) g;
INSERT INTO public.batch_lines SELECT g, 1 + g % 5, g FROM generate_series(1, 50) g;
INSERT INTO public.scratch SELECT g, 'seed' FROM generate_series(1, 30) g;
