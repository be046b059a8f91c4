"""PgBouncerRouteSwitch's own logic without a PgBouncer: which admin connection each command uses inside
and outside `held()`, what happens when a held connection breaks, how `point_to` puts the routes file
back after a failed RELOAD, and the routes-file/live-route comparison.

`FakeBouncer` and `FakeConnection` are fakes of PgBouncer's admin console (a few commands, no network);
the real behaviour is proven against the stack's PgBouncers in tests/integration/test_route_switch.py.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pgmigrate.core.endpoints import PgEndpoint
from pgmigrate.cutover.routing import switch as route_switch
from pgmigrate.cutover.routing.routes import Route, read_routes_file, write_routes_file
from pgmigrate.cutover.routing.switch import PgBouncerRouteSwitch
from pgmigrate.cutover.routing.switch_contract import (
    AdminCommandError,
    PauseTimeoutError,
    RouteSwitchError,
    describe_routes_disagreement,
)

pytestmark = pytest.mark.unit

ADMIN = PgEndpoint("127.0.0.1", 6433, "pgbouncer", "postgres", "postgres")
SOURCE = Route("127.0.0.1", 5433, "shop")
TARGET = Route("127.0.0.1", 5434, "shop")
DATABASE_COLUMNS = ("name", "host", "port", "database", "paused")


def row(route: Route, name: str = "shop", paused: int = 0) -> dict[str, Any]:
    return {"name": name, "host": route.host, "port": route.port, "database": route.dbname, "paused": paused}


# -- describe_routes_disagreement (pure) ------------------------------------------------------------


def test_agreeing_routes_and_no_explicit_route_are_no_disagreement() -> None:
    assert describe_routes_disagreement("shop", SOURCE, row(SOURCE)) is None
    assert describe_routes_disagreement("shop", None, None) is None
    # Without an explicit route the database follows `*`, which the routes file does not describe.
    assert describe_routes_disagreement("shop", None, row(TARGET)) is None


def test_file_and_live_route_differing_is_described_in_one_line() -> None:
    text = describe_routes_disagreement("shop", TARGET, row(SOURCE))
    assert text == (
        "the routes file routes shop to 127.0.0.1:5434/shop but PgBouncer uses 127.0.0.1:5433/shop; "
        "the next RELOAD or restart moves its clients to 127.0.0.1:5434/shop"
    )
    assert "\n" not in text
    other_dbname = describe_routes_disagreement("shop", SOURCE, row(Route("127.0.0.1", 5433, "shop_old")))
    assert other_dbname and "PgBouncer uses 127.0.0.1:5433/shop_old" in other_dbname


def test_explicit_route_pgbouncer_does_not_list_is_a_disagreement() -> None:
    text = describe_routes_disagreement("shop", TARGET, None)
    assert text and "PgBouncer has no entry for it" in text and "moves its clients to 127.0.0.1:5434/shop" in text


def test_unix_socket_live_route_is_a_disagreement() -> None:
    text = describe_routes_disagreement(
        "shop", SOURCE, {"name": "shop", "host": None, "port": 5433, "database": "shop", "paused": 0}
    )
    assert text and "Unix socket" in text


# -- fakes ----------------------------------------------------------------------------------------


@dataclass
class Column:
    name: str


class FakeCursor:
    def __init__(self, rows: list[dict[str, Any]] | None, columns: tuple[str, ...] = DATABASE_COLUMNS) -> None:
        self.description = [Column(c) for c in columns] if rows is not None else None
        self._rows = [tuple(r[c] for c in columns) for r in rows or []]

    def fetchall(self) -> list[tuple]:
        return self._rows


@dataclass
class FakeBouncer:
    """A fake of PgBouncer's admin console: live routes, RELOAD reads the routes file."""

    routes_file: Path
    live: dict[str, Route] = field(default_factory=dict)
    paused: set[str] = field(default_factory=set)
    fail_reloads: int = 0  # the next N RELOADs lose their connection
    reload_before_failing: bool = False  # the first of them after PgBouncer carried it out
    refuse_logins: bool = False
    opened: list[FakeConnection] = field(default_factory=list)
    commands: list[tuple[int, str]] = field(default_factory=list)  # (connection number, command)

    def connect(self) -> FakeConnection:
        if self.refuse_logins:
            raise psycopg.OperationalError("connection timeout expired")
        conn = FakeConnection(self, len(self.opened))
        self.opened.append(conn)
        return conn

    def reload(self) -> None:
        self.live.update(read_routes_file(self.routes_file))


class FakeConnection:
    def __init__(self, bouncer: FakeBouncer, number: int) -> None:
        self.bouncer = bouncer
        self.number = number
        self.closed = False
        self.broken = False

    def __enter__(self) -> FakeConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.closed = True

    def execute(self, command: str, prepare: bool | None = None) -> FakeCursor:
        assert prepare is False, "the admin console cannot parse prepared statements"
        if self.closed or self.broken:
            raise psycopg.OperationalError("the connection is lost")
        bouncer = self.bouncer
        bouncer.commands.append((self.number, command))
        if command == "RELOAD":
            if bouncer.fail_reloads:
                bouncer.fail_reloads -= 1
                if bouncer.reload_before_failing:
                    bouncer.reload_before_failing = False
                    bouncer.reload()
                self.broken = True
                raise psycopg.OperationalError("server closed the connection unexpectedly")
            bouncer.reload()
            return FakeCursor(None)
        if command == "SHOW DATABASES":
            return FakeCursor([row(r, name, int(name in bouncer.paused)) for name, r in bouncer.live.items()])
        if command == "SHOW SERVERS":
            return FakeCursor([], ("database", "user", "addr", "port", "state"))
        if command == "SHOW VERSION":
            return FakeCursor(None)
        verb, _, quoted = command.partition(" ")
        name = quoted.strip('"')
        if verb == "RESUME":
            if name not in bouncer.paused:
                raise psycopg.errors.ProtocolViolation(f"database {name} is not paused")
            bouncer.paused.discard(name)
            return FakeCursor(None)
        raise AssertionError(f"the fake does not know {command!r}")


@pytest.fixture
def bouncer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeBouncer:
    routes_file = tmp_path / "routes.ini"
    write_routes_file(routes_file, {"shop": SOURCE})
    fake = FakeBouncer(routes_file, live={"shop": SOURCE})

    def fake_execute_until(conn: FakeConnection, command: str, deadline: float) -> bool:
        """PAUSE on the fake: completes at once, unless the database is marked as never draining."""
        fake.commands.append((conn.number, command))
        name = command.partition(" ")[2].strip('"')
        fake.paused.add(name)
        return name != "never_drains"

    monkeypatch.setattr(route_switch, "execute_until", fake_execute_until)
    return fake


@pytest.fixture
def switch(bouncer: FakeBouncer) -> PgBouncerRouteSwitch:
    sw = PgBouncerRouteSwitch(ADMIN, routes_file=bouncer.routes_file)
    sw._console.connect = bouncer.connect  # type: ignore[method-assign]
    return sw


# -- held() -----------------------------------------------------------------------------------------


def test_outside_held_every_command_opens_and_closes_its_own_connection(
    switch: PgBouncerRouteSwitch, bouncer: FakeBouncer
) -> None:
    switch.pause("shop", timeout_seconds=1)
    switch.point_to("shop", TARGET.host, TARGET.port, TARGET.dbname)
    switch.resume("shop")
    assert len(bouncer.opened) == len(bouncer.commands) == 4  # PAUSE, RELOAD, SHOW DATABASES, RESUME
    assert all(conn.closed for conn in bouncer.opened)


def test_held_opens_two_connections_once_pause_on_one_everything_else_on_the_other(
    switch: PgBouncerRouteSwitch, bouncer: FakeBouncer
) -> None:
    with switch.held() as held:
        assert held is switch
        assert len(bouncer.opened) == 2
        switch.pause("shop", timeout_seconds=1)
        assert switch.is_paused("shop")
        switch.point_to("shop", TARGET.host, TARGET.port, TARGET.dbname)
        assert switch.resume("shop") is True
        assert switch.resume("shop") is False  # "is not paused": the held connection stays usable
        assert switch.current_route("shop") == TARGET
        assert len(bouncer.opened) == 2
        assert not any(conn.closed for conn in bouncer.opened)
    assert all(conn.closed for conn in bouncer.opened)
    pause_conn, other_conn = (conn.number for conn in bouncer.opened)
    assert [n for n, c in bouncer.commands if c.startswith("PAUSE")] == [pause_conn]
    assert {n for n, c in bouncer.commands if c != "SHOW VERSION" and not c.startswith("PAUSE")} == {other_conn}
    switch.resume("shop")  # after the block: one connection per command again
    assert len(bouncer.opened) == 3 and bouncer.opened[2].closed


def test_nested_held_reuses_the_outer_connections(switch: PgBouncerRouteSwitch, bouncer: FakeBouncer) -> None:
    with switch.held():
        with switch.held():
            switch.is_paused("shop")
        assert not any(conn.closed for conn in bouncer.opened)  # the inner block closes nothing
        switch.is_paused("shop")
    assert len(bouncer.opened) == 2 and all(conn.closed for conn in bouncer.opened)


def test_held_refused_login_raises_with_nothing_held(switch: PgBouncerRouteSwitch, bouncer: FakeBouncer) -> None:
    bouncer.refuse_logins = True
    with pytest.raises(AdminCommandError, match="refused the admin logins to hold.*Nothing was paused"):
        with switch.held():
            pytest.fail("the block must not run")
    bouncer.refuse_logins = False
    switch.is_paused("shop")
    assert len(bouncer.opened) == 1 and bouncer.opened[0].closed  # not holding: per-command connection


def test_broken_held_connection_is_replaced_and_the_command_retried(
    switch: PgBouncerRouteSwitch, bouncer: FakeBouncer, caplog: pytest.LogCaptureFixture
) -> None:
    bouncer.paused.add("shop")
    with switch.held():
        other = bouncer.opened[1]
        other.broken = True  # e.g. PgBouncer closed it
        with caplog.at_level(logging.WARNING, logger="pgmigrate.cutover.routing.admin"):
            assert switch.resume("shop") is True
        assert 'held admin connection was closed or broken; opening a new one for `RESUME "shop"`' in caplog.text
        assert len(bouncer.opened) == 3 and other.closed
        switch.is_paused("shop")
        assert bouncer.commands[-1] == (2, "SHOW DATABASES")  # the replacement is held from now on


def test_connection_lost_during_a_held_command_retries_once_on_a_new_one(
    switch: PgBouncerRouteSwitch, bouncer: FakeBouncer, caplog: pytest.LogCaptureFixture
) -> None:
    bouncer.fail_reloads = 1
    with switch.held(), caplog.at_level(logging.WARNING, logger="pgmigrate.cutover.routing.admin"):
        assert switch.point_to("shop", TARGET.host, TARGET.port, TARGET.dbname) == TARGET
    assert "broke during `RELOAD`" in caplog.text
    assert [c for _, c in bouncer.commands].count("RELOAD") == 2
    assert bouncer.live["shop"] == TARGET


def test_pause_that_does_not_complete_abandons_its_held_connection_and_resumes_on_the_other(
    switch: PgBouncerRouteSwitch, bouncer: FakeBouncer, caplog: pytest.LogCaptureFixture
) -> None:
    write_routes_file(bouncer.routes_file, {"shop": SOURCE, "never_drains": SOURCE})
    bouncer.live["never_drains"] = SOURCE
    with switch.held():
        pause_conn, other_conn = bouncer.opened
        with pytest.raises(PauseTimeoutError):
            switch.pause("never_drains", timeout_seconds=0.1)
        assert pause_conn.closed and not other_conn.closed
        assert (other_conn.number, 'RESUME "never_drains"') in bouncer.commands
        assert "never_drains" not in bouncer.paused
        with caplog.at_level(logging.WARNING, logger="pgmigrate.cutover.routing.admin"):
            switch.pause("shop", timeout_seconds=1)
        assert "held PAUSE connection is gone" in caplog.text
        assert bouncer.commands[-1] == (2, 'PAUSE "shop"')


def test_held_pause_connection_that_does_not_answer_is_replaced_before_pause(
    switch: PgBouncerRouteSwitch, bouncer: FakeBouncer
) -> None:
    with switch.held():
        bouncer.opened[0].broken = True
        switch.pause("shop", timeout_seconds=1)
        assert (2, 'PAUSE "shop"') in bouncer.commands
        assert not any(c.startswith("PAUSE") for n, c in bouncer.commands if n == 0)


# -- point_to after a failed RELOAD --------------------------------------------------------------


def test_failed_reload_puts_the_routes_file_back_and_says_clients_stay(
    switch: PgBouncerRouteSwitch, bouncer: FakeBouncer
) -> None:
    bouncer.fail_reloads = 2  # the RELOAD and the one after putting the file back
    with pytest.raises(RouteSwitchError) as caught:
        switch.point_to("shop", TARGET.host, TARGET.port, TARGET.dbname)
    message = str(caught.value)
    assert message.startswith("RELOAD after writing route shop -> 127.0.0.1:5434/shop failed")
    assert "The routes file is back to 127.0.0.1:5433/shop (RELOAD again failed: server closed" in message
    assert "PgBouncer routes shop to 127.0.0.1:5433/shop: clients stay on the old route." in message
    assert read_routes_file(bouncer.routes_file) == {"shop": SOURCE}
    assert [c for _, c in bouncer.commands].count("RELOAD") == 2
    assert switch.routes_disagreement("shop") is None


def test_failed_reload_from_the_fallback_removes_the_new_route_again(
    switch: PgBouncerRouteSwitch, bouncer: FakeBouncer
) -> None:
    write_routes_file(bouncer.routes_file, {})
    bouncer.fail_reloads = 1
    expected = r"back to no explicit route \(RELOAD again: done\).*clients stay on the old route"
    with pytest.raises(RouteSwitchError, match=expected):
        switch.point_to("shop", TARGET.host, TARGET.port, TARGET.dbname)
    assert read_routes_file(bouncer.routes_file) == {}


def test_reload_that_took_effect_before_its_connection_broke_is_reported_as_a_disagreement(
    switch: PgBouncerRouteSwitch, bouncer: FakeBouncer
) -> None:
    """The worst case: PgBouncer reloaded the new route, then both RELOADs lost their connection. The
    file is back on the source, PgBouncer on the target: the error must say so, and so must the check."""
    bouncer.fail_reloads = 2
    bouncer.reload_before_failing = True
    with pytest.raises(
        RouteSwitchError, match="PgBouncer routes shop to 127.0.0.1:5434/shop: the file and PgBouncer disagree"
    ):
        switch.point_to("shop", TARGET.host, TARGET.port, TARGET.dbname)
    assert read_routes_file(bouncer.routes_file) == {"shop": SOURCE}
    disagreement = switch.routes_disagreement("shop")
    assert disagreement == (
        "PgBouncer at postgres@127.0.0.1:6433/pgbouncer: the routes file routes shop to 127.0.0.1:5433/shop but "
        "PgBouncer uses 127.0.0.1:5434/shop; the next RELOAD or restart moves its clients to 127.0.0.1:5433/shop"
    )
