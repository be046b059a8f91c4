"""The pause lease on the real control database and both PgBouncers of the local stack (6432, 6433).

- Exactly one of the switch and the deadline wins: while the switch holds the lease row, the deadline's
  compare-and-set waits and then loses; after the deadline the switch is refused.
- A process that paused both PgBouncers and is killed with -9 leaves a lease that an enforcer (here called
  the way the pause guard calls it) ends at the deadline, putting every PgBouncer back on the origin and
  resuming it, within the deadline plus a fraction of a second. Nothing was on a local disk.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from devtools.databases import drop_database, recreate_database
from pgmigrate.control.pause_lease import LeaseLost, LeaseStore
from pgmigrate.control.state import MigrationStateStore
from pgmigrate.core.endpoints import PgEndpoint
from pgmigrate.cutover.guard import Sides, enforce
from pgmigrate.cutover.routing.fleet import ClientRouting, PgBouncerInstance
from pgmigrate.cutover.routing.routes import Route
from pgmigrate.cutover.routing.switch import PgBouncerRouteSwitch

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
STATE = REPO / ".stack"
DB = "lease_test"
PASSWORD = "postgres"
CONTROL = PgEndpoint("127.0.0.1", 5435, "migration_control", "postgres", PASSWORD)
SOURCE = PgEndpoint("127.0.0.1", 5433, DB, "postgres", PASSWORD)
TARGET = PgEndpoint("127.0.0.1", 5434, DB, "postgres", PASSWORD)
MIGRATION_ID = "lease-test"


def _switches() -> list[PgBouncerInstance]:
    return [
        PgBouncerInstance(
            name,
            PgBouncerRouteSwitch(
                PgEndpoint("127.0.0.1", port, "pgbouncer", "postgres", PASSWORD), STATE / folder / "routes.ini"
            ),
        )
        for name, port, folder in (("pgbouncer_admin", 6432, "pgbouncer"), ("pgbouncer_admin_2", 6433, "pgbouncer2"))
    ]


PLAN = {
    "database": DB,
    "pgbouncers": ["pgbouncer_admin", "pgbouncer_admin_2"],
    "origin": {"conn_id": "x", "route": {"host": "127.0.0.1", "port": 5433, "dbname": DB}},
    "destination": {"conn_id": "y", "route": {"host": "127.0.0.1", "port": 5434, "dbname": DB}},
}


@pytest.fixture(scope="module")
def routing():
    MigrationStateStore(CONTROL).ensure_schema()
    for endpoint in (SOURCE, TARGET):
        recreate_database(endpoint)
    fleet = ClientRouting(_switches(), DB)
    fleet.pin(_origin())
    yield fleet
    for i in fleet.instances:
        i.switch.resume(DB)
        i.switch.remove_route(DB)
    with CONTROL.connect(autocommit=True) as conn:
        conn.execute("DELETE FROM pause_lease WHERE migration_id = %s", (MIGRATION_ID,))
    for endpoint in (SOURCE, TARGET):
        drop_database(endpoint)


def _origin() -> Route:
    return Route("127.0.0.1", 5433, DB)


def _lease(store: LeaseStore, max_pause: float):
    with CONTROL.connect(autocommit=True) as conn:  # an earlier interrupted run of this test
        conn.execute(
            "UPDATE pause_lease SET state = 'released' WHERE migration_id = %s AND state IN ('pending', 'armed')",
            (MIGRATION_ID,),
        )
    return store.create(MIGRATION_ID, "test-run", "cutover", max_pause, PLAN)


def test_the_switch_and_the_deadline_cannot_both_win(routing):
    store = LeaseStore(CONTROL)
    # A switch that commits before the deadline wins; the enforcer coming later changes nothing.
    lease = store.arm(_lease(store, 1.0).lease_id)
    with store.switching(lease.lease_id, lock_timeout_ms=1000, by="test switch"):
        pass
    time.sleep(1.1)
    assert store.end(lease.lease_id, "expired", by="test enforcer") is False
    assert store.get(lease.lease_id).state == "switched"

    # A switch still holding the row at the deadline: the enforcer waits for its transaction, the switch's
    # commit is refused (past the deadline) and the enforcer wins.
    slow = store.arm(_lease(store, 1.0).lease_id)
    outcome: dict = {}
    waiter = threading.Thread(
        target=lambda: outcome.update(expired=store.end(slow.lease_id, "expired", by="test enforcer"))
    )
    with pytest.raises(LeaseLost, match="deadline passed during the switch"):
        with store.switching(slow.lease_id, lock_timeout_ms=3000, by="test switch"):
            time.sleep(1.2)
            waiter.start()
            time.sleep(0.3)
            assert waiter.is_alive(), "the enforcer must wait for the switch's transaction"
    waiter.join(timeout=5)
    assert outcome == {"expired": True}
    assert store.get(slow.lease_id).state == "expired"

    # After the deadline the switch is refused before it touches anything; exactly one enforcer wins.
    late = store.arm(_lease(store, 0.3).lease_id)
    time.sleep(0.5)
    with pytest.raises(LeaseLost, match="past its deadline"), store.switching(late.lease_id, 1000, by="test switch"):
        pass
    assert store.end(late.lease_id, "expired", by="test enforcer") is True
    assert store.end(late.lease_id, "expired", by="another enforcer") is False


CHILD = """
import sys, time
from pgmigrate.control.pause_lease import LeaseStore
from pgmigrate.core.endpoints import PgEndpoint
from pgmigrate.cutover.routing.routes import Route
from pgmigrate.cutover.routing.switch import PgBouncerRouteSwitch
store = LeaseStore(PgEndpoint("127.0.0.1", 5435, "migration_control", "postgres", "postgres"))
store.arm(sys.argv[1])
for port in (6432, 6433):
    PgBouncerRouteSwitch(PgEndpoint("127.0.0.1", port, "pgbouncer", "postgres", "postgres")).pause(sys.argv[2], 5)
print("paused", flush=True)
time.sleep(600)
"""


def test_an_enforcer_ends_the_pause_of_a_killed_process_at_its_deadline(routing):
    store = LeaseStore(CONTROL)
    lease = _lease(store, 2.0)
    env = {**os.environ, "PYTHONPATH": str(REPO / "plugins")}
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, lease.lease_id, DB], env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout.readline().strip() == "paused"
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=10)
        assert all(i.switch.is_paused(DB) for i in routing.instances), "the pause outlives its pauser"
        # As the pause guard does in the triggerer: look until the lease has ended, settling it.
        sides = Sides(SOURCE, TARGET)
        with routing.held():
            while (ended := enforce(store, lease.lease_id, routing, sides, by="test guard")) is None:
                time.sleep(0.05)
    finally:
        if child.poll() is None:
            child.kill()
    ended = store.get(lease.lease_id)
    paused = (ended.ended_at - ended.armed_at).total_seconds()
    print(f"pause ended {paused:.2f}s after it was armed (deadline 2 s)")
    assert ended.state == "expired" and ended.ended_by == "test guard"
    assert 2.0 <= paused < 2.5
    assert not any(i.switch.is_paused(DB) for i in routing.instances)
    assert {str(r) for r in routing.routes().values()} == {f"127.0.0.1:5433/{DB}"}
