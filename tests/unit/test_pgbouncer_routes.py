"""The routes file PgBouncer includes into [databases]: rendering, parsing, validation, atomic rewrite."""

from __future__ import annotations

import os
import stat

import pytest

from pgmigrate.cutover.routing.routes import (
    Route,
    RouteError,
    locked_routes,
    parse_routes,
    read_routes_file,
    render_routes,
    validate_database_name,
    write_routes_file,
)
from pgmigrate.cutover.routing.switch_contract import quote_admin_identifier

pytestmark = pytest.mark.unit


def test_render_then_parse_round_trips_sorted() -> None:
    routes = {"shop": Route("127.0.0.1", 5434, "shop"), "billing": Route("db.internal", 5432, "billing_v2")}
    text = render_routes(routes)
    lines = [ln for ln in text.splitlines() if not ln.startswith(";")]
    assert lines == [
        "billing = host=db.internal port=5432 dbname=billing_v2",
        "shop = host=127.0.0.1 port=5434 dbname=shop",
    ]
    assert parse_routes(text) == routes
    assert render_routes(dict(reversed(list(routes.items())))) == text


def test_empty_file_and_comments_mean_no_routes() -> None:
    assert parse_routes("") == {}
    assert parse_routes("; none yet\n# comment\n\n") == {}
    assert render_routes({}).strip().startswith(";")


@pytest.mark.parametrize(
    "line",
    [
        "shop host=127.0.0.1",  # no '='
        "shop = host=127.0.0.1 port=5434",  # no dbname
        "shop = host=127.0.0.1 port=5434 dbname=shop user=evil",  # unexpected key
        "shop = host=127.0.0.1 port=abc dbname=shop",
        "shop = host=127.0.0.1 port=5434 port=5435 dbname=shop",
        "sh op = host=127.0.0.1 port=5434 dbname=shop",
        "* = host=127.0.0.1 port=5433",
    ],
)
def test_parse_refuses_anything_it_did_not_write(line: str) -> None:
    with pytest.raises(RouteError, match="line 1"):
        parse_routes(line)


@pytest.mark.parametrize("name", ["shop", "route_test", "_x", "Shop2", "a" * 63])
def test_valid_database_names(name: str) -> None:
    assert validate_database_name(name) == name


@pytest.mark.parametrize(
    "name", ["", "1shop", "shop-db", "shop db", 'sh"op', "shop;RELOAD", "shop\nx", "a" * 64, "*", None]
)
def test_invalid_database_names(name: object) -> None:
    with pytest.raises(RouteError):
        validate_database_name(name)  # type: ignore[arg-type]
    with pytest.raises(RouteError):
        quote_admin_identifier(name)  # type: ignore[arg-type]


def test_admin_identifier_is_quoted() -> None:
    assert quote_admin_identifier("route_test") == '"route_test"'


@pytest.mark.parametrize(
    "host,port", [("127.0.0.1 port=1", 5432), ("h=x", 5432), ("", 5432), ("host", 0), ("host", 70000), ("host", True)]
)
def test_route_refuses_bad_host_or_port(host: str, port: int) -> None:
    with pytest.raises(RouteError):
        Route(host, port, "shop")


def test_write_is_atomic_readable_and_leaves_no_temp_files(tmp_path) -> None:
    path = tmp_path / "routes.ini"
    assert read_routes_file(path) == {}
    write_routes_file(path, {"shop": Route("127.0.0.1", 5434, "shop")})
    assert read_routes_file(path) == {"shop": Route("127.0.0.1", 5434, "shop")}
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644  # PgBouncer runs as another OS user
    assert sorted(p.name for p in tmp_path.iterdir()) == ["routes.ini"]


def test_locked_routes_writes_only_changes(tmp_path) -> None:
    path = tmp_path / "routes.ini"
    with locked_routes(path) as routes:
        routes["shop"] = Route("127.0.0.1", 5434, "shop")
    with locked_routes(path) as routes:
        routes["other"] = Route("127.0.0.1", 5433, "other")
    assert set(read_routes_file(path)) == {"shop", "other"}
    mtime = path.stat().st_mtime_ns
    with locked_routes(path):
        pass
    assert path.stat().st_mtime_ns == mtime
    with locked_routes(path) as routes:
        del routes["shop"]
    assert set(read_routes_file(path)) == {"other"}
