"""Great Expectations suites that describe the source's tables, for checking the target with GE.

One GE File Data Context per migration under `<root>/<migration_id>/gx/` (the product's root is
`include/great_expectations`), so users can read, edit and rerun the suites with GE's own tools. Each table
gets one suite named `schema.table`, built from facts read on the SOURCE with plain SQL (one scan per table,
plus the catalog): row count, the column list, column types (as GE names them), NOT NULL columns, primary-key
uniqueness, the labels of enum types (pg_enum), and min/max of numeric, date and timestamp columns.

Regeneration policy: a suite that exists is left alone unless `regenerate=True`. Regenerating re-profiles the
source and replaces only the expectations this module generated (marked `meta.pgmigrate = "generated"`); any
expectation a user added (or whose marker they removed, to keep an edit) stays. Generated expectations get ids
derived from the suite, type and column, so regenerating an unchanged source writes the same files.

Row counts and min/max are facts of the source at generation time. While the application keeps writing, the
target legitimately trails or leads them, so: either regenerate right before the checkpoint at a quiet point
(after drain with writes paused, or after cutover) where an exact match is the right bar, or give
`row_count_tolerance` (a fraction: 0.01 accepts +-1 %) for a check while live; min/max stay exact either way
(they are how GE sees a wrong value), so a live check of growing tables should regenerate first.

GE is imported inside functions only: importing it takes seconds and Airflow parses DAG files often.
"""

from __future__ import annotations

import datetime as dt
import decimal
import math
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql

from pgmigrate.core.artifacts import local_default
from pgmigrate.core.catalog import Column, TableInfo
from pgmigrate.core.endpoints import PgEndpoint
from pgmigrate.core.naming import validate_migration_id
from pgmigrate.validate.checksums import set_canonical_session

if TYPE_CHECKING:
    from great_expectations.data_context import FileDataContext

DEFAULT_ROOT = local_default("great_expectations")  # include/great_expectations
# Marks what this module wrote; expectations without it belong to the user and survive regeneration.
GENERATED_MARK = {"pgmigrate": "generated"}
_ID_NAMESPACE = uuid.UUID("6f1b1c8e-3d55-4c1e-9a51-2f3a6f0c9e21")

# Types whose min/max GE compares reliably: numbers, dates and timestamps (GE parses the stored ISO text back).
RANGE_TYPE_OIDS = frozenset({20, 21, 23, 700, 701, 1700, 1082, 1114, 1184})

_ENUM_LABELS_SQL = "SELECT enumlabel FROM pg_enum WHERE enumtypid = %(oid)s ORDER BY enumsortorder"


@dataclass(frozen=True)
class ColumnProfile:
    name: str
    min: Any = None
    max: Any = None
    enum_labels: tuple[str, ...] | None = None
    type_name: str | None = None  # as GE's column_types metric renders it; None: GE cannot name it


@dataclass(frozen=True)
class TableProfile:
    """What the suite of one table is built from, read from the source."""

    suite_name: str
    rows: int
    table: TableInfo
    columns: list[ColumnProfile] = field(default_factory=list)


def suite_name(table: TableInfo) -> str:
    return f"{table.ref.schema}.{table.ref.name}"


def context_dir(migration_id: str, root: Path | None = None) -> Path:
    """Project root of the migration's GE context (GE itself lives in its `gx/` folder)."""
    return Path(root or DEFAULT_ROOT) / validate_migration_id(migration_id)


def open_context(migration_id: str, root: Path | None = None, runtime_environment: dict[str, str] | None = None):
    """The migration's GE File Data Context, created on first use with analytics and progress bars off (no
    network calls from a worker, no progress bars in task logs). `runtime_environment` feeds `${VAR}`
    substitution without writing the values anywhere."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    project = context_dir(migration_id, root)
    project.mkdir(parents=True, exist_ok=True)
    context = gx.get_context(mode="file", project_root_dir=project, runtime_environment=runtime_environment or {})
    if context.config.analytics_enabled is not False or context.variables.progress_bars is None:
        context.variables.progress_bars = ProgressBarsConfig(globally=False)
        context.enable_analytics(False)  # saves the variables too
    return context


def _float_bracket(value: int | decimal.Decimal) -> tuple[float, float]:
    """The nearest floats below and above an exact number. GE keeps bounds as JSON floats and compares them with
    what it reads (int, Decimal: exact comparisons in Python), so a bigint past 2**53 or a numeric(38,10) needs
    the bracket, not float(value), to match itself."""
    nearest = float(value)
    low = nearest if nearest <= value else math.nextafter(nearest, -math.inf)
    high = nearest if nearest >= value else math.nextafter(nearest, math.inf)
    return low, high


def _range_bounds(value: Any, type_oid: int) -> tuple[Any, Any] | None:
    """(min_value, max_value) that GE can store in JSON and compare with what it reads from PostgreSQL; None
    when the value cannot be expressed (NULL: empty table, NaN, infinities)."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return _float_bracket(value)
    if isinstance(value, decimal.Decimal):
        return _float_bracket(value) if value.is_finite() else None
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        if type_oid == 700:
            # real: the two sides may print it with different extra_float_digits ('1.1' vs '1.10000002'); allow
            # float32's own precision.
            slack = max(abs(value), 1e-38) * 2**-23
            return value - slack, value + slack
        return value, value
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat(), value.isoformat()  # GE parses these back when the column reads as a date/time
    return None


def reflected_type_names(source: PgEndpoint, tables: list[TableInfo]) -> dict[tuple[str, str], dict[str, str]]:
    """Column type names exactly as GE's `table.column_types` metric renders them on PostgreSQL (SQLAlchemy
    reflection compiled with the PostgreSQL dialect, compared case-insensitively): read on the source the same
    way GE will read the target, so ExpectColumnValuesToBeOfType compares like with like. Types SQLAlchemy does
    not know (extension types) are left out."""
    import sqlalchemy as sa

    engine = sa.create_engine("postgresql+psycopg://", creator=lambda: source.connect(), poolclass=sa.pool.NullPool)
    out: dict[tuple[str, str], dict[str, str]] = {}
    try:
        inspector = sa.inspect(engine)
        for table in tables:
            names = {}
            for column in inspector.get_columns(table.ref.name, schema=table.ref.schema):
                if isinstance(column["type"], sa.types.NullType):
                    continue
                try:
                    names[column["name"]] = str(column["type"].compile(dialect=engine.dialect))
                except sa.exc.CompileError:
                    continue
            out[(table.ref.schema, table.ref.name)] = names
    finally:
        engine.dispose()
    return out


def profile_table(conn: psycopg.Connection, table: TableInfo, type_names: dict[str, str] | None = None) -> TableProfile:
    """Row count and min/max in one scan, enum labels from pg_enum. `conn` has the canonical session settings;
    `type_names` come from `reflected_type_names`."""
    range_columns = [c for c in table.columns if c.type_oid in RANGE_TYPE_OIDS]
    aggregates: list[sql.Composable] = [sql.SQL("count(*)")]
    for column in range_columns:
        ident = sql.Identifier(column.name)
        aggregates += [sql.SQL("min({})").format(ident), sql.SQL("max({})").format(ident)]
    with conn.cursor() as cur:
        cur.execute(sql.SQL("SELECT {} FROM {}").format(sql.SQL(", ").join(aggregates), table.ref.ident))
        row = cur.fetchone()
        extremes = {c.name: (row[1 + 2 * i], row[2 + 2 * i]) for i, c in enumerate(range_columns)}
        columns = []
        for column in table.columns:
            labels = None
            if column.type_kind == "e":
                cur.execute(_ENUM_LABELS_SQL, {"oid": column.type_oid})
                labels = tuple(r[0] for r in cur.fetchall())
            low, high = extremes.get(column.name, (None, None))
            columns.append(ColumnProfile(column.name, low, high, labels, (type_names or {}).get(column.name)))
    return TableProfile(suite_name(table), row[0], table, columns)


def _expectation_id(suite: str, kind: str, *parts: str) -> str:
    return str(uuid.uuid5(_ID_NAMESPACE, "\x1f".join((suite, kind, *parts))))


def build_expectations(profile: TableProfile, row_count_tolerance: float = 0.0) -> list:
    """GE expectation objects for one table, in a fixed order, each with a stable id and the generated mark."""
    import great_expectations.expectations as gxe

    name, table = profile.suite_name, profile.table
    out: list = []

    def add(expectation: Any, *id_parts: str) -> None:
        expectation.id = _expectation_id(name, expectation.expectation_type, *id_parts)
        expectation.meta = dict(GENERATED_MARK)
        out.append(expectation)

    if row_count_tolerance > 0:
        low = max(0, math.floor(profile.rows * (1 - row_count_tolerance)))
        high = math.ceil(profile.rows * (1 + row_count_tolerance))
        add(gxe.ExpectTableRowCountToBeBetween(min_value=low, max_value=high))
    else:
        add(gxe.ExpectTableRowCountToEqual(value=profile.rows))
    add(gxe.ExpectTableColumnsToMatchOrderedList(column_list=[c.name for c in table.columns]))
    if len(table.primary_key) == 1:
        add(gxe.ExpectColumnValuesToBeUnique(column=table.primary_key[0]), table.primary_key[0])
    elif table.primary_key:
        add(gxe.ExpectCompoundColumnsToBeUnique(column_list=list(table.primary_key)), *table.primary_key)
    by_name: dict[str, Column] = {c.name: c for c in table.columns}
    for column_profile in profile.columns:
        column = by_name[column_profile.name]
        if column_profile.type_name:
            add(gxe.ExpectColumnValuesToBeOfType(column=column.name, type_=column_profile.type_name), column.name)
        if column.not_null:
            add(gxe.ExpectColumnValuesToNotBeNull(column=column.name), column.name)
        if column_profile.enum_labels is not None:
            add(
                gxe.ExpectColumnValuesToBeInSet(column=column.name, value_set=list(column_profile.enum_labels)),
                column.name,
            )
        low = _range_bounds(column_profile.min, column.type_oid)
        high = _range_bounds(column_profile.max, column.type_oid)
        if low and high:
            add(gxe.ExpectColumnMinToBeBetween(column=column.name, min_value=low[0], max_value=low[1]), column.name)
            add(gxe.ExpectColumnMaxToBeBetween(column=column.name, min_value=high[0], max_value=high[1]), column.name)
    return out


def _is_generated(expectation: Any) -> bool:
    return (expectation.meta or {}).get("pgmigrate") == GENERATED_MARK["pgmigrate"]


def write_suite(context: FileDataContext, profile: TableProfile, row_count_tolerance: float = 0.0) -> Path:
    """Create the table's suite, or replace its generated expectations and keep the user's own ones."""
    import great_expectations as gx
    from great_expectations.exceptions import DataContextError

    generated = build_expectations(profile, row_count_tolerance)
    meta = {"pgmigrate": {"table": profile.suite_name, "generated_from": "source"}}
    try:
        suite = context.suites.get(profile.suite_name)
    except DataContextError:  # not there yet
        suite = None
    if suite is None:
        suite = context.suites.add(gx.ExpectationSuite(name=profile.suite_name, meta=meta))
    # Assigned, not add_expectation()'d: that would replace the stable ids with random ones.
    suite.expectations = [*generated, *(e for e in suite.expectations if not _is_generated(e))]
    suite.meta = {**suite.meta, **meta}
    suite.save()
    return suite_path(context, profile.suite_name)


def suite_path(context: FileDataContext, name: str) -> Path:
    """Where GE's expectations store keeps the suite: it turns each '.' of the name into a folder."""
    *folders, last = name.split(".")
    return Path(context.root_directory, "expectations", *folders, f"{last}.json")


def generate_suites(
    source: PgEndpoint,
    tables: list[TableInfo],
    migration_id: str,
    root: Path | None = None,
    *,
    regenerate: bool = False,
    row_count_tolerance: float = 0.0,
) -> list[Path]:
    """One suite per table from the source's current data; returns the suite files (existing ones included).

    Existing suites are kept as they are (users may have edited them) unless `regenerate=True`, which
    re-profiles and replaces the generated expectations only (see the module docstring)."""
    if row_count_tolerance < 0:
        raise ValueError(f"row_count_tolerance must be >= 0 (a fraction, e.g. 0.01), not {row_count_tolerance}")
    context = open_context(migration_id, root)
    existing = {s.name for s in context.suites.all()}
    paths = []
    todo = [t for t in tables if regenerate or suite_name(t) not in existing]
    if todo:
        types = reflected_type_names(source, todo)
        with source.connect(autocommit=True) as conn:
            set_canonical_session(conn)
            profiles = {suite_name(t): profile_table(conn, t, types[(t.ref.schema, t.ref.name)]) for t in todo}
    else:
        profiles = {}
    for table in tables:
        name = suite_name(table)
        if name in profiles:
            write_suite(context, profiles[name], row_count_tolerance)
        paths.append(suite_path(context, name))
    return paths
