"""Which tables travel by PostgreSQL's own logical replication instead of Debezium (no database needed)."""

from __future__ import annotations

from pgmigrate.core.catalog import Column, TableInfo, TableRef
from pgmigrate.core.endpoints import PgEndpoint
from pgmigrate.stream.native_replication import needs_native_channel, split_by_channel, subscription_conninfo


def table(
    schema: str, name: str, primary_key: tuple[str, ...] = ("id",), type_oid: int = 23, column_name: str = "id"
) -> TableInfo:
    column = Column(
        name=column_name,
        type_name="x",
        type_oid=type_oid,
        type_kind="b",
        element_kind=None,
        element_oid=None,
        identity="",
        generated="",
        not_null=True,
        toastable=False,
    )
    return TableInfo(TableRef(schema, name), "r", list(primary_key), "d", False, [column])


def test_a_double_quote_in_a_schema_table_or_column_name_goes_native():
    assert needs_native_channel(table("sales", 'Orders "VIP"'))
    assert needs_native_channel(table('Ventes "Été"', "lines"))
    assert needs_native_channel(table("sales", "lines", column_name='Qty "max"'))
    # Non-ASCII letters and other characters stay with Debezium (it sanitizes topic names; the sink subscribes to
    # those); whitespace or a dot in a schema or table name does not (its incremental snapshots split the id there).
    assert not needs_native_channel(table("Été", "Lignes_spéciales°"))
    assert not needs_native_channel(table("sales", "lines", column_name="Qté max"))
    assert needs_native_channel(table("Ventes Été", "lignes"))
    assert needs_native_channel(table("sales", "Order Items"))
    assert needs_native_channel(table("sales", "a.b"))


def test_a_comma_in_a_schema_table_or_column_name_goes_native():
    """Debezium splits its include and exclude lists at commas: such a table would never be captured."""
    assert needs_native_channel(table("sales", "Prix, remises"))
    assert needs_native_channel(table("Nord,Sud", "lines"))
    assert needs_native_channel(table("sales", "lines", column_name="prix, net"))


def test_keyless_and_timetz_tables_go_native():
    assert needs_native_channel(table("public", "log", primary_key=()))
    assert needs_native_channel(table("public", "shifts", type_oid=1266))  # timetz
    keyed, native = split_by_channel([table("public", "a"), table("public", "log", primary_key=())])
    assert [t.ref.name for t in keyed] == ["a"] and [t.ref.name for t in native] == ["log"]


def test_a_subscription_names_the_subscribers_password_file_instead_of_holding_the_password():
    source = PgEndpoint("db1", 5432, "shop", "migrator", "s3cret-source")
    with_file = subscription_conninfo(source, "/etc/pg/sub.pgpass")
    assert "s3cret" not in with_file and "password" not in with_file
    assert "passfile=/etc/pg/sub.pgpass" in with_file and "host=db1" in with_file and "user=migrator" in with_file
    # Without the param the password is in the conninfo, as PostgreSQL stores it.
    assert "password=s3cret-source" in subscription_conninfo(source)
