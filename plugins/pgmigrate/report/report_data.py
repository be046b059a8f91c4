"""What the migration report shows, read from the control database only, so a report can be written
for any migration at any time, even when the servers it moved are gone."""

from __future__ import annotations

from pgmigrate.core.artifacts import ArtifactPath, artifact_dir
from pgmigrate.core.endpoints import PgEndpoint
from pgmigrate.report.migration_report import ReportData


class UnknownMigration(LookupError):
    pass


def collect_report_data(control: PgEndpoint, migration_id: str, max_lag_samples: int = 5000) -> ReportData:
    from pgmigrate.control.alert_store import AlertStore
    from pgmigrate.control.state import MigrationStateStore

    store = MigrationStateStore(control)
    store.ensure_schema()  # an older control DB gets the alert table
    state = store.get(migration_id)
    if state is None:
        raise UnknownMigration(
            f"no migration {migration_id!r} in the control database (scripts/migration list shows them)"
        )
    validation = state.get("last_validation") or {}
    return ReportData(
        migration_id=migration_id,
        state=dict(state),
        events=store.events(migration_id, limit=100_000),
        lag_samples=[(s["at"], s["end_to_end_seconds"]) for s in store.lag_samples(migration_id, max_lag_samples)],
        snapshot_tables=store.snapshot_tables(migration_id),
        validation=list(validation.get("tables") or []),
        validated_at=validation.get("at"),
        great_expectations=validation.get("great_expectations"),
        alerts=AlertStore(control).alerts(migration_id),
        throughput_samples=store.throughput_samples(migration_id),
    )


def default_report_dir() -> ArtifactPath:
    """`reports/` under `$PGMIGRATE_ARTIFACTS_URL`; without it `$PGMIGRATE_REPORT_DIR`, else `reports/` beside
    the backups (local stack: .stack/reports). See `pgmigrate.core.artifacts`."""
    return artifact_dir("reports")
