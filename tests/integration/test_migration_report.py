"""The migration report, read from the real control database and opened in a real headless Chromium:
the lag chart and the tables render, row-level differences show with their columns, and text from the
database is escaped. The screenshot stays in test-artifacts/ for a human to look at."""

from __future__ import annotations

import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from harness import conninfo
from psycopg import sql

from pgmigrate.control.state import MigrationStateStore
from pgmigrate.core.endpoints import PgEndpoint
from pgmigrate.report.migration_report import write_report
from pgmigrate.report.report_data import UnknownMigration, collect_report_data

MIGRATION_ID = "report-test"
CONTROL = PgEndpoint("127.0.0.1", 5435, "migration_control", "postgres", "postgres")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
TABLES = ("migration", "migration_event", "lag_sample", "snapshot_table", "throughput_sample")


def _forget() -> None:
    with psycopg.connect(conninfo(5435, "migration_control"), autocommit=True) as conn:
        for table in TABLES:
            delete = sql.SQL("DELETE FROM {} WHERE migration_id = %s").format(sql.Identifier(table))
            conn.execute(delete, (MIGRATION_ID,))


@pytest.fixture
def recorded_migration():
    store = MigrationStateStore(CONTROL)
    store.ensure_schema()
    _forget()
    store.upsert(MIGRATION_ID, phase="cut_over", params={"migration_id": MIGRATION_ID})
    store.record_event(MIGRATION_ID, "snapshot_copied", "initial load: 1000 rows")
    store.record_event(MIGRATION_ID, "cut_over", "switched; writes were paused 4.20s", pause_seconds=4.2)
    store.record_event(MIGRATION_ID, "note", "<script>alert('x')</script> from a hostile table name")
    start = datetime.now(UTC) - timedelta(minutes=30)
    with psycopg.connect(conninfo(5435, "migration_control"), autocommit=True) as conn:
        for i in range(30):
            conn.execute(
                "INSERT INTO lag_sample (migration_id, at, end_to_end_seconds) VALUES (%s, %s, %s)",
                (MIGRATION_ID, start + timedelta(minutes=i), 0.5 + (i % 7) * 0.3),
            )
            conn.execute(
                "INSERT INTO throughput_sample (migration_id, at, produced_per_second, applied_per_second, "
                "dead_letters, failed_tasks) VALUES (%s, %s, %s, %s, %s, 0)",
                (MIGRATION_ID, start + timedelta(minutes=i), 40.0 + i, 38.0 + i, 2 if i == 20 else 0),
            )
        conn.execute(
            "INSERT INTO snapshot_table (migration_id, table_name, status, rows_copied, bytes_copied, started_at, "
            "finished_at) VALUES (%s, 'public.orders', 'done', 100000, 8000000, %s, %s)",
            (MIGRATION_ID, start, start + timedelta(seconds=4)),
        )
    validation = {
        "at": datetime.now(UTC).isoformat(),
        "tables": [
            {"table": "public.orders", "ok": True, "source_rows": 100000, "target_rows": 100000},
            {
                "table": "public.accounts",
                "ok": False,
                "source_rows": 1000,
                "target_rows": 1000,
                "missing": [{"key": {"id": 5}}],
                "extra": [{"key": {"id": 9001}}],
                "changed": [{"key": {"id": 12}, "columns": ["note", "balance"]}],
            },
        ],
    }
    store.upsert(MIGRATION_ID, last_validation=validation)
    yield store
    _forget()


def _chromium() -> str:
    path = shutil.which("chromium")
    assert path, "chromium is not installed: scripts/install.sh installs it (apt-get install chromium)"
    return path


def test_report_renders_in_headless_chromium(recorded_migration, tmp_path):
    paths = write_report(collect_report_data(CONTROL, MIGRATION_ID), tmp_path)
    html_file = Path(paths["html"])
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--allow-file-access-from-files"]
    dom = subprocess.run(
        [_chromium(), *flags, "--dump-dom", html_file.as_uri()], capture_output=True, text=True, timeout=120, check=True
    ).stdout

    assert 'id="lag-chart"' in dom and "<polyline" in dom
    points = dom.split('class="lag"')[0].rsplit('points="', 1)[1].split('"', 1)[0].split()
    assert len(points) == 30, "one chart point per lag sample"
    assert "id=12 (note, balance)" in dom and "id=9001" in dom and "id=5" in dom
    assert dom.count("<tr>") >= 10, "summary, validation, snapshot, cutover and timeline rows"
    assert "4.20s (cut_over)" in dom
    assert 'id="throughput-chart"' in dom and "most dead letters seen 2" in dom, "throughput and errors chart"
    assert "<script>" not in dom and "&lt;script&gt;" in dom, "database text must be escaped"

    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "migration-report.png"
    shot.unlink(missing_ok=True)
    subprocess.run(
        [_chromium(), *flags, f"--screenshot={shot}", "--window-size=1200,1600", html_file.as_uri()],
        capture_output=True,
        timeout=120,
        check=True,
    )
    assert shot.exists() and shot.stat().st_size > 20_000, "the screenshot should show a rendered page"

    markdown = Path(paths["markdown"]).read_text()
    assert "| public.accounts | DIFFERS |" in markdown and "write pause 4.20s" in markdown
    assert "- throughput: 30 samples" in markdown


def test_report_for_an_unknown_migration_says_how_to_find_one():
    with pytest.raises(UnknownMigration, match="scripts/migration list"):
        collect_report_data(CONTROL, "no-such-migration")
