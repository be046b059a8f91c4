"""Backup of the source before cutover: `pg_dump -Fd -j2` plus the connector configs, in a directory
named by migration_id and time, so a cutover can always be undone from a known state.

Where: `$PGMIGRATE_BACKUP_DIR` (the local stack sets `.stack/backups`), else `~/pgmigrate-backups`.
"""

from __future__ import annotations

import json
import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pgmigrate.core.endpoints import PgEndpoint
from pgmigrate.schema.pg_dump_toc import run_tool, tool_path


def backup_root() -> Path:
    return Path(os.environ.get("PGMIGRATE_BACKUP_DIR") or Path.home() / "pgmigrate-backups")


def backup_source(source: PgEndpoint, migration_id: str, connector_configs: dict[str, Any], jobs: int = 2) -> dict:
    started = time.monotonic()
    path = backup_root() / migration_id / datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path.mkdir(parents=True, exist_ok=False)
    run_tool(
        [tool_path("pg_dump"), "-Fd", "-j", str(jobs), "-f", str(path / "source.dump"), "--no-password", source.dbname],
        source,
        f"pg_dump of {source.label}",
    )
    # Configs carry ${file:…} references, never passwords.
    (path / "connectors.json").write_text(json.dumps(connector_configs, indent=2, sort_keys=True))
    size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return {"path": str(path), "seconds": round(time.monotonic() - started, 1), "bytes": size}
