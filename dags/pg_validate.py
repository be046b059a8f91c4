"""`pg_validate`: deep validation of a migration: schema, row-level data diff, Great Expectations, report."""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import Param, dag

from pgmigrate.operators.pg_validate import (
    GreatExpectationsOperator,
    SchemaCompareOperator,
    SelectValidationTargetsOperator,
    TableDataCompareOperator,
    ValidationReportOperator,
)

DOC = """
### Validation: which rows differ, and a report to hand to stakeholders

Runs weekly for every migration that is streaming or cut over, and on demand for one
(`scripts/migration validate --migration-id ID`, or trigger with a `migration_id`).

| task | what it does |
|---|---|
| `select_tables` | the migrations (param, or all streaming / cut over) and their tables |
| `schema_compare` | tables, columns and types, keys, indexes, constraints, sequences: source vs target |
| `data_compare` | one mapped task per table: key-range checksums, bisection to the rows missing / extra / changed |
| `great_expectations` | suites from the source (`include/great_expectations/<id>`, editable) run on the target |
| `report` | results stored as the migration's last validation; HTML + markdown report written (path in the log) |

`data_compare` re-checks differing rows after a pause, so rows still in flight are not reported;
the checkpoint builds GE Data Docs (linked from the report). A failed `data_compare` map index is
one table: after fixing it (e.g. `scripts/migration resync`), clear just the failed tasks and
`report`; the other tables are not compared again. `mode=sample` compares `sample_size` random keys
per table in full instead of every row.
"""

PARAMS = {
    "migration_id": Param("", type="string", description="Empty: every migration streaming or cut over"),
    "tables": Param([], type="array", items={"type": "string"}, description="schema.table; empty: all tables"),
    "mode": Param("full", type="string", enum=["full", "sample"], description="full: every row; sample: N keys"),
    "sample_size": Param(1000, type="integer", minimum=1, description="Keys per table in sample mode"),
    "row_diff": Param(True, type="boolean", description="Find the differing rows (not only the chunks)"),
    "great_expectations": Param(True, type="boolean", description="Run the GE checkpoint on the target"),
}


@dag(
    dag_id="pg_validate",
    schedule="@weekly",
    catchup=False,
    max_active_runs=1,
    params=PARAMS,
    tags=["migration", "validation"],
    doc_md=DOC,
    default_args={"retries": 1, "retry_delay": timedelta(seconds=30)},
)
def pg_validate():
    select = SelectValidationTargetsOperator(task_id="select_tables")
    schema = SchemaCompareOperator(task_id="schema_compare", items=select.output)
    data = TableDataCompareOperator.partial(
        task_id="data_compare", map_index_template="{{ task.item['migration_id'] }} {{ task.item['table'] }}"
    ).expand(item=select.output)
    ge = GreatExpectationsOperator(task_id="great_expectations", items=select.output)
    report = ValidationReportOperator(
        task_id="report",
        trigger_rule="all_done",
        items=select.output,
        results_from={
            "data_compare": data.task_id,
            "schema_compare": schema.task_id,
            "great_expectations": ge.task_id,
            "select_tables": select.task_id,
        },
    )
    select >> [schema, data, ge] >> report


pg_validate()
