"""Run the migration's GE suites on the TARGET through one GE Checkpoint and build GE Data Docs.

The checkpoint, its validation definitions and the PostgreSQL datasource are saved in the migration's GE
context (`ge_suites.open_context`), so a user can rerun them with GE alone (`context.checkpoints.get(...).run()`,
supplying the password variable). The datasource's connection string holds `${PGMIGRATE_GX_TARGET_PASSWORD}`,
never the password: GE substitutes it at connect time from the `runtime_environment` given to the context
(or from the environment variable of that name when a user reruns by hand), so great_expectations.yml and
config_variables.yml stay free of secrets.

Validation results and Data Docs go to the context's `uncommitted/` folder (git-ignored); suites, validation
definitions, the checkpoint and great_expectations.yml are meant to be committed with the migration.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, TypedDict
from urllib.parse import quote, unquote, urlencode, urlparse

from pgmigrate.core.catalog import TableInfo
from pgmigrate.core.endpoints import PgEndpoint
from pgmigrate.validate.ge_suites import open_context, suite_name

log = logging.getLogger(__name__)

DATASOURCE_NAME = "target"
BATCH_DEFINITION_NAME = "whole_table"
PASSWORD_VARIABLE = "PGMIGRATE_GX_TARGET_PASSWORD"
# Enough to name the failing rows in Data Docs without pulling whole columns into the result.
RESULT_FORMAT = {"result_format": "SUMMARY", "partial_unexpected_count": 10}


class ExpectationFailure(TypedDict):
    expectation: str  # GE expectation type, e.g. expect_column_values_to_not_be_null
    column: str | None
    columns: list[str] | None  # multi-column expectations (compound keys, column lists)
    observed_value: Any
    unexpected_count: int | None
    partial_unexpected_list: list | None
    exception: str | None  # set when GE could not evaluate the expectation


class TableSummary(TypedDict):
    table: str
    suite: str
    success: bool
    evaluated: int
    successful: int
    unsuccessful: int
    failures: list[ExpectationFailure]


class CheckpointSummary(TypedDict):
    success: bool
    migration_id: str
    checkpoint: str
    run_id: str
    data_docs_index: str | None  # local path of Data Docs' index.html
    tables: list[TableSummary]


def connection_string_template(target: PgEndpoint) -> str:
    """SQLAlchemy URL of the target with the password as a GE config variable reference."""
    user = quote(target.user, safe="")
    query: dict[str, str] = {"application_name": "pgmigrate-gx", "connect_timeout": "10"}
    if target.settings:
        query["options"] = " ".join(f"-c {name}={value}" for name, value in target.settings)
    password = f":${{{PASSWORD_VARIABLE}}}" if target.password else ""
    host = f"[{target.host}]" if ":" in target.host else target.host
    return (
        f"postgresql+psycopg2://{user}{password}@{host}:{target.port}/{quote(target.dbname, safe='')}"
        f"?{urlencode(query, quote_via=quote)}"
    )


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def _exception_message(info: dict) -> str | None:
    """GE puts exception info either at the top or per metric, depending on where evaluation failed."""
    if info.get("raised_exception"):
        return info.get("exception_message")
    nested = (v for v in info.values() if isinstance(v, dict) and v.get("raised_exception"))
    return next((v.get("exception_message") for v in nested), None)


def _failure(result: Any) -> ExpectationFailure:
    config = result.expectation_config
    kwargs = config.kwargs
    details = result.result or {}
    exception = _exception_message(result.exception_info or {})
    return _jsonable(
        {
            "expectation": config.type,
            "column": kwargs.get("column"),
            "columns": kwargs.get("column_list"),
            "observed_value": details.get("observed_value"),
            "unexpected_count": details.get("unexpected_count"),
            "partial_unexpected_list": details.get("partial_unexpected_list"),
            "exception": exception,
        }
    )


def _ensure_batch_definition(datasource: Any, table: TableInfo) -> Any:
    """The table's asset and whole-table batch definition, reused when already saved (stable ids, no churn in
    the committed config)."""
    name = suite_name(table)
    try:
        asset = datasource.get_asset(name)
        if (asset.schema_name, asset.table_name) != (table.ref.schema, table.ref.name):
            datasource.delete_asset(name)
            raise LookupError(name)
    except LookupError:
        asset = datasource.add_table_asset(name, table_name=table.ref.name, schema_name=table.ref.schema)
    try:
        return asset.get_batch_definition(BATCH_DEFINITION_NAME)
    except KeyError:
        return asset.add_batch_definition_whole_table(BATCH_DEFINITION_NAME)


def _ensure_datasource(context: Any, target: PgEndpoint) -> Any:
    template = connection_string_template(target)
    try:
        datasource = context.data_sources.get(DATASOURCE_NAME)
    except (KeyError, ValueError):
        datasource = None
    if datasource is not None and str(datasource.connection_string) == template:
        return datasource
    if datasource is not None:
        context.data_sources.delete(DATASOURCE_NAME)
    return context.data_sources.add_postgres(DATASOURCE_NAME, connection_string=template)


def _close_engines(datasources: list[Any]) -> None:
    """Dispose the SQLAlchemy pools GE opened (the datasource's own engine, used to check tables, and its
    execution engine's): a long-lived worker must not keep sessions on the target. Creating an engine to
    dispose it opens no connection."""
    for datasource in {id(d): d for d in datasources}.values():
        datasource.get_engine().dispose()
        datasource.get_execution_engine().close()


def run_checkpoint(
    target: PgEndpoint, migration_id: str, tables: list[TableInfo], root: Path | None = None
) -> CheckpointSummary:
    """Validate each table of the target against its suite in one checkpoint run; update Data Docs.

    Returns a JSON-able `CheckpointSummary` (one entry per table, the failed expectations with their column and
    observed value) for XCom and the migration report. The suites must exist (`ge_suites.generate_suites`)."""
    import great_expectations as gx

    runtime = {PASSWORD_VARIABLE: quote(target.password, safe="")}
    context = open_context(migration_id, root, runtime_environment=runtime)
    known_suites = {s.name for s in context.suites.all()}
    missing = [suite_name(t) for t in tables if suite_name(t) not in known_suites]
    if missing:
        raise LookupError(
            f"no GE suite for {', '.join(missing)} in {context.root_directory}: run generate_suites first"
        )
    datasource = _ensure_datasource(context, target)
    definitions: list[Any] = []
    try:
        for table in tables:
            name = suite_name(table)
            definition = gx.ValidationDefinition(
                name=name, data=_ensure_batch_definition(datasource, table), suite=context.suites.get(name)
            )
            definitions.append(context.validation_definitions.add_or_update(definition))
        checkpoint = context.checkpoints.add_or_update(
            gx.Checkpoint(
                name=f"{migration_id}-target",
                validation_definitions=definitions,
                actions=[gx.checkpoint.UpdateDataDocsAction(name="update_data_docs")],
                result_format=RESULT_FORMAT,
            )
        )
        log.info("GE checkpoint %s: %d tables on %s", checkpoint.name, len(tables), target.label)
        result = checkpoint.run()
    finally:
        _close_engines([datasource, *(d.data.data_asset.datasource for d in definitions)])
    by_suite = {r.suite_name: r for r in result.run_results.values()}
    tables_summary: list[TableSummary] = []
    for table in tables:
        validation = by_suite[suite_name(table)]
        failures = [_failure(r) for r in validation.results if not r.success]
        stats = validation.statistics
        tables_summary.append(
            {
                "table": table.ref.qualified,
                "suite": suite_name(table),
                "success": bool(validation.success),
                "evaluated": int(stats["evaluated_expectations"]),
                "successful": int(stats["successful_expectations"]),
                "unsuccessful": int(stats["unsuccessful_expectations"]),
                "failures": failures,
            }
        )
    sites = context.get_docs_sites_urls(only_if_exists=True)
    index = next((s["site_url"] for s in sites if s.get("site_url")), None)
    return {
        "success": bool(result.success),
        "migration_id": migration_id,
        "checkpoint": checkpoint.name,
        "run_id": str(result.run_id),
        "data_docs_index": unquote(urlparse(index).path) if index else None,
        "tables": tables_summary,
    }
