-- Names a Kafka topic cannot hold (issue 14, item 8): Debezium writes this schema's changes to
-- `<prefix>.Ventes__t_.Lignes_sp_ciales`; the sink must subscribe to that topic and write into the real names.
CREATE SCHEMA "Ventes Été";
CREATE TABLE "Ventes Été"."Lignes spéciales" (
    "N° ligne" int PRIMARY KEY,
    "Libellé" text NOT NULL,
    "Qté max" int
);
INSERT INTO "Ventes Été"."Lignes spéciales" SELECT g, 'ligne ' || g, g FROM generate_series(1, 50) g;
-- A double quote in a table or column name: Debezium 3.6's source cannot parse the first, its sink cannot quote
-- the second, so these tables travel by the native channel.
CREATE TABLE "Ventes Été"."Commandes ""VIP""" (id int PRIMARY KEY, total numeric(10, 2), "Remise ""%""" int);
INSERT INTO "Ventes Été"."Commandes ""VIP""" SELECT g, g * 1.25 FROM generate_series(1, 20) g;
