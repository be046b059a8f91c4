-- Names a Kafka topic cannot hold (issue 14, item 8). Non-ASCII letters and spaces in column names stay with
-- Debezium: it writes "Été"."Lignes spéciales°"'s changes to `<prefix>._t_.Lignes_sp_ciales_`; the sink must
-- subscribe to that topic and write into the real names.
CREATE SCHEMA "Été";
CREATE TABLE "Été"."Lignes_spéciales°" (
    "N° ligne" int PRIMARY KEY,
    "Libellé" text NOT NULL,
    "Qté max" int
);
INSERT INTO "Été"."Lignes_spéciales°" SELECT g, 'ligne ' || g, g FROM generate_series(1, 50) g;
-- Whitespace in a schema or table name: Debezium's incremental snapshots cannot name the table, and a double quote
-- in a table or column name: its source cannot parse the first, its sink cannot quote the second. These tables
-- travel by the native channel.
CREATE SCHEMA "Ventes Été";
CREATE TABLE "Ventes Été"."Lignes spéciales" (
    "N° ligne" int PRIMARY KEY,
    "Libellé" text NOT NULL,
    "Qté max" int
);
INSERT INTO "Ventes Été"."Lignes spéciales" SELECT g, 'ligne ' || g, g FROM generate_series(1, 50) g;
CREATE TABLE "Ventes Été"."Commandes ""VIP""" (id int PRIMARY KEY, total numeric(10, 2), "Remise ""%""" int);
INSERT INTO "Ventes Été"."Commandes ""VIP""" SELECT g, g * 1.25 FROM generate_series(1, 20) g;
-- A comma in a table name: Debezium splits table.include.list at commas, so it travels by the native channel too.
CREATE TABLE "Ventes Été"."Prix, remises" (id int PRIMARY KEY, "prix, net" numeric(10, 2));
INSERT INTO "Ventes Été"."Prix, remises" SELECT g, g * 0.5 FROM generate_series(1, 20) g;
