"""Every DAG file imports cleanly, does no network or database I/O at parse time, and follows the
project's conventions (tags, doc_md, retries)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    original_connect = socket.socket.connect

    def no_network(self, address):  # noqa: ARG001 - the address is in the error
        raise AssertionError(f"a DAG file opened a network connection at parse time: {address}")

    socket.socket.connect = no_network
    try:
        return DagBag(dag_folder=str(REPO / "dags"))
    finally:
        socket.socket.connect = original_connect


def test_no_import_errors(dagbag):
    assert dagbag.import_errors == {}


def test_dags_found(dagbag):
    assert "platform_health" in dagbag.dag_ids


# While client writes are paused a retry would only lengthen the pause: these DAGs abort instead.
NO_RETRIES_BY_DESIGN = {"pg_cutover": "abort_cutover", "pg_rollback": "abort_rollback"}


def test_every_dag_is_documented_tagged_and_retried(dagbag):
    for dag_id, dag in dagbag.dags.items():
        assert dag.tags, f"{dag_id} has no tags"
        assert dag.doc_md and len(dag.doc_md) > 80, f"{dag_id} needs doc_md telling the operator how to rerun"
        if dag_id in NO_RETRIES_BY_DESIGN:
            abort = dag.get_task(NO_RETRIES_BY_DESIGN[dag_id])
            assert abort.trigger_rule == "one_failed", f"{dag_id}: the abort task must run when any step fails"
            continue
        for task in dag.tasks:
            assert task.retries >= 1, f"{dag_id}.{task.task_id} has no retries"


def test_airflow_plugin_loader_skips_the_domain_package():
    """Airflow execs every .py under plugins/ as a top-level module named by its file name; our package
    must be excluded (plugins/.airflowignore) or its modules load twice and can shadow stdlib ones."""
    from airflow._shared.module_loading import find_path_from_directory

    files = list(find_path_from_directory(str(REPO / "plugins"), ".airflowignore", "glob"))
    assert [f for f in files if f.endswith(".py")] == []


def test_pg_validate_runs_weekly_and_compares_each_table_in_its_own_task(dagbag):
    """The seed's weekly validation; mapped per table so a rerun redoes only the failed tables."""
    dag = dagbag.dags["pg_validate"]
    assert dag.timetable.expression in ("@weekly", "0 0 * * 0"), dag.timetable.expression
    assert dag.params["migration_id"] == "", "an empty migration_id means every streaming or cut-over migration"
    data = dag.get_task("data_compare")
    assert type(data).__name__ == "MappedOperator"
    assert dag.get_task("report").trigger_rule == "all_done", "the report must include the tables that failed"


MIGRATION_RUN_DAGS = (
    "pg_migration",
    "pg_cutover",
    "pg_rollback",
    "pg_migration_recover",
    "pg_migration_schema_sync",
    "pg_migration_resync",
)


def test_runs_of_one_migration_take_its_lease_instead_of_serializing_every_migration(dagbag):
    """Several migrations at once: no max_active_runs=1; the claim comes first and its release is the teardown
    downstream of every other task (so it runs whatever failed, and is cleared with any task)."""
    for dag_id in MIGRATION_RUN_DAGS:
        dag = dagbag.dags[dag_id]
        assert dag.max_active_runs != 1, dag_id
        claim, release = dag.get_task("claim_migration"), dag.get_task("release_migration")
        assert claim.is_setup and release.is_teardown, dag_id
        others = [t for t in dag.tasks if t.task_id not in ("claim_migration", "release_migration")]
        assert all(claim.task_id in t.get_flat_relative_ids(upstream=True) for t in others), dag_id
        assert all(release.task_id in t.get_flat_relative_ids(upstream=False) for t in others), dag_id


def test_pg_migration_monitor_evaluates_each_migration_in_its_own_task(dagbag):
    """Mapped per migration so one slow or unreadable migration does not hold back the others' alerts."""
    dag = dagbag.dags["pg_migration_monitor"]
    assert dag.max_active_runs == 1
    evaluate = dag.get_task("evaluate")
    assert type(evaluate).__name__ == "DecoratedMappedOperator"
    assert evaluate.map_index_template == "{{ task.op_kwargs['migration_id'] }}"
    assert evaluate.upstream_task_ids == {"monitored_migrations"}
    collect = dag.get_task("collect_halts")
    assert collect.trigger_rule == "all_done", "a failed migration must not stop the others' halts"
    assert collect.upstream_task_ids == {"evaluate", "monitored_migrations"}
    halt = dag.get_task("halt")
    assert type(halt).__name__ == "MappedOperator"
    assert halt.upstream_task_ids == {"collect_halts"}
