"""Where clients connect, against the real PgBouncer of the local stack (127.0.0.1:6432, transaction
pooling, `*` -> source :5433, explicit routes in .stack/pgbouncer/routes.ini).

A scratch database `route_test` (pgbench schema) exists on both source and target; only these tests
use that name, and they leave it routed by the `*` fallback again (explicit route removed) and drop it.
pgbench writes through PgBouncer at a fixed rate while the route switches from source to target.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pgmigrate.databases import drop_database, recreate_database
from pgmigrate.endpoints import PgEndpoint
from pgmigrate.pause_watchdog import arm, disarm
from pgmigrate.pgbouncer_routes import Route, read_routes_file
from pgmigrate.route_switch import PauseTimeoutError, PgBouncerRouteSwitch, RouteSwitch

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
        [str(PG_BIN / "pgbench"), *args, endpoint.dbname], env=endpoint.libpq_env(),
        capture_output=True, text=True, timeout=timeout,
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
        env=VIA_PGBOUNCER.libpq_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
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


CHILD = """
import os, sys, time
from pgmigrate.endpoints import PgEndpoint
from pgmigrate.pause_watchdog import arm
from pgmigrate.route_switch import PgBouncerRouteSwitch
admin = PgEndpoint("127.0.0.1", 6432, "pgbouncer", "postgres", os.environ["PGPASSWORD"])
handle = arm(admin, sys.argv[1], float(sys.argv[2]), sys.argv[3])
PgBouncerRouteSwitch(admin).pause(sys.argv[1], timeout_seconds=5)
print(handle.deadline, handle.pid, flush=True)
time.sleep(600)
"""


def test_watchdog_resumes_after_the_pausing_process_is_killed(switch: PgBouncerRouteSwitch, tmp_path: Path) -> None:
    env = {**os.environ, "PGPASSWORD": PASSWORD, "PYTHONPATH": str(REPO / "plugins")}
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, DB, "3", str(tmp_path)], env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        deadline_text, watchdog_pid = child.stdout.readline().split()
        deadline = float(deadline_text)
        argv = Path(f"/proc/{watchdog_pid}/cmdline").read_bytes().decode().split("\0")
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=10)
        assert switch.is_paused(DB), "the database should stay paused after its pauser died"
        while switch.is_paused(DB) and time.time() < deadline + 5:
            time.sleep(0.1)
        resumed_at = time.time()
    finally:
        if child.poll() is None:
            child.kill()
        switch.resume(DB)
    assert not switch.is_paused(DB)
    late = resumed_at - deadline
    print(f"resumed {late:+.2f} s after the 3 s deadline")
    assert -0.2 <= late < 1.5
    assert f"{DB} resumed by the watchdog" in (tmp_path / "pause-watchdog.log").read_text()
    # The password (here equal to the user name) is nowhere in argv but as the --user value.
    assert "pgmigrate.pause_watchdog" in argv
    assert [i for i, arg in enumerate(argv) if PASSWORD in arg] == [argv.index("--user") + 1]
    assert not list(tmp_path.glob("*.armed")) and not list(tmp_path.glob("*.fired"))


def test_disarmed_watchdog_leaves_the_pause_alone(switch: PgBouncerRouteSwitch, tmp_path: Path) -> None:
    handle = arm(ADMIN, DB, 1.0, tmp_path)
    try:
        switch.pause(DB, timeout_seconds=5)
        assert disarm(handle) is True
        time.sleep(1.8)
        assert switch.is_paused(DB), "a disarmed watchdog must not resume"
        assert switch.resume(DB) is True
        assert "disarmed" in (tmp_path / "pause-watchdog.log").read_text()
    finally:
        switch.resume(DB)
    fired = arm(ADMIN, DB, 0.2, tmp_path)
    time.sleep(1.5)
    assert disarm(fired) is False  # it fired first: the caller learns the pause already ended


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
