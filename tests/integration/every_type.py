"""Every column type a PostgreSQL 15 database can hold, found by walking `pg_type`, for the e2e fidelity test.

The walk decides which types are tested, not a hand-picked list: every built-in base, range and multirange type
and every type of the contrib extensions a typical application uses, each as a column and as an array column.
Each walked type needs sample values here; a type PostgreSQL adds (a new version, a new extension) without one
fails `create_every_type_tables` by name, so coverage cannot silently shrink. Types no channel can carry (their
input function accepts no value) are not columns here: preflight refuses them (test_preflight.py).

The columns are split between two tables by the product's own rule (`column_types.debezium_problem`): what
Debezium carries stays in `every_type_debezium`, the rest in `every_type_native`, which the native channel carries.
"""

from __future__ import annotations

import psycopg
from psycopg import sql

from pgmigrate.core.catalog import list_tables
from pgmigrate.core.column_types import INPUT_REJECTED_TYPES, debezium_problem

EXTENSIONS = (
    "hstore",
    "citext",
    "ltree",
    "cube",
    "seg",
    "isn",
    "lo",
    "earthdistance",
    "intarray",
    "pg_trgm",
    "btree_gist",
)
TABLES = ("every_type_debezium", "every_type_native")

# Two values per type, as PostgreSQL text; each is carried as a column value and inside an array.
SAMPLES: dict[str, tuple[str, str]] = {
    "bool": ("true", "false"),
    "bytea": ("\\x00ff10", "\\x"),
    "char": ("a", "\\"),
    "name": ("Name With Spaces", "n"),
    "int8": ("-9223372036854775808", "9223372036854775807"),
    "int2": ("-32768", "32767"),
    "int2vector": ("1 2 3", "0"),
    "int4": ("-2147483648", "2147483647"),
    "regproc": ("now", "pg_catalog.timeofday"),
    "text": ('línea "1"\ttab', ""),
    "oid": ("4294967295", "0"),
    "tid": ("(0,1)", "(4294967295,65535)"),
    "xid": ("42", "4294967295"),
    "cid": ("7", "0"),
    "oidvector": ("23 25", "26"),
    "json": ('{"a": [1, 2.50, null], "b": "x"}', "  [ ]  "),
    "xml": ('<a b="1">tëxt<c/></a>', "plain text"),
    "point": ("(1.5,-2)", "(0,0)"),
    "lseg": ("[(0,0),(1,1)]", "[(-1.5,2),(3,4)]"),
    "path": ("[(0,0),(1,1),(2,0)]", "((0,0),(1,1))"),
    "box": ("(2,2),(0,0)", "(1,1),(1,1)"),
    "polygon": ("((0,0),(1,1),(1,0))", "((0,0))"),
    "line": ("{1,-1,0}", "{0,1,5}"),
    "cidr": ("10.1.0.0/16", "2001:db8::/32"),
    "float4": ("1.17549435e-38", "-0"),
    "float8": ("2.2250738585072014e-308", "NaN"),
    "circle": ("<(0,0),2>", "<(1.5,-1),0.5>"),
    "macaddr8": ("08:00:2b:01:02:03:04:05", "00:00:00:ff:fe:00:00:00"),
    "money": ("-92233720368547758.08", "0.01"),
    "macaddr": ("08:00:2b:01:02:03", "ff:ff:ff:ff:ff:ff"),
    "inet": ("192.168.1.5/24", "::1"),
    "aclitem": ("postgres=arwdDxt/postgres", "=r/postgres"),
    "bpchar": ("pad  ", "x"),
    "varchar": ("vàr", ""),
    "date": ("2026-02-28", "4713-01-01 BC"),
    "time": ("23:59:59.999999", "24:00:00"),
    "timestamp": ("2026-12-04 01:02:03.456789", "infinity"),
    "timestamptz": ("2026-12-04 01:02:03.456789+05:30", "-infinity"),
    "interval": ("1 year 2 mons 3 days 04:05:06.789", "-178000000 years"),
    "timetz": ("03:04:05+02", "24:00:00-15:59"),
    "bit": ("1", "0"),
    "varbit": ("101", ""),
    "numeric": ("-123456789012345678901234567890.000000000000001", "NaN"),
    "refcursor": ("cursor one", "c"),
    "regprocedure": ("sum(integer)", "lower(text)"),
    "regoper": ("||/", "pg_catalog.|/"),
    "regoperator": ("+(integer,integer)", "-(NONE,bigint)"),
    "regclass": ("pg_class", "pg_catalog.pg_type"),
    "regtype": ("integer", "character varying"),
    "uuid": ("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "00000000-0000-0000-0000-000000000000"),
    "txid_snapshot": ("10:20:10,14,15", "1:1:"),
    "pg_lsn": ("16/B374D848", "0/0"),
    "tsvector": ("'fat':2 'rat':3 'a':1A", ""),
    "tsquery": ("fat & (rat | !cat)", "'x':* <-> y"),
    "regconfig": ("english", "simple"),
    "regdictionary": ("simple", "english_stem"),
    "jsonb": ('{"a": [1, 2.50, null], "é": {"": true}}', '"just a string"'),
    "int4range": ("[1,10)", "empty"),
    "numrange": ("(1.5,2.25]", "(,)"),
    "tsrange": ("[2026-01-01 00:00,2026-02-01 00:00)", "[,infinity]"),
    "tstzrange": ("[2026-01-01 00:00+00,2026-02-01 00:00+02)", "empty"),
    "daterange": ("[2026-01-01,2026-02-01)", "(,2026-01-01]"),
    "int8range": ("[-9223372036854775808,0)", "[5,)"),
    "jsonpath": ("$.a[*] ? (@ > 2)", 'strict $."key".**{2 to last}'),
    "regnamespace": ("pg_catalog", "public"),
    "regrole": ("postgres", "pg_database_owner"),
    "regcollation": ('"C"', '"POSIX"'),
    "int4multirange": ("{[1,3),[5,7)}", "{}"),
    "nummultirange": ("{[1.5,2.5]}", "{(,)}"),
    "tsmultirange": ("{[2026-01-01,2026-01-02),[2026-02-01,2026-02-02)}", "{}"),
    "tstzmultirange": ("{[2026-01-01 00:00+00,2026-01-02 00:00+00)}", "{}"),
    "datemultirange": ("{[2026-01-01,2026-01-05),[2026-02-01,2026-02-03)}", "{}"),
    "int8multirange": ("{[1,2),[3,4)}", "{}"),
    "pg_snapshot": ("10:20:10,14,15", "5:5:"),
    "xid8": ("123456789012", "0"),
    # contrib
    "hstore": ('"a"=>"1", "b"=>NULL', ""),
    "citext": ("MiXeD Case", ""),
    "ltree": ("Top.Science.Astronomy", ""),
    "lquery": ("*.Science.*", "Top.*{1,2}"),
    "ltxtquery": ("Europe & Russia*@ & !Transportation", "a"),
    "cube": ("(1, 2.5, -3)", "(0),(1)"),
    "seg": ("5.0 .. 7.0", "<1.5"),
    "ean13": ("022-035648348-1", "978-0-393-04002-9"),
    "isbn": ("978-0-393-04002-9", "0-8436-1072-7"),
    "isbn13": ("978-0-393-04002-9", "978-0-8436-1072-7"),
    "ismn": ("M-907002-06-1", "979-0-3452-4680-5"),
    "ismn13": ("979-0-3452-4680-5", "979-0-907002-06-1"),
    "issn": ("1436-4522", "0317-8471"),
    "issn13": ("977-1436-452-00-8", "977-0317-847-00-1"),
    "upc": ("220356483481", "000000000000"),
    "lo": ("42", "4294967295"),
    "earth": ("(6378168, 0, 0)", "(0, 0, 6378168)"),
    "query_int": ("1 & (2 | !3)", "4"),
}
# GiST index storage types of the extensions: never a column type; their input functions accept no value.
INDEX_KEY_TYPES = frozenset(
    {
        "gbtreekey2",
        "gbtreekey4",
        "gbtreekey8",
        "gbtreekey16",
        "gbtreekey32",
        "gbtreekey_var",
        "ghstore",
        "intbig_gkey",
        "ltree_gist",
        "gtrgm",
    }
)

DELIMITERS: dict[str, str] = {}  # typname -> typdelim (box arrays use ';'), filled by the walk

_WALK_SQL = """
SELECT t.typname, format_type(t.oid, NULL), t.typarray <> 0, t.typdelim
FROM pg_type t
WHERE t.typtype IN ('b', 'r', 'm', 'd') AND t.typisdefined
  AND NOT EXISTS (SELECT 1 FROM pg_type e WHERE e.typarray = t.oid)
  AND (t.oid < 16384 AND t.typtype <> 'd' AND t.typnamespace = 'pg_catalog'::regnamespace
       OR EXISTS (SELECT 1 FROM pg_depend d JOIN pg_extension x ON x.oid = d.refobjid
                  WHERE d.classid = 'pg_type'::regclass AND d.objid = t.oid AND d.deptype = 'e'
                    AND x.extname = ANY(%s)))
ORDER BY t.oid
"""


def walk_types(conn: psycopg.Connection) -> list[tuple[str, str, bool, str]]:
    """(typname, type as SQL, has an array type, array delimiter) of every type to test, from pg_type."""
    return conn.execute(_WALK_SQL, (list(EXTENSIONS),)).fetchall()


def create_every_type_tables(conn: psycopg.Connection) -> dict[str, list[str]]:
    """Create the extensions, both tables and two rows each (ids 1-2: the samples; 3: every column NULL).
    Returns the columns of each table (without id), for `every_type_changes`."""
    for extension in EXTENSIONS:
        conn.execute(
            sql.SQL("CREATE EXTENSION IF NOT EXISTS {} WITH SCHEMA public CASCADE").format(sql.Identifier(extension))
        )
    columns: list[tuple[str, str]] = []  # (column name, type as SQL)
    missing = []
    for typname, type_sql, has_array, delimiter in walk_types(conn):
        DELIMITERS[typname] = delimiter
        oid = conn.execute("SELECT %s::regtype::oid", (type_sql,)).fetchone()[0]
        if oid in INPUT_REJECTED_TYPES or typname in INDEX_KEY_TYPES:
            assert_input_rejected(conn, type_sql)
            continue
        if typname not in SAMPLES:
            missing.append(typname)
            continue
        columns.append((f"c_{typname}", type_sql))
        if has_array:
            columns.append((f"a_{typname}", f"{type_sql}[]"))
    assert not missing, f"types found in pg_type without sample values in every_type.SAMPLES: {missing}"

    probe = sql.SQL(", ").join(sql.SQL("{} {}").format(sql.Identifier(c), sql.SQL(t)) for c, t in columns)
    conn.execute(sql.SQL("CREATE TABLE public.every_type_probe (id int PRIMARY KEY, {})").format(probe))
    (info,) = [t for t in list_tables(conn, ["public"]) if t.ref.name == "every_type_probe"]
    conn.execute("DROP TABLE public.every_type_probe")
    routed = {c.name for c in info.columns if debezium_problem(c)}
    by_table = {
        "every_type_debezium": [(c, t) for c, t in columns if c not in routed],
        "every_type_native": [(c, t) for c, t in columns if c in routed],
    }
    for table, cols in by_table.items():
        body = sql.SQL(", ").join(sql.SQL("{} {}").format(sql.Identifier(c), sql.SQL(t)) for c, t in cols)
        conn.execute(sql.SQL("CREATE TABLE {} (id int PRIMARY KEY, {})").format(sql.Identifier("public", table), body))
        for row in (1, 2):
            values = [sql.Literal(_sample(c, t, row - 1)) + sql.SQL("::") + sql.SQL(t) for c, t in cols]
            conn.execute(
                sql.SQL("INSERT INTO {} VALUES ({}, {})").format(
                    sql.Identifier("public", table), sql.Literal(row), sql.SQL(", ").join(values)
                )
            )
        conn.execute(sql.SQL("INSERT INTO {} (id) VALUES (3)").format(sql.Identifier("public", table)))
    return {table: [c for c, _ in cols] for table, cols in by_table.items()}


def _sample(column: str, type_sql: str, index: int) -> str:
    """A column's text value: the sample itself, or for an array column both samples (and a NULL) as an array."""
    typname = column[2:]
    if column.startswith("c_"):
        return SAMPLES[typname][index]
    items = [_array_item(v) for v in SAMPLES[typname]]
    return "{" + DELIMITERS.get(typname, ",").join(items if index == 0 else [*reversed(items), "NULL"]) + "}"


def _array_item(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def assert_input_rejected(conn: psycopg.Connection, type_sql: str) -> None:
    """PostgreSQL's input function for the type accepts no value: why it is not a column here."""
    try:
        with conn.transaction():
            conn.execute(sql.SQL("SELECT {}::{}").format(sql.Literal("x"), sql.SQL(type_sql)))
    except psycopg.Error as error:
        message = str(error).lower()
        assert "not implemented" in message or "cannot accept a value" in message, (type_sql, message)
        return
    raise AssertionError(f"{type_sql} accepts input: give it sample values in every_type.SAMPLES")


def every_type_changes(i: int, columns: dict[str, list[str]]) -> list[tuple[sql.Composable, tuple]]:
    """One writer transaction's share: every 5th copies a sample row to a new id; every 25th rotates the three
    rows' values (so every value, NULL included, travels as an UPDATE too) and deletes an earlier copy. Rarely
    enough that validate does not find the three rows in flight at every re-check."""
    if i % 5:
        return []
    statements: list[tuple[sql.Composable, tuple]] = []
    for table, cols in columns.items():
        rel = sql.Identifier("public", table)
        names = sql.SQL(", ").join(map(sql.Identifier, cols))
        statements.append(
            (
                sql.SQL("INSERT INTO {} SELECT %s, {} FROM {} WHERE id = %s").format(rel, names, rel),
                (10_000 + i, 1 + i % 3),
            )
        )
        if i % 25 == 0:
            statements += [
                (
                    sql.SQL(
                        "UPDATE {} t SET ({}) = (SELECT {} FROM {} s WHERE s.id = 1 + t.id %% 3) "
                        "WHERE t.id BETWEEN 1 AND 3"
                    ).format(rel, names, names, rel),
                    (),
                ),
                (sql.SQL("DELETE FROM {} WHERE id = %s").format(rel), (10_000 + i - 10,)),
            ]
    return statements
