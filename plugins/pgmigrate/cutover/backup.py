"""Backup of the source before cutover: `pg_dump -Fd -j2` plus the connector configs, in a directory
named by migration_id and time, so a cutover can always be undone from a known state.

Where: `backups/` under `$PGMIGRATE_ARTIFACTS_URL` when set (`pgmigrate.core.artifacts`); else
`$PGMIGRATE_BACKUP_DIR` (the local stack sets `.stack/backups`), else `~/pgmigrate-backups`. pg_dump writes
files, so for object storage the dump is made in a local temporary directory (it needs the dump's size free)
and then uploaded; a local location gets the dump directly, as before.
"""

from __future__ import annotations

import json
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pgmigrate.core.artifacts import ArtifactPath, artifact_dir, is_local, location, upload_dir
from pgmigrate.core.endpoints import PgEndpoint
from pgmigrate.schema.pg_dump_toc import run_tool, tool_path


def backup_root() -> ArtifactPath:
    return artifact_dir("backups")


def backup_source(source: PgEndpoint, migration_id: str, connector_configs: dict[str, Any], jobs: int = 2) -> dict:
    """The backup's `path` (a URL for object storage), the seconds it took and its size in bytes."""
    started = time.monotonic()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    dest = backup_root() / migration_id / stamp
    if is_local(dest):
        size = _dump(source, dest, connector_configs, jobs)
    else:
        with tempfile.TemporaryDirectory(prefix=f"pgmigrate-backup-{migration_id}-") as tmp:
            size = _dump(source, Path(tmp) / stamp, connector_configs, jobs)
            upload_dir(Path(tmp) / stamp, dest)
    return {"path": location(dest), "seconds": round(time.monotonic() - started, 1), "bytes": size}


def _dump(source: PgEndpoint, path: Path, connector_configs: dict[str, Any], jobs: int) -> int:
    """Write the backup into a new local directory; returns its size."""
    path.mkdir(parents=True, exist_ok=False)
    run_tool(
        [tool_path("pg_dump"), "-Fd", "-j", str(jobs), "-f", str(path / "source.dump"), "--no-password", source.dbname],
        source,
        f"pg_dump of {source.label}",
    )
    # Configs carry ${file:…} references, never passwords.
    (path / "connectors.json").write_text(json.dumps(connector_configs, indent=2, sort_keys=True))
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
