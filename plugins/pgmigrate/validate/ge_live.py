"""Great Expectations on a migration that is still streaming.

A suite is a picture of the source at one moment (row count, max of a growing key); the target, checked a
moment later, trails by the pipeline's lag, and the source moves on meanwhile. So a failed expectation
is only believed when the source held still around the check: the suite is profiled again right after
the checkpoint, and a table whose suite changed in between is checked again after a pause. A table fails
when it failed twice with its source unchanged each time; a table whose source never held still is
reported `inconclusive` (the row diff, which re-checks rows in flight, is the authority then).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pgmigrate.core.catalog import TableInfo
from pgmigrate.core.endpoints import PgEndpoint
from pgmigrate.core.naming import validate_migration_id

log = logging.getLogger(__name__)

PASSED, FAILED, INCONCLUSIVE = "passed", "failed", "inconclusive"


def judge_table(failed_now: bool, source_moved: bool, stable_failures_before: int) -> tuple[str | None, int]:
    """(status, stable failures so far) for one table after one check; status None means check again."""
    if not failed_now:
        return PASSED, 0
    if source_moved:
        return None, stable_failures_before
    stable = stable_failures_before + 1
    return (FAILED, stable) if stable >= 2 else (None, stable)


def check_live(
    source: PgEndpoint,
    target: PgEndpoint,
    migration_id: str,
    tables: list[TableInfo],
    root: Path | None = None,
    attempts: int = 4,
    pause_seconds: float = 5.0,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """Generate (regenerate) the suites from the source, run the checkpoint on the target, judge each table
    as above. Returns the last checkpoint summary with a `status` per table and `inconclusive` listed.

    Without `root`, the GE context is the migration's folder under the artifacts' `great_expectations/`
    (`pgmigrate.core.artifacts`): used in place when local (`include/great_expectations` by default); on object
    storage GE works on a local copy (GE's file context needs a disk) that is uploaded afterwards, its stores and
    Data Docs included, and `data_docs` is the uploaded index's URL."""
    if root is not None:
        return _check_live(source, target, migration_id, tables, root, attempts, pause_seconds, sleep)
    from pgmigrate.core.artifacts import artifact_dir, is_local, location, stored_location, working_dir

    store = artifact_dir("great_expectations") / validate_migration_id(migration_id)
    with working_dir(store) as local:
        result = _check_live(source, target, migration_id, tables, local.parent, attempts, pause_seconds, sleep)
        if not is_local(store):
            for key in ("data_docs", "data_docs_index"):  # the checkpoint's own key too: no temporary path kept
                if result.get(key):
                    result[key] = stored_location(result[key], local, store)
    if not is_local(store):
        log.info("GE context of %s uploaded to %s", migration_id, location(store))
    return result


def _check_live(
    source: PgEndpoint,
    target: PgEndpoint,
    migration_id: str,
    tables: list[TableInfo],
    root: Path,
    attempts: int,
    pause_seconds: float,
    sleep: Callable[[float], None],
) -> dict[str, Any]:
    from pgmigrate.validate.ge_checkpoint import run_checkpoint
    from pgmigrate.validate.ge_suites import generate_suites

    pending = list(tables)
    stable: dict[str, int] = {}
    verdicts: dict[str, dict[str, Any]] = {}
    summary: dict[str, Any] = {}
    for attempt in range(1, attempts + 1):
        before = _texts(generate_suites(source, pending, migration_id, root, regenerate=True))
        summary = dict(run_checkpoint(target, migration_id, pending, root))
        after = _texts(generate_suites(source, pending, migration_id, root, regenerate=True))
        again = []
        for table, result, path in zip(pending, summary["tables"], before, strict=True):
            name = table.ref.qualified
            status, stable[name] = judge_table(not result["success"], before[path] != after[path], stable.get(name, 0))
            verdicts[name] = {**result, "status": status or INCONCLUSIVE, "attempts": attempt}
            if status is None:
                again.append(table)
        log.info(
            "GE attempt %d/%d: %s",
            attempt,
            attempts,
            ", ".join(f"{n} {v['status']}" for n, v in sorted(verdicts.items())),
        )
        if not again:
            break
        pending = again
        if attempt < attempts:
            sleep(pause_seconds)
    results = [verdicts[t.ref.qualified] for t in tables]
    return {
        **summary,
        "success": all(r["status"] != FAILED for r in results),
        "tables": results,
        "inconclusive": [r["table"] for r in results if r["status"] == INCONCLUSIVE],
        "data_docs": summary.get("data_docs_index"),
    }


def _texts(paths: list[Path]) -> dict[Path, str]:
    return {p: Path(p).read_text() if Path(p).exists() else "" for p in paths}
