"""Pure planning of the Kafka-loss recovery: which rows are deleted on the target (only rows extra on it,
never missing/changed/in-flight ones, nothing of a keyless table, keys back on the source kept) and the
order of the steps, in the module and in the DAG. No database, no Airflow run."""

from pathlib import Path

import pytest

from pgmigrate.core.catalog import Column, TableInfo, TableRef
from pgmigrate.recovery.kafka_loss_recovery import STEPS, batches, deletable_keys, plan_recovery, still_absent
from pgmigrate.validate.row_diff import RowDifference, TableDiff

pytestmark = pytest.mark.unit
REPO = Path(__file__).resolve().parents[2]


def _diff(**fields) -> TableDiff:
    return TableDiff(TableRef("public", "orders"), "full", primary_key=["id"], **fields)


def _table(name: str, primary_key: list[str]) -> TableInfo:
    column = Column("id", "integer", 23, "b", None, None, "", "", True, False)
    return TableInfo(TableRef("public", name), "r", primary_key, "d", False, [column])


def test_only_rows_extra_on_the_target_are_deletable():
    diff = _diff(
        extra=[RowDifference({"id": 7}, "extra"), RowDifference({"id": 9}, "extra")],
        missing=[RowDifference({"id": 3}, "missing")],
        changed=[RowDifference({"id": 4}, "changed", ["note"])],
        in_flight=[{"id": 5}],
        extra_count=2,
        missing_count=1,
        changed_count=1,
        in_flight_count=1,
    )
    assert deletable_keys(diff) == [{"id": 7}, {"id": 9}]


def test_nothing_is_deleted_from_a_keyless_table_or_a_table_not_compared():
    keyless = TableDiff(
        TableRef("public", "audit"),
        "full",
        primary_key=[],
        extra=[RowDifference({"at": "x", "what": "dup"}, "extra")],
        extra_count=1,
    )
    assert deletable_keys(keyless) == [], "a keyless table's `extra` holds example rows, not keys"
    broken = _diff(extra=[RowDifference({"id": 7}, "extra")], extra_count=1, error="table missing on the target")
    assert deletable_keys(broken) == []
    assert deletable_keys(_diff()) == []


def test_keys_back_on_the_source_are_kept():
    keys = [{"id": 1}, {"id": 2}, {"id": 3}]
    assert still_absent(keys, present_on_source={1}) == [{"id": 1}, {"id": 3}]
    assert still_absent(keys, present_on_source=set()) == keys
    assert still_absent(keys, present_on_source={0, 1, 2}) == []


def test_batches_cover_every_key_once():
    keys = list(range(1234))
    chunks = batches(keys, 500)
    assert [len(c) for c in chunks] == [500, 500, 234]
    assert [k for c in chunks for k in c] == keys
    assert batches([], 500) == []


def test_steps_redeploy_then_snapshot_then_deletes_then_validate():
    order = [task_id for task_id, _why in STEPS]
    assert order == ["redeploy_connectors", "request_resync", "wait_resync", "remove_lost_deletes", "validate"]
    assert all(why for _task_id, why in STEPS)


def test_plan_puts_keyless_tables_on_the_native_channel_only():
    plan = plan_recovery([_table("orders", ["id"])], [_table("audit", [])])
    assert plan.snapshot == ["public.orders"] and plan.native == ["public.audit"]
    assert plan.steps == [task_id for task_id, _ in STEPS]


def test_the_dag_wires_the_steps_in_this_order():
    from airflow.dag_processing.dagbag import DagBag

    dag = DagBag(dag_folder=str(REPO / "dags" / "pg_migration_recover.py")).dags["pg_migration_recover"]
    order = [task_id for task_id, _ in STEPS]
    for upstream, downstream in zip(order, order[1:], strict=False):
        assert dag.get_task(downstream).upstream_task_ids == {upstream}
