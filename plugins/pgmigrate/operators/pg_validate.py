"""The `pg_validate` tasks: schema compare, row-level data compare (mapped per table, so a rerun redoes
only the failed tables), Great Expectations checkpoint, report. Thin: the work is in `schema_compare`,
`row_diff`, `ge_validation` and `migration_report`.

Each mapped compare pushes its result under the XCom key `diff` before it fails, so the `report` task
(trigger rule all_done) sees every table, differing or not.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from airflow.sdk.exceptions import AirflowFailException

from pgmigrate.core.params import VALIDATE_PHASES, MigrationParams, ValidateParams
from pgmigrate.operators.base import MigrationTaskOperator


class ValidationOperator(MigrationTaskOperator):
    """Base of the pg_validate tasks: this run's `ValidateParams`; the migrations it covers are recorded ones."""

    ui_color = "#eef7ee"
    params_class = ValidateParams
    template_fields = ("items",)

    def __init__(self, *, items: Any = None, **kwargs: Any) -> None:
        """`items`: the tables `select_tables` chose (its XComArg, wired in the DAG file)."""
        super().__init__(**kwargs)
        self.items = items

    def state(self, migration_id: str) -> dict[str, Any]:
        return self.recorded_state(migration_id)

    def migration_params(self, migration_id: str) -> MigrationParams:
        return self.recorded_params(migration_id)


class SelectValidationTargetsOperator(ValidationOperator):
    """Which migrations and tables this run validates: the one named, or (the weekly run) every migration
    streaming or cut over. Returns the table list the data compare is mapped over."""

    def execute(self, context: Any) -> list[dict[str, str]]:
        from pgmigrate.core.migration_tables import resolve_tables

        run = self.run_params(context)
        store = self.store()
        if run.migration_id:
            self.state(run.migration_id)  # fails with the reason when it is unknown
            migrations = [run.migration_id]
        else:
            migrations = [r["migration_id"] for r in store.migrations(list(VALIDATE_PHASES))]
        items, unreachable = [], {}
        for migration_id in migrations:
            params = self.migration_params(migration_id)
            try:
                tables = resolve_tables(self.endpoint(params.source_conn_id), params)
            except Exception as exc:
                if run.migration_id:
                    raise
                # The weekly run: one broken migration must not stop the others being validated.
                self.log.error("cannot read the source of %s: %s", migration_id, exc)
                unreachable[migration_id] = str(exc).splitlines()[0][:300]
                continue
            known = {t.ref.qualified for t in tables}
            wanted = [f"{s}.{n}" for s, n in run.tables] or sorted(known)
            unknown = [t for t in wanted if t not in known]
            if unknown:
                raise AirflowFailException(f"not tables of migration {migration_id}: {', '.join(unknown)}")
            items.extend({"migration_id": migration_id, "table": t} for t in wanted)
        context["ti"].xcom_push(key="unreachable", value=unreachable)
        self.log.info(
            "validating %d migrations, %d tables: %s",
            len(migrations),
            len(items),
            ", ".join(migrations) or "none (no migration is streaming or cut over)",
        )
        return items


class SchemaCompareOperator(ValidationOperator):
    """Tables, columns and types, keys, indexes, constraints, sequences: source vs target; owners and grants
    (`roles`); the large objects; and the contents of the materialized views (`materialized_views`: a stale source
    view is named, not failed)."""

    def execute(self, context: Any) -> dict:
        from pgmigrate.schema.large_objects import compare_large_objects
        from pgmigrate.schema.materialized_views import compare_materialized_views
        from pgmigrate.schema.roles import compare_migration_privileges
        from pgmigrate.schema.schema_compare import compare_schemas, format_schema_differences

        migration_ids = sorted({i["migration_id"] for i in self.items or []})
        results, view_results = {}, {}
        for migration_id in migration_ids:
            state = self.state(migration_id)
            params = MigrationParams.from_dict(state["params"])
            differences = compare_schemas(
                self.endpoint(params.source_conn_id), self.endpoint(params.target_conn_id), list(params.schemas)
            )
            if state["phase"] in ("caught_up", "streaming"):
                # Until the cutover validates them, foreign keys may stay NOT VALID on the target by design
                # (post_data: a child row can arrive before its parent while streaming).
                pending = [d for d in differences if d.kind == "constraint_validated" and d.target == "NOT VALID"]
                if pending:
                    self.log.info(
                        "%s: %d foreign keys NOT VALID on the target until the cutover validates them: %s",
                        migration_id,
                        len(pending),
                        ", ".join(d.object for d in pending),
                    )
                differences = [d for d in differences if d not in pending]
            self.log.info("schema of %s: %s", migration_id, format_schema_differences(differences))
            results[migration_id] = [d.as_dict() for d in differences]
            views = compare_materialized_views(
                self.endpoint(params.source_conn_id), self.endpoint(params.target_conn_id), list(params.schemas)
            )
            for view in views:
                self.log.log(logging.INFO if view.ok else logging.ERROR, "materialized view %s", view.describe())
            results[migration_id] += [{"kind": "materialized_view", **v.as_dict()} for v in views if not v.ok]
            privileges = compare_migration_privileges(
                self.endpoint(params.source_conn_id), self.endpoint(params.target_conn_id), params
            )
            for kind, name, on_source, on_target in privileges:
                self.log.error("%s: %s %s: source %s | target %s", migration_id, kind, name, on_source, on_target)
            results[migration_id] += [
                {"kind": kind, "object": name, "source": on_source, "target": on_target}
                for kind, name, on_source, on_target in privileges
            ]
            if state["phase"] != "cut_over":  # after the cutover the target's large objects are the application's
                large_objects = compare_large_objects(
                    self.endpoint(params.source_conn_id), self.endpoint(params.target_conn_id)
                )
                for difference in large_objects:
                    self.log.error("%s: %s", migration_id, difference)
                results[migration_id] += [{"kind": "large_object", "object": d} for d in large_objects]
            view_results[migration_id] = [v.as_dict() for v in views]
        context["ti"].xcom_push(key="schema", value=results)
        context["ti"].xcom_push(key="materialized_views", value=view_results)
        differing = {m: len(d) for m, d in results.items() if d}
        if differing:
            raise AirflowFailException(f"schemas differ: {differing} differences per migration (listed in the log)")
        return results


class TableDataCompareOperator(ValidationOperator):
    """One table of one migration: chunk checksums, then the differing rows (mapped over `item`)."""

    template_fields = ("item",)

    def __init__(self, *, item: dict[str, str], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.item = item

    def execute(self, context: Any) -> dict:
        from pgmigrate.core.migration_tables import resolve_tables
        from pgmigrate.validate.row_diff import diff_table, format_diff

        run = self.run_params(context)
        params = self.migration_params(self.item["migration_id"])
        source, target = self.endpoint(params.source_conn_id), self.endpoint(params.target_conn_id)
        table = next((t for t in resolve_tables(source, params) if t.ref.qualified == self.item["table"]), None)
        if table is None:
            raise AirflowFailException(f"{self.item['table']} is no longer on the source of {params.migration_id}")
        self.log.info("comparing %s of %s (%s mode)", table.ref.qualified, params.migration_id, run.mode)
        diff = diff_table(source, target, table, mode=run.mode, sample_size=run.sample_size, row_diff=run.row_diff)
        result = {"migration_id": params.migration_id, **diff.as_dict()}
        context["ti"].xcom_push(key="diff", value=result)
        self.log.info("%s", format_diff([diff]))
        if not diff.ok:
            raise AirflowFailException(f"{table.ref.qualified} differs: {format_diff([diff])}")
        return result


class GreatExpectationsOperator(ValidationOperator):
    """Suites generated from the source (kept under include/great_expectations/<id>, or under
    $PGMIGRATE_ARTIFACTS_URL/great_expectations/<id> with Data Docs), run on the target."""

    def execute(self, context: Any) -> dict:
        from pgmigrate.core.migration_tables import resolve_tables
        from pgmigrate.validate.ge_live import check_live

        run = self.run_params(context)
        items = self.items or []
        results = {}
        if not run.great_expectations:
            self.log.info("great_expectations=false: no checkpoint")
            return results
        for migration_id in sorted({i["migration_id"] for i in items}):
            params = self.migration_params(migration_id)
            source, target = self.endpoint(params.source_conn_id), self.endpoint(params.target_conn_id)
            wanted = {i["table"] for i in items if i["migration_id"] == migration_id}
            tables = [t for t in resolve_tables(source, params) if t.ref.qualified in wanted]
            result = check_live(source, target, migration_id, tables)
            results[migration_id] = result
            for table in result["tables"]:
                failures = "; ".join(
                    f"{f['expectation']}({f.get('column') or ','.join(f.get('columns') or [])}) "
                    f"observed {f.get('observed_value')}"
                    for f in table["failures"][:5]
                )
                self.log.info("GE %s: %s %s", table["table"], table["status"], failures)
            if result["inconclusive"]:
                self.log.warning(
                    "GE inconclusive for %s: the source changed during every check (the row diff decides for them)",
                    ", ".join(result["inconclusive"]),
                )
            self.log.info(
                "Great Expectations for %s: %s; Data Docs %s",
                migration_id,
                "passed" if result["success"] else "FAILED",
                result.get("data_docs"),
            )
        context["ti"].xcom_push(key="ge", value=results)
        failed = [m for m, r in results.items() if not r["success"]]
        if failed:
            raise AirflowFailException(f"Great Expectations checkpoint failed for {', '.join(failed)} (see Data Docs)")
        return results


class ValidationReportOperator(ValidationOperator):
    """Per migration: the results recorded as its last validation, the HTML + markdown report written.
    Fails when anything differed, naming the tables and their first keys."""

    def __init__(self, *, results_from: dict[str, str], **kwargs: Any) -> None:
        """`results_from`: the task ids of `data_compare`, `schema_compare`, `great_expectations` and
        `select_tables` (wired in the DAG file). Their results are XComs pushed before they fail, read by id so a
        task that failed early or was skipped leaves its part empty instead of failing the report."""
        super().__init__(**kwargs)
        self.results_from = dict(results_from)

    def _pushed(self, context: Any, task: str, key: str) -> Any:
        return context["ti"].xcom_pull(task_ids=self.results_from[task], key=key)

    def execute(self, context: Any) -> dict:
        from pgmigrate.report.migration_report import write_report
        from pgmigrate.report.report_data import collect_report_data, default_report_dir

        diffs = [d for d in (self._pushed(context, "data_compare", "diff") or []) if d]
        schema = self._pushed(context, "schema_compare", "schema") or {}
        ge = self._pushed(context, "great_expectations", "ge") or {}
        items = self.items or []
        store = self.store()
        reports, problems = {}, []
        for migration_id in sorted({i["migration_id"] for i in items}):
            tables = [d for d in diffs if d["migration_id"] == migration_id]
            missing = {i["table"] for i in items if i["migration_id"] == migration_id} - {d["table"] for d in tables}
            record = {
                "at": datetime.now(UTC).isoformat(),
                "run_id": context["run_id"],
                "tables": tables,
                "not_compared": sorted(missing),
                "schema_differences": schema.get(migration_id, []),
                "great_expectations": ge.get(migration_id),
            }
            store.upsert(migration_id, last_validation=record)
            problems_here = _problems(record)
            if problems_here:
                problems.append(f"{migration_id}: {problems_here}")
                store.record_event(migration_id, "validation_failed", problems_here)
            else:
                store.record_event(migration_id, "validated", f"pg_validate: {len(tables)} tables identical")
            paths = write_report(collect_report_data(store.endpoint, migration_id), default_report_dir())
            reports[migration_id] = paths["html"]
            self.log.info("report for %s: %s", migration_id, paths["html"])
        unreachable = self._pushed(context, "select_tables", "unreachable") or {}
        for migration_id, error in unreachable.items():
            problems.append(f"{migration_id}: source unreachable ({error})")
            store.record_event(migration_id, "validation_failed", f"pg_validate could not read the source: {error}")
        if problems:
            raise AirflowFailException("validation found differences: " + " | ".join(problems))
        return reports


def _problems(record: dict) -> str:
    """What is wrong in one migration's validation record, in a line; empty when nothing is."""
    problems = [f"{d['table']} differs ({_first_keys(d)})" for d in record["tables"] if not d.get("ok")]
    if record["not_compared"]:
        problems.append(f"not compared (task failed): {', '.join(record['not_compared'])}")
    if record["schema_differences"]:
        problems.append(f"{len(record['schema_differences'])} schema differences")
    if (record["great_expectations"] or {}).get("success") is False:
        problems.append("Great Expectations checkpoint failed")
    return "; ".join(problems)


def _first_keys(diff: dict, limit: int = 3) -> str:
    parts = []
    for kind in ("missing", "extra", "changed"):
        keys = [", ".join(f"{k}={v}" for k, v in (row.get("key") or {}).items()) for row in (diff.get(kind) or [])]
        if keys:
            parts.append(f"{kind}: " + "; ".join(keys[:limit]) + (" …" if len(keys) > limit else ""))
    return ", ".join(parts) or "counts/checksums differ"
