"""Where artifacts go (`pgmigrate.core.artifacts`): today's local directories by default, any fsspec URL by
`$PGMIGRATE_ARTIFACTS_URL`. Object storage is fsspec's in-memory filesystem (`memory://`); pg_dump and the GE
run are fakes. No services."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from pgmigrate.alerts.channels import FileChannel, ObjectAlertChannel, alert_file_channel, default_alert_log
from pgmigrate.core import artifacts
from pgmigrate.core.artifacts import ArtifactsConfigError, ArtifactsUrl, parse_location
from pgmigrate.core.endpoints import PgEndpoint
from pgmigrate.core.project import PROJECT_ROOT
from pgmigrate.cutover import backup
from pgmigrate.report.migration_report import ReportData, write_report
from pgmigrate.report.report_data import default_report_dir
from pgmigrate.validate import ge_live
from pgmigrate.validate.ge_suites import DEFAULT_ROOT

pytestmark = pytest.mark.unit

VARIABLES = (
    "PGMIGRATE_ARTIFACTS_URL",
    "PGMIGRATE_ARTIFACTS_CONN_ID",
    "PGMIGRATE_BACKUP_DIR",
    "PGMIGRATE_REPORT_DIR",
    "PGMIGRATE_ALERT_LOG",
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def memory_url(monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh bucket on fsspec's in-memory filesystem as the artifacts URL."""
    url = f"memory://pgmigrate-test-{uuid.uuid4().hex[:8]}/artifacts"
    monkeypatch.setenv("PGMIGRATE_ARTIFACTS_URL", url)
    return url


def _read(url: str) -> str:
    from airflow.sdk import ObjectStoragePath

    return ObjectStoragePath(url).read_text()


def test_without_a_url_every_kind_stays_where_it_was(monkeypatch, tmp_path):
    assert artifacts.configured() is None
    assert backup.backup_root() == Path.home() / "pgmigrate-backups"
    assert default_report_dir() == Path.cwd() / "reports"
    assert default_alert_log() == PROJECT_ROOT / ".stack" / "alerts" / "alerts.log"
    assert artifacts.artifact_dir("great_expectations") == DEFAULT_ROOT == PROJECT_ROOT / "include/great_expectations"

    monkeypatch.setenv("PGMIGRATE_BACKUP_DIR", str(tmp_path / ".stack" / "backups"))  # the local stack's setting
    assert backup.backup_root() == tmp_path / ".stack" / "backups"
    assert default_report_dir() == tmp_path / ".stack" / "reports"
    assert default_alert_log() == tmp_path / ".stack" / "alerts" / "alerts.log"
    channel = alert_file_channel()
    assert isinstance(channel, FileChannel) and channel.path == default_alert_log()

    monkeypatch.setenv("PGMIGRATE_REPORT_DIR", str(tmp_path / "r"))
    monkeypatch.setenv("PGMIGRATE_ALERT_LOG", str(tmp_path / "a" / "x.log"))
    assert default_report_dir() == tmp_path / "r"
    assert default_alert_log() == tmp_path / "a" / "x.log"
    paths = write_report(ReportData(migration_id="m1", state={}), default_report_dir())
    assert paths == {"html": str(tmp_path / "r" / "m1-report.html"), "markdown": str(tmp_path / "r" / "m1-report.md")}


def test_a_file_url_is_a_local_directory_for_every_kind(monkeypatch, tmp_path):
    monkeypatch.setenv("PGMIGRATE_BACKUP_DIR", str(tmp_path / "ignored"))
    monkeypatch.setenv("PGMIGRATE_ARTIFACTS_URL", f"file://{tmp_path}/shared/")
    assert backup.backup_root() == tmp_path / "shared" / "backups"
    assert default_report_dir() == tmp_path / "shared" / "reports"
    assert default_alert_log() == tmp_path / "shared" / "alerts" / "alerts.log"
    assert isinstance(alert_file_channel(), FileChannel)


def test_a_memory_url_gets_the_report_and_an_alert_line(memory_url):
    paths = write_report(ReportData(migration_id="m1", state={}), default_report_dir())
    assert paths["html"] == f"{memory_url}/reports/m1-report.html"
    assert "m1" in _read(paths["html"]) and _read(paths["markdown"]).startswith("#")

    channel = alert_file_channel()
    assert isinstance(channel, ObjectAlertChannel)
    payload = {"migration_id": "m1", "text": "lag high", "status": "raised", "severity": "P1", "condition": "lag"}
    channel.send(payload)
    channel.send({**payload, "status": "resolved"})
    days = list(channel.directory.iterdir())
    objects = sorted(str(o) for day in days for o in day.iterdir())
    assert len(objects) == 2 and all(o.startswith(f"{memory_url}/alerts/") and "-m1-" in o for o in objects)
    lines = [_read(o) for o in objects]
    assert all(line.endswith("\n") and line.count("\n") == 1 for line in lines)
    assert {json.loads(line)["status"] for line in lines} == {"raised", "resolved"}


def test_a_memory_url_gets_the_backup_uploaded(memory_url, monkeypatch):
    def fake_pg_dump(args: list[str], endpoint: PgEndpoint, what: str) -> str:
        dump = Path(args[args.index("-f") + 1])
        dump.mkdir()
        (dump / "toc.dat").write_bytes(b"toc")
        (dump / "3001.dat.gz").write_bytes(b"x" * 10)
        return ""

    monkeypatch.setattr(backup, "run_tool", fake_pg_dump)
    monkeypatch.setattr(backup, "tool_path", lambda name: name)
    result = backup.backup_source(PgEndpoint("h", 5432, "shop", "u"), "m1", {"m1-source": {"a": 1}})
    assert result["path"].startswith(f"{memory_url}/backups/m1/")
    assert result["bytes"] > 13
    assert json.loads(_read(result["path"] + "/connectors.json")) == {"m1-source": {"a": 1}}
    assert _read(result["path"] + "/source.dump/toc.dat") == "toc"


def test_the_ge_context_round_trips_through_object_storage(memory_url, monkeypatch):
    """GE works on a local copy: what a previous run stored (a user's suite edit) is there, and the run's
    stores and Data Docs are uploaded; the summary's Data Docs is the uploaded URL."""
    seen: list[str] = []

    def fake_run(source, target, migration_id, tables, root, attempts, pause_seconds, sleep):
        project = Path(root) / migration_id / "gx"
        suite = project / "expectations" / "public" / "t.json"
        seen.append(suite.read_text() if suite.exists() else "")
        suite.parent.mkdir(parents=True, exist_ok=True)
        suite.write_text(seen[-1] + "+")
        index = project / "uncommitted" / "data_docs" / "local_site" / "index.html"
        index.parent.mkdir(parents=True, exist_ok=True)
        index.write_text("<html>docs</html>")
        return {"success": True, "data_docs": str(index), "data_docs_index": str(index), "tables": []}

    monkeypatch.setattr(ge_live, "_check_live", fake_run)
    endpoint = PgEndpoint("h", 5432, "shop", "u")
    first = ge_live.check_live(endpoint, endpoint, "m1", [])
    second = ge_live.check_live(endpoint, endpoint, "m1", [])
    base = f"{memory_url}/great_expectations/m1/gx"
    assert first["data_docs"] == second["data_docs"] == f"{base}/uncommitted/data_docs/local_site/index.html"
    assert second["data_docs_index"] == second["data_docs"]
    assert _read(second["data_docs"]) == "<html>docs</html>"
    assert seen == ["", "+"] and _read(f"{base}/expectations/public/t.json") == "++"


def test_the_connection_comes_from_the_url_or_its_variable(monkeypatch):
    assert parse_location("s3://aws_default@bucket/pgmigrate/") == ArtifactsUrl(
        "s3://bucket/pgmigrate", "s3", "aws_default"
    )
    assert parse_location("gs://bucket/pg", "google_cloud_default") == ArtifactsUrl(
        "gs://bucket/pg", "gs", "google_cloud_default"
    )
    monkeypatch.setenv("PGMIGRATE_ARTIFACTS_URL", "S3://bucket/pg")
    monkeypatch.setenv("PGMIGRATE_ARTIFACTS_CONN_ID", "aws_default")
    assert artifacts.configured() == ArtifactsUrl("s3://bucket/pg", "s3", "aws_default")
    with pytest.raises(ArtifactsConfigError, match="keep one of them"):
        parse_location("s3://other@bucket/pg", "aws_default")
    with pytest.raises(ArtifactsConfigError, match="PGMIGRATE_ARTIFACTS_CONN_ID") as error:
        parse_location("s3://key:s3cret@bucket/pg")
    assert "s3cret" not in str(error.value)


def test_logs_show_the_url_without_the_connection_id():
    class Stored:
        def __str__(self) -> str:
            return "s3://aws_default@bucket/pg/reports/m1-report.html"

    assert artifacts.location(Stored()) == "s3://bucket/pg/reports/m1-report.html"  # type: ignore[arg-type]
    assert artifacts.location(Path("/var/x")) == "/var/x"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("foo://bucket/pg", "unknown URL scheme 'foo'"),
        ("relative/dir", "neither a URL nor an absolute path"),
        ("s3:///no-bucket", "names no bucket"),
        ("file://otherhost/var/pg", "not a host"),
    ],
)
def test_a_bad_url_names_the_variable_and_the_fix(monkeypatch, value, expected):
    monkeypatch.setenv("PGMIGRATE_ARTIFACTS_URL", value)
    with pytest.raises(ArtifactsConfigError, match=expected) as error:
        artifacts.artifact_dir("reports")
    assert "PGMIGRATE_ARTIFACTS_URL" in str(error.value)


def test_a_scheme_without_a_filesystem_says_what_to_install(monkeypatch):
    from airflow.sdk.io import has_fs

    if has_fs("s3"):
        pytest.skip("the amazon provider is installed here")
    monkeypatch.setenv("PGMIGRATE_ARTIFACTS_URL", "s3://bucket/pg")
    monkeypatch.setenv("PGMIGRATE_ARTIFACTS_CONN_ID", "aws_default")
    with pytest.raises(ArtifactsConfigError, match="apache-airflow-providers-amazon"):
        artifacts.artifact_dir("backups")


def test_a_broken_setting_does_not_silence_the_alerts(monkeypatch, tmp_path, caplog):
    monkeypatch.setenv("PGMIGRATE_ALERT_LOG", str(tmp_path / "alerts.log"))
    monkeypatch.setenv("PGMIGRATE_ARTIFACTS_URL", "foo://bucket")
    channel = alert_file_channel()
    assert isinstance(channel, FileChannel) and channel.path == tmp_path / "alerts.log"
    assert "PGMIGRATE_ARTIFACTS_URL" in caplog.text
