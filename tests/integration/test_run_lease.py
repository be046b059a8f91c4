"""The per-migration run lease on the real control database (no Airflow: the holder run's state is given)."""

from __future__ import annotations

import pytest
from harness import CONTROL

from pgmigrate.control.run_lease import MigrationBusy, RunLeaseStore
from pgmigrate.control.state import MigrationStateStore

MIGRATION = "lease-unit"


@pytest.fixture
def leases() -> RunLeaseStore:
    MigrationStateStore(CONTROL).ensure_schema()
    store = RunLeaseStore(CONTROL)
    holder = store.holder(MIGRATION)
    if holder:
        store.release(MIGRATION, holder.dag_id, holder.run_id)
    yield store
    holder = store.holder(MIGRATION)
    if holder:
        store.release(MIGRATION, holder.dag_id, holder.run_id)


def test_one_run_holds_a_migration_until_it_releases_or_stops_running(leases):
    states = {("pg_migration", "run-1"): "running"}

    def state(dag_id: str, run_id: str) -> str | None:
        return states.get((dag_id, run_id))

    assert "claimed lease-unit" in leases.claim(MIGRATION, "pg_migration", "run-1", state)
    assert "already held by this run" in leases.claim(MIGRATION, "pg_migration", "run-1", state)  # a cleared task
    with pytest.raises(MigrationBusy, match="held by pg_migration run run-1 .*, which is running"):
        leases.claim(MIGRATION, "pg_cutover", "cut-1", state)
    assert leases.claim("lease-unit-other", "pg_cutover", "cut-1", state)  # another migration: side by side
    assert leases.release("lease-unit-other", "pg_cutover", "cut-1")
    assert not leases.release(MIGRATION, "pg_cutover", "cut-1"), "only the holder releases"
    states[("pg_migration", "run-1")] = "failed"  # marked failed before its teardown ran
    assert "taken over from pg_migration run run-1" in leases.claim(MIGRATION, "pg_cutover", "cut-1", state)
    assert leases.holder(MIGRATION).run_id == "cut-1"
    assert "which is gone" in leases.claim(MIGRATION, "pg_rollback", "rb-1", lambda d, r: None)  # run deleted
    assert leases.release(MIGRATION, "pg_rollback", "rb-1") and leases.holder(MIGRATION) is None
