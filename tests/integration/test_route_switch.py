"""Where clients connect, against the real PgBouncers of the local stack (127.0.0.1:6432 and 6433,
transaction pooling, `*` -> source :5433, explicit routes in .stack/pgbouncer/routes.ini and
.stack/pgbouncer2/routes.ini).

A scratch database `route_test` (pgbench schema) exists on both source and target; only these tests
use that name, and they leave it routed by the `*` fallback again (explicit route removed) and drop it.
pgbench writes through PgBouncer at a fixed rate while the route switches from source to target.

The held-connection tests use their own scratch database `route_test_held` (empty, on source and
target): through the second PgBouncer (max_client_conn 100), and through a private PgBouncer this file
starts with a file-descriptor limit of 40, the one limit that refuses admin logins too.
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import psycopg
import pytest

from devtools.databases import drop_database, recreate_database
from pgmigrate.core.endpoints import PgEndpoint
from pgmigrate.cutover.routing.routes import Route, read_routes_file, write_routes_file
from pgmigrate.cutover.routing.switch import PgBouncerRouteSwitch
from pgmigrate.cutover.routing.switch_contract import PauseTimeoutError, RouteSwitch, RouteSwitchError

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
STATE = REPO / ".stack"
ROUTES_FILE = STATE / "pgbouncer" / "routes.ini"
PG_BIN = Path(os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin"))
DB = "route_test"
PASSWORD = "postgres"
ADMIN = PgEndpoint("127.0.0.1", 6432, "pgbouncer", "postgres", PASSWORD)
SOURCE = PgEndpoint("127.0.0.1", 5433, DB, "postgres", PASSWORD)
TARGET = PgEndpoint("127.0.0.1", 5434, DB, "postgres", PASSWORD)
VIA_PGBOUNCER = PgEndpoint("127.0.0.1", 6432, DB, "postgres", PASSWORD)

RATE = 200
DURATION = 15
SWITCH_AT = 5.0
HOLD = 2.0


@pytest.fixture(scope="module")
def switch() -> Iterator[PgBouncerRouteSwitch]:
    """route_test with the pgbench schema on source and target, routed by `*` (to the source)."""
    assert ROUTES_FILE.is_file(), (
        f"{ROUTES_FILE} missing: PgBouncer was started by an older stack script. Restart PgBouncer "
        "(scripts/stack.sh down is not needed: stop it by its pid in .stack/pids/pgbouncer.pid, then make stack-up)"
    )
    assert (PG_BIN / "pgbench").exists(), f"pgbench not found in {PG_BIN}: run make install"
    sw = PgBouncerRouteSwitch(ADMIN, routes_file=ROUTES_FILE)
    _cleanup(sw)
    for endpoint in (SOURCE, TARGET):
        recreate_database(endpoint)
        _pgbench(endpoint, ["-i", "-s", "1", "-q"], timeout=120)
    # Explicit route to the source, as the cutover pins it: PgBouncer hides an idle `*` database (and
    # its paused flag) from SHOW DATABASES.
    sw.point_to(DB, "127.0.0.1", 5433, DB)
    yield sw
    _cleanup(sw)
    assert DB not in read_routes_file(ROUTES_FILE)
    for endpoint in (SOURCE, TARGET):
        drop_database(endpoint)


def _cleanup(sw: PgBouncerRouteSwitch) -> None:
    sw.resume(DB)
    sw.remove_route(DB)


def _pgbench(endpoint: PgEndpoint, args: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(PG_BIN / "pgbench"), *args, endpoint.dbname],
        env=endpoint.libpq_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, f"pgbench {args} on {endpoint.label} failed:\n{result.stdout}{result.stderr}"
    return result


def _history_count(endpoint: PgEndpoint) -> int:
    with endpoint.connect(autocommit=True) as conn:
        return conn.execute("SELECT count(*) FROM pgbench_history").fetchone()[0]


def test_pgbouncer_route_switch_is_a_route_switch(switch: PgBouncerRouteSwitch) -> None:
    assert isinstance(switch, RouteSwitch)


def test_switch_under_load_fails_no_transaction_and_moves_writes_to_target(switch: PgBouncerRouteSwitch) -> None:
    bench = subprocess.Popen(
        [str(PG_BIN / "pgbench"), "-n", "-c", "4", "-j", "2", "-R", str(RATE), "-T", str(DURATION), DB],
        env=VIA_PGBOUNCER.libpq_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        time.sleep(SWITCH_AT)
        assert switch.current_route(DB) == Route("127.0.0.1", 5433, DB)
        assert switch.client_count(DB) == 4
        assert {(s.host, s.port) for s in switch.server_connections(DB)} == {("127.0.0.1", 5433)}
        source_before = _history_count(SOURCE)

        paused_at = time.monotonic()
        drain_seconds = switch.pause(DB, timeout_seconds=5)
        assert switch.is_paused(DB)
        time.sleep(HOLD)
        switch.point_to(DB, "127.0.0.1", 5434, DB)
        switch.resume(DB)
        pause_seconds = time.monotonic() - paused_at

        source_at_switch = _history_count(SOURCE)
        time.sleep(1.0)
        servers = {(s.host, s.port) for s in switch.server_connections(DB)}
        output, _ = bench.communicate(timeout=DURATION + 30)
    finally:
        if bench.poll() is None:
            bench.kill()
            bench.wait()

    print(f"pause {pause_seconds:.2f} s (in-flight drained in {drain_seconds:.3f} s)\n{output}")
    assert bench.returncode == 0, output
    assert "aborted" not in output, output
    failed = re.search(r"number of failed transactions: (\d+)", output)
    processed = re.search(r"number of transactions actually processed: (\d+)", output)
    assert failed and processed, output
    assert int(failed.group(1)) == 0, output
    total = int(processed.group(1))
    assert total >= 0.9 * RATE * DURATION, output  # the paused 2 s were caught up, not dropped

    assert HOLD <= pause_seconds < HOLD + 1.0
    assert switch.current_route(DB) == Route("127.0.0.1", 5434, DB)
    assert read_routes_file(ROUTES_FILE)[DB] == Route("127.0.0.1", 5434, DB)
    assert servers == {("127.0.0.1", 5434)}, "server connections still on the source after the switch"

    source_rows, target_rows = _history_count(SOURCE), _history_count(TARGET)
    assert source_rows == source_at_switch >= source_before > 0  # nothing reached the source after the switch
    assert target_rows >= 0.9 * RATE * (DURATION - SWITCH_AT - HOLD)
    assert source_rows + target_rows == total

    switch.point_to(DB, "127.0.0.1", 5433, DB)  # back to the source for the other tests
    assert switch.current_route(DB) == Route("127.0.0.1", 5433, DB)
    assert switch.pin_route(DB) == Route("127.0.0.1", 5433, DB)  # idempotent


def test_resume_when_not_paused_is_harmless(switch: PgBouncerRouteSwitch) -> None:
    assert switch.resume(DB) is False
    assert switch.resume(DB) is False
    switch.pause(DB, timeout_seconds=5)
    assert switch.resume(DB) is True
    assert switch.resume(DB) is False
    assert not switch.is_paused(DB)


def test_pause_timeout_with_a_long_transaction_resumes(switch: PgBouncerRouteSwitch) -> None:
    with VIA_PGBOUNCER.connect() as holder:
        holder.execute("SELECT 1")  # an open transaction: holds its server connection (transaction pooling)
        started = time.monotonic()
        with pytest.raises(PauseTimeoutError, match="did not complete within 2.0 s.*resumed"):
            switch.pause(DB, timeout_seconds=2)
        waited = time.monotonic() - started
        assert 2.0 <= waited < 3.5
        assert not switch.is_paused(DB)
        holder.commit()
        assert holder.execute("SELECT 1").fetchone() == (1,)  # the pooler serves it again
    with VIA_PGBOUNCER.connect(autocommit=True) as other:
        assert other.execute("SELECT current_database()").fetchone() == (DB,)


def test_hook_builds_the_switch_from_the_stack_connection(switch: PgBouncerRouteSwitch, monkeypatch) -> None:
    from pgmigrate.hooks.pgbouncer import PgBouncerHook

    conns = json.loads((REPO / "include" / "stack" / "airflow-connections.json").read_text())
    conn = dict(conns["pgbouncer_admin"])
    conn["extra"] = conn["extra"].replace("@STATE@", str(STATE))
    monkeypatch.setenv("AIRFLOW_CONN_PGBOUNCER_ADMIN", json.dumps(conn))
    hook = PgBouncerHook()
    built = hook.get_switch()
    assert built.routes_file == ROUTES_FILE
    assert (built.admin.host, built.admin.port, built.admin.dbname) == ("127.0.0.1", 6432, "pgbouncer")
    ok, message = hook.test_connection()
    assert ok, message
    assert "PgBouncer 1.18" in message


# -- held admin connections: clients queued in a pause fill PgBouncer --------------------------------

HELD_DB = "route_test_held"
ADMIN_2 = PgEndpoint("127.0.0.1", 6433, "pgbouncer", "postgres", PASSWORD)
ROUTES_FILE_2 = STATE / "pgbouncer2" / "routes.ini"
MAX_CLIENT_CONN_2 = 100  # scripts/stack.d/pgbouncer.sh: PGBOUNCER2_MAX_CLIENT_CONN
HELD_SOURCE = Route("127.0.0.1", 5433, HELD_DB)
HELD_TARGET = Route("127.0.0.1", 5434, HELD_DB)
WHERE = "SELECT inet_server_port(), current_database()"


@pytest.fixture(scope="module")
def held_databases() -> Iterator[None]:
    """route_test_held, empty, on source and target."""
    endpoints = [PgEndpoint("127.0.0.1", port, HELD_DB, "postgres", PASSWORD) for port in (5433, 5434)]
    for endpoint in endpoints:
        recreate_database(endpoint)
    yield
    for endpoint in endpoints:
        drop_database(endpoint)


def _pinned_and_warm(sw: PgBouncerRouteSwitch, via: PgEndpoint) -> None:
    """Pin route_test_held to the source and run one query through PgBouncer: a login completes from the
    pool's cached server parameters, so clients can log in while the database is paused (a pool that never
    had a server connection makes a login wait for one, which a pause does not open)."""
    sw.point_to(HELD_DB, HELD_SOURCE.host, HELD_SOURCE.port, HELD_SOURCE.dbname)
    with psycopg.connect(via.conninfo(), autocommit=True) as conn:
        assert conn.execute(WHERE).fetchone() == (5433, HELD_DB)


def _open_clients_until_refused(via: PgEndpoint, limit: int, timeout: int) -> tuple[list[psycopg.Connection], str]:
    clients: list[psycopg.Connection] = []
    for _ in range(limit):
        try:
            clients.append(psycopg.connect(via.conninfo(connect_timeout=timeout), autocommit=True))
        except psycopg.OperationalError as exc:
            return clients, str(exc)
    pytest.fail(f"PgBouncer at {via.label} took {limit} clients and refused none")


def _admin_login_error(admin: PgEndpoint, timeout: int) -> str | None:
    """None if a new admin-console login works now, else the error."""
    try:
        with psycopg.connect(admin.conninfo(connect_timeout=timeout), autocommit=True, prepare_threshold=None) as c:
            c.execute("SHOW VERSION", prepare=False)
    except psycopg.OperationalError as exc:
        return str(exc)
    return None


@pytest.fixture
def switch2(held_databases: None) -> Iterator[PgBouncerRouteSwitch]:
    """The second PgBouncer (6433), route_test_held pinned to the source; explicit route removed after."""
    assert ROUTES_FILE_2.is_file(), f"{ROUTES_FILE_2} missing: the second PgBouncer is not up (make stack-up)"
    sw = PgBouncerRouteSwitch(ADMIN_2, routes_file=ROUTES_FILE_2)
    sw.resume(HELD_DB)
    _pinned_and_warm(sw, PgEndpoint("127.0.0.1", 6433, HELD_DB, "postgres", PASSWORD))
    yield sw
    sw.resume(HELD_DB)
    sw.remove_route(HELD_DB)
    assert HELD_DB not in read_routes_file(ROUTES_FILE_2)


def test_held_switch_moves_clients_queued_in_a_pause_that_filled_max_client_conn(
    switch2: PgBouncerRouteSwitch,
) -> None:
    via = PgEndpoint("127.0.0.1", 6433, HELD_DB, "postgres", PASSWORD)
    clients: list[psycopg.Connection] = []
    pool = ThreadPoolExecutor(max_workers=MAX_CLIENT_CONN_2)
    try:
        with switch2.held():  # before the pause: these two admin connections count among the 100
            switch2.pause(HELD_DB, timeout_seconds=5)
            clients, refusal = _open_clients_until_refused(via, MAX_CLIENT_CONN_2 + 10, timeout=3)
            assert "no more connections allowed (max_client_conn)" in refusal
            assert 50 <= len(clients) <= MAX_CLIENT_CONN_2 - 2, len(clients)  # others may use 6433 too
            queries: list[Future] = [pool.submit(lambda c=c: c.execute(WHERE).fetchone()) for c in clients]
            time.sleep(1.0)
            assert not any(q.done() for q in queries), "queries ran although the database is paused"
            assert switch2.client_count(HELD_DB) == len(clients)

            # PgBouncer 1.18 exempts its admin database from max_client_conn (src/client.c): a new admin login
            # still works here. What refuses admin logins too is the fd limit: see the next test.
            assert _admin_login_error(ADMIN_2, timeout=3) is None

            assert switch2.point_to(HELD_DB, HELD_TARGET.host, HELD_TARGET.port, HELD_TARGET.dbname) == HELD_TARGET
            assert switch2.resume(HELD_DB) is True
            answers = [q.result(timeout=30) for q in queries]
    finally:
        switch2.resume(HELD_DB)
        pool.shutdown(wait=False, cancel_futures=True)
        for c in clients:
            c.close()
    assert answers == [(5434, HELD_DB)] * len(clients)  # every queued query ran on the target
    assert switch2.current_route(HELD_DB) == HELD_TARGET
    assert read_routes_file(ROUTES_FILE_2)[HELD_DB] == HELD_TARGET
    assert switch2.routes_disagreement(HELD_DB) is None


def test_held_connections_serve_repeated_pauses_without_new_logins(
    switch2: PgBouncerRouteSwitch, caplog: pytest.LogCaptureFixture
) -> None:
    """PAUSE drives libpq directly on its held connection; the next PAUSE and the SHOW before it reuse it."""
    with switch2.held(), caplog.at_level(logging.WARNING, logger="pgmigrate.cutover.routing.admin"):
        for _ in range(3):
            switch2.pause(HELD_DB, timeout_seconds=5)
            assert switch2.is_paused(HELD_DB)
            assert switch2.resume(HELD_DB) is True
    assert "opening a new one" not in caplog.text


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def fd_starved_pgbouncer(held_databases: None) -> Iterator[tuple[PgEndpoint, Path]]:
    """A private PgBouncer (its own port and directory, same settings as the stack's) whose process may open
    only 40 files: clients queued in a pause use them up long before max_client_conn (100), and then it
    accepts no connection at all, admin logins included (`accept() failed: Too many open files`). Yields its
    admin endpoint and routes file; stopped by its pid afterwards."""
    port = _free_port()
    home = STATE / f"route-test-pgbouncer-{uuid.uuid4().hex[:6]}"  # under .stack: the postgres user reaches it
    home.mkdir()
    routes_file = home / "routes.ini"
    write_routes_file(routes_file, {})
    (home / "userlist.txt").write_text(f'"postgres" "{PASSWORD}"\n')
    (home / "pgbouncer.ini").write_text(
        f"[databases]\n%include {routes_file}\n* = host=127.0.0.1 port=5433\n"
        f"[pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n"
        f"auth_type = scram-sha-256\nauth_file = {home}/userlist.txt\nadmin_users = postgres\n"
        "pool_mode = transaction\nmax_client_conn = 100\ndefault_pool_size = 20\n"
        f"ignore_startup_parameters = extra_float_digits,options\nlogfile = {home}/pgbouncer.log\n"
    )
    root = os.getuid() == 0
    if root:  # PgBouncer refuses to run as root; the stack runs it as postgres too
        subprocess.run(["chown", "-R", "postgres", str(home)], check=True)
    bouncer = subprocess.Popen(  # prlimit sets the limit, then execs PgBouncer: the pid is PgBouncer's
        ["prlimit", "--nofile=40:40", "/usr/sbin/pgbouncer", str(home / "pgbouncer.ini")],
        user="postgres" if root else None,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    admin = PgEndpoint("127.0.0.1", port, "pgbouncer", "postgres", PASSWORD)
    try:
        deadline = time.monotonic() + 10
        while _admin_login_error(admin, timeout=2) is not None:
            assert bouncer.poll() is None and time.monotonic() < deadline, (
                f"private PgBouncer did not start:\n{(home / 'pgbouncer.log').read_text()}"
            )
            time.sleep(0.2)
        yield admin, routes_file
    finally:
        bouncer.terminate()
        try:
            bouncer.wait(timeout=10)
        except subprocess.TimeoutExpired:
            bouncer.kill()
            bouncer.wait()
        subprocess.run(["rm", "-rf", str(home)], check=False)


def test_held_connections_still_resume_when_pgbouncer_accepts_no_connection(
    fd_starved_pgbouncer: tuple[PgEndpoint, Path],
) -> None:
    admin, routes_file = fd_starved_pgbouncer
    via = PgEndpoint(admin.host, admin.port, HELD_DB, "postgres", PASSWORD)
    sw = PgBouncerRouteSwitch(admin, routes_file=routes_file)
    _pinned_and_warm(sw, via)
    clients: list[psycopg.Connection] = []
    with sw.held():
        try:
            sw.pause(HELD_DB, timeout_seconds=5)
            clients, refusal = _open_clients_until_refused(via, 100, timeout=2)
            assert "timeout expired" in refusal and len(clients) < 40  # the fd limit, not max_client_conn
            login_error = _admin_login_error(admin, timeout=2)
            assert login_error is not None and "timeout expired" in login_error

            # Without held connections nothing reaches the console. point_to's RELOAD fails, so the routes file
            # is put back (a restart must not move clients) and the error says where clients are.
            unheld = PgBouncerRouteSwitch(admin, routes_file=routes_file)
            with pytest.raises(RouteSwitchError) as failed_reload:
                unheld.point_to(HELD_DB, HELD_TARGET.host, HELD_TARGET.port, HELD_TARGET.dbname)
            message = str(failed_reload.value)
            print(message)
            assert message.startswith(f"RELOAD after writing route {HELD_DB} -> {HELD_TARGET} failed")
            assert f"The routes file is back to {HELD_SOURCE} (RELOAD again failed" in message
            assert "live route is unknown" in message and f"most likely stay on {HELD_SOURCE}" in message
            assert read_routes_file(routes_file) == {HELD_DB: HELD_SOURCE}

            # The held connections still work: SHOW and RESUME need no new file. RELOAD is answered but cannot
            # read pgbouncer.ini ("Too many open files" in its log), so the switch is refused and undone.
            assert sw.is_paused(HELD_DB)
            assert sw.routes_disagreement(HELD_DB) is None
            with pytest.raises(RouteSwitchError, match="did not take route.*clients stay on the old route"):
                sw.point_to(HELD_DB, HELD_TARGET.host, HELD_TARGET.port, HELD_TARGET.dbname)
            assert read_routes_file(routes_file) == {HELD_DB: HELD_SOURCE}
            assert sw.resume(HELD_DB) is True
            assert not sw.is_paused(HELD_DB)
        finally:
            sw.resume(HELD_DB)  # on the held connection: a new login would not get in until the clients leave
            for c in clients:
                c.close()
    # Once the clients are gone PgBouncer accepts logins again and still routes to the source.
    deadline = time.monotonic() + 20
    while _admin_login_error(admin, timeout=2) is not None:
        assert time.monotonic() < deadline, "the private PgBouncer accepts no login 20 s after its clients left"
    with psycopg.connect(via.conninfo(connect_timeout=5), autocommit=True) as conn:
        assert conn.execute(WHERE).fetchone() == (5433, HELD_DB)
    assert sw.routes_disagreement(HELD_DB) is None
