"""The parameters of a migration run, validated once, the same way in the DAG, CLI and tests.

Airflow's trigger form validates the JSON schema; this module validates meaning (a table name's
form, a known snapshot method) and is what the tasks use, so a run triggered through the API with a
bad value fails in `preflight` with a message naming the parameter and the fix.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from pgmigrate.core.naming import MIGRATION_ID_PATTERN, MigrationNames, validate_migration_id

SNAPSHOT_METHODS = ("copy", "debezium")
_TABLE_RE = re.compile(r'^(?:"[^"]+"|[^."]+)\.(?:"[^"]+"|[^."]+)$')


class InvalidParams(ValueError):
    pass


def parse_table_name(name: str) -> tuple[str, str]:
    """`schema.table` (either part may be double-quoted to hold dots) -> (schema, table)."""
    if not isinstance(name, str) or not _TABLE_RE.match(name.strip()):
        raise InvalidParams(
            f"table {name!r} in `tables` is not of the form schema.table (quote a part that holds a dot: "
            '"my.schema".orders).'
        )
    schema, table = re.findall(r'"[^"]+"|[^."]+', name.strip())
    return schema.strip('"'), table.strip('"')


@dataclass(frozen=True)
class MigrationParams:
    migration_id: str
    source_conn_id: str = "migration_source"
    target_conn_id: str = "migration_target"
    schemas: tuple[str, ...] = ("public",)
    tables: tuple[tuple[str, str], ...] = ()
    max_lag_seconds: float = 5.0
    snapshot_method: str = "copy"
    replica_identity_full_for_no_pk: bool = False
    set_logged_for_unlogged: bool = False  # let preflight run ALTER TABLE … SET LOGGED (a rewrite) on them
    keep_ownership: bool = True  # the schema copy gives objects their source owners (grants are copied always)
    copy_parallelism: int = 4
    # Partitions of each change topic and sink tasks (kafka.key_partitioning); 1 keeps one task in topic order.
    change_topic_partitions: int = 1
    dead_letter: bool = False  # records the sink cannot write go to a DLQ topic (P0 alert) instead of failing it
    # A libpq password file at this path on both database servers' own hosts: subscriptions (the native channel on
    # the target, reverse replication on the source) name it instead of holding the password.
    subscriber_passfile: str = ""
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def names(self) -> MigrationNames:
        return MigrationNames(self.migration_id)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> MigrationParams:
        if "migration_id" not in raw or raw["migration_id"] in (None, ""):
            raise InvalidParams(f"migration_id is required ({MIGRATION_ID_PATTERN}).")
        migration_id = validate_migration_id(str(raw["migration_id"]))
        schemas = raw.get("schemas") or ["public"]
        if isinstance(schemas, str) or not all(isinstance(s, str) and s for s in schemas):
            raise InvalidParams(f"schemas must be a list of schema names, got {schemas!r}.")
        tables = tuple(parse_table_name(t) for t in (raw.get("tables") or []))
        outside = sorted(f"{s}.{t}" for s, t in tables if s not in schemas)
        if outside:
            raise InvalidParams(
                f"tables {outside} are not in the migrated schemas {list(schemas)}: add their schema to "
                "`schemas` or remove them from `tables`."
            )
        method = raw.get("snapshot_method") or "copy"
        if method not in SNAPSHOT_METHODS:
            raise InvalidParams(f"snapshot_method {method!r} is not one of {SNAPSHOT_METHODS}.")
        try:
            max_lag = float(raw.get("max_lag_seconds", 5))
        except (TypeError, ValueError) as exc:
            raise InvalidParams(f"max_lag_seconds must be a number, got {raw.get('max_lag_seconds')!r}.") from exc
        if max_lag <= 0:
            raise InvalidParams(f"max_lag_seconds must be positive, got {max_lag}.")
        parallelism = int(raw.get("copy_parallelism", 4))
        if not 1 <= parallelism <= 32:
            raise InvalidParams(f"copy_parallelism must be between 1 and 32, got {parallelism}.")
        partitions = _change_topic_partitions(raw)
        return cls(
            migration_id=migration_id,
            source_conn_id=str(raw.get("source_conn_id") or "migration_source"),
            target_conn_id=str(raw.get("target_conn_id") or "migration_target"),
            schemas=tuple(dict.fromkeys(schemas)),
            tables=tables,
            max_lag_seconds=max_lag,
            snapshot_method=method,
            replica_identity_full_for_no_pk=bool(raw.get("replica_identity_full_for_no_pk", False)),
            set_logged_for_unlogged=bool(raw.get("set_logged_for_unlogged", False)),
            keep_ownership=bool(raw.get("keep_ownership", True)),
            copy_parallelism=parallelism,
            change_topic_partitions=partitions,
            dead_letter=bool(raw.get("dead_letter", False)),
            subscriber_passfile=str(raw.get("subscriber_passfile") or ""),
        )


# Every PgBouncer in front of the database: the local stack runs two. A deployment with one lists one; a name
# that is not an Airflow connection makes the checklist refuse, never a cutover that leaves clients behind.
# The Airflow connections a deployment defines once (README, "Airflow connections").
CONTROL_CONN_ID = "migration_control"  # the control database: state record, alerts, pause lease
DEFAULT_PGBOUNCER_CONN_IDS = ("pgbouncer_admin", "pgbouncer_admin_2")


MAX_CHANGE_TOPIC_PARTITIONS = 64


def _change_topic_partitions(raw: dict[str, Any]) -> int:
    value = raw.get("change_topic_partitions", 1)
    if isinstance(value, bool) or not isinstance(value, int | str) or not str(value).strip().isdigit():
        raise InvalidParams(f"change_topic_partitions must be a whole number, got {value!r}.")
    partitions = int(value)
    if not 1 <= partitions <= MAX_CHANGE_TOPIC_PARTITIONS:
        raise InvalidParams(
            f"change_topic_partitions must be between 1 and {MAX_CHANGE_TOPIC_PARTITIONS}, got {partitions}."
        )
    return partitions


def _pause_seconds(raw: dict[str, Any], default: float) -> float:
    try:
        pause = float(raw.get("max_pause_seconds", default))
    except (TypeError, ValueError) as exc:
        raise InvalidParams(f"max_pause_seconds must be a number, got {raw.get('max_pause_seconds')!r}.") from exc
    if not 1 <= pause <= 300:
        raise InvalidParams(f"max_pause_seconds must be between 1 and 300, got {pause}.")
    return pause


def _pgbouncer_conn_ids(raw: dict[str, Any]) -> tuple[str, ...]:
    ids = raw.get("pgbouncer_conn_ids")
    if ids is None or ids == []:
        return DEFAULT_PGBOUNCER_CONN_IDS
    if isinstance(ids, str) or not all(isinstance(i, str) and i for i in ids):
        raise InvalidParams(
            f"pgbouncer_conn_ids must be a list of Airflow connection ids (one per PgBouncer), got {ids!r}."
        )
    return tuple(dict.fromkeys(ids))


def _minutes(raw: dict[str, Any], name: str, default: float) -> float:
    try:
        value = float(raw.get(name, default))
    except (TypeError, ValueError) as exc:
        raise InvalidParams(f"{name} must be a number of minutes, got {raw.get(name)!r}.") from exc
    if value < 0:
        raise InvalidParams(f"{name} must not be negative, got {value}.")
    return value


def _passes(raw: dict[str, Any]) -> int:
    value = raw.get("precopy_passes", 8)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 50:
        raise InvalidParams(f"precopy_passes must be a whole number from 0 to 50, got {value!r}.")
    return value


@dataclass(frozen=True)
class CutoverParams:
    """Params of `pg_cutover`. The migration's own params (connections, schemas, tables) come from its state
    record, so a cutover always acts on exactly what `pg_migration` moved."""

    migration_id: str
    backup: bool = True
    max_pause_seconds: float = 10.0
    pgbouncer_database: str = ""  # empty: the source connection's database name
    pgbouncer_conn_ids: tuple[str, ...] = DEFAULT_PGBOUNCER_CONN_IDS
    allow_direct_sessions: bool = False
    max_validation_age_minutes: float = 60.0
    reuse_validation_minutes: float = 0.0  # 0: pre_validate always runs the full row diff
    precopy_passes: int = 8  # at most this many passes over the changed keys before the pause (0: none)
    dry_run: bool = False

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> CutoverParams:
        if not raw.get("migration_id"):
            raise InvalidParams(f"migration_id is required ({MIGRATION_ID_PATTERN}).")
        return cls(
            migration_id=validate_migration_id(str(raw["migration_id"])),
            backup=bool(raw.get("backup", True)),
            max_pause_seconds=_pause_seconds(raw, 10),
            pgbouncer_database=str(raw.get("pgbouncer_database") or ""),
            pgbouncer_conn_ids=_pgbouncer_conn_ids(raw),
            allow_direct_sessions=bool(raw.get("allow_direct_sessions", False)),
            max_validation_age_minutes=_minutes(raw, "max_validation_age_minutes", 60),
            reuse_validation_minutes=_minutes(raw, "reuse_validation_minutes", 0),
            precopy_passes=_passes(raw),
            dry_run=bool(raw.get("dry_run", False)),
        )


@dataclass(frozen=True)
class RollbackParams:
    migration_id: str
    reason: str
    force: bool = False
    max_pause_seconds: float = 10.0
    pgbouncer_database: str = ""
    pgbouncer_conn_ids: tuple[str, ...] = DEFAULT_PGBOUNCER_CONN_IDS
    allow_direct_sessions: bool = False

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> RollbackParams:
        if not raw.get("migration_id"):
            raise InvalidParams(f"migration_id is required ({MIGRATION_ID_PATTERN}).")
        reason = str(raw.get("reason") or "").strip()
        if not reason:
            raise InvalidParams("reason is required: say why the cutover is rolled back (it goes in the report).")
        return cls(
            migration_id=validate_migration_id(str(raw["migration_id"])),
            reason=reason,
            force=bool(raw.get("force", False)),
            max_pause_seconds=_pause_seconds(raw, 10),
            pgbouncer_database=str(raw.get("pgbouncer_database") or ""),
            pgbouncer_conn_ids=_pgbouncer_conn_ids(raw),
            allow_direct_sessions=bool(raw.get("allow_direct_sessions", False)),
        )


@dataclass(frozen=True)
class OperationParams:
    """Params of the runbook DAGs (halt, restart, teardown): the migration, and why."""

    migration_id: str
    reason: str = ""
    force: bool = False
    pgbouncer_database: str = ""

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> OperationParams:
        if not raw.get("migration_id"):
            raise InvalidParams(f"migration_id is required ({MIGRATION_ID_PATTERN}).")
        return cls(
            migration_id=validate_migration_id(str(raw["migration_id"])),
            reason=str(raw.get("reason") or "").strip(),
            force=bool(raw.get("force", False)),
        )


@dataclass(frozen=True)
class ResyncParams:
    migration_id: str
    tables: tuple[tuple[str, str], ...]
    pgbouncer_database: str = ""

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> ResyncParams:
        if not raw.get("migration_id"):
            raise InvalidParams(f"migration_id is required ({MIGRATION_ID_PATTERN}).")
        tables = tuple(parse_table_name(t) for t in (raw.get("tables") or []))
        if not tables:
            raise InvalidParams("tables is required: the schema.table names to copy again.")
        return cls(migration_id=validate_migration_id(str(raw["migration_id"])), tables=tables)


VALIDATE_PHASES = ("caught_up", "streaming", "cut_over")  # what the weekly pg_validate run covers


@dataclass(frozen=True)
class ValidateParams:
    """`pg_validate`: one migration (or, with an empty id, every one in VALIDATE_PHASES), some tables or all."""

    migration_id: str = ""
    tables: tuple[tuple[str, str], ...] = ()
    mode: str = "full"
    sample_size: int = 1000
    row_diff: bool = True
    great_expectations: bool = True

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> ValidateParams:
        migration_id = str(raw.get("migration_id") or "").strip()
        mode = str(raw.get("mode") or "full")
        if mode not in ("full", "sample"):
            raise InvalidParams(f"mode must be 'full' or 'sample', got {mode!r}.")
        try:
            sample_size = int(raw.get("sample_size") or 1000)
        except (TypeError, ValueError) as exc:
            raise InvalidParams(f"sample_size must be a whole number, got {raw.get('sample_size')!r}.") from exc
        if sample_size < 1:
            raise InvalidParams(f"sample_size must be at least 1, got {sample_size}.")
        return cls(
            migration_id=validate_migration_id(migration_id) if migration_id else "",
            tables=tuple(parse_table_name(t) for t in (raw.get("tables") or [])),
            mode=mode,
            sample_size=sample_size,
            row_diff=bool(raw.get("row_diff", True)),
            great_expectations=bool(raw.get("great_expectations", True)),
        )
