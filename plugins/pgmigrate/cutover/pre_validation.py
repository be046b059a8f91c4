"""Validation outside the pause, with the positions it covers.

`validate_with_positions` records the pipeline's change-topic end offsets, then runs the full row diff
(`row_diff.diff_tables`) while streaming continues. A row the diff found identical and whose key has no
change record after those offsets is still identical; every later change is named by the topics, which
is what lets the pause verify only the changes (`verification`). The record, stored per direction in the
migration's `pre_validation` (`{"forward": …, "reverse": …}`), is:

    {"direction": "forward", "at": iso time, "ok": bool, "positions": {"topic:partition": offset},
     "tables": int, "rows": int, "differences": [str], "seconds": float}

`forward` is written by pg_cutover's pre_validate; `reverse` by its post_validate after the switch (rollback
verifies only what changed since). Without a `reverse` record rollback starts from offset 0 of the reverse
topics: the switch happened at a verified identical point, so every later change is in them.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import Any

from pgmigrate.core.catalog import TableInfo
from pgmigrate.core.endpoints import PgEndpoint
from pgmigrate.core.naming import MigrationNames
from pgmigrate.cutover.change_topics import ChangeTopics, Positions, positions_from_json, positions_to_json
from pgmigrate.kafka.client_config import KafkaCluster

log = logging.getLogger(__name__)


class SinkBehind(RuntimeError):
    """The sink did not apply what was produced before the validation in time: comparing now would report
    rows still in flight as differences."""


def validate_with_positions(
    origin: PgEndpoint,
    destination: PgEndpoint,
    names: MigrationNames,
    tables: list[TableInfo],
    kafka: KafkaCluster,
    catch_up_seconds: float = 900.0,
) -> dict[str, Any]:
    """The full row diff of `tables` (origin = where clients write), with the positions taken before it.
    It starts once the sink has applied everything produced before those positions: the row diff's re-checks
    tell rows in flight from real differences only when the pipeline keeps up (its pauses are seconds), and a
    sink thousands of records behind would make every backlogged row look different."""
    from pgmigrate.validate.row_diff import diff_tables, format_diff

    topics = ChangeTopics(kafka, names, tables)
    try:
        positions = topics.end_offsets()
        deadline = time.monotonic() + catch_up_seconds
        while True:
            committed = topics.sink_committed()
            behind = sum(max(0, end - committed.get(tp, 0)) for tp, end in positions.items())
            if behind == 0:
                break
            if time.monotonic() > deadline:
                raise SinkBehind(
                    f"the sink is still {behind} change records behind what was produced before the validation, "
                    f"after {catch_up_seconds:.0f}s: the target cannot be compared while it lags that much. Check the "
                    "sink (scripts/migration lag) and the target's load, then run the validation again."
                )
            log.info("waiting for the sink to apply the %d change records produced before the validation", behind)
            time.sleep(2.0)
    finally:
        topics.close()
    at = datetime.now(UTC)
    started = time.monotonic()
    diffs = diff_tables(origin, destination, tables)
    differing = [d for d in diffs if not d.ok]
    record = {
        "direction": "reverse" if names.reverse else "forward",
        "at": at.isoformat(),
        "ok": not differing,
        "positions": positions_to_json(positions),
        "tables": len(diffs),
        "rows": sum(d.source_rows or 0 for d in diffs),
        "differences": [line for line in format_diff(differing).splitlines() if line.strip()][:50],
        "seconds": round(time.monotonic() - started, 3),
    }
    log.info(
        "validated %d tables (%d rows) in %.1fs at positions %s: %s",
        record["tables"],
        record["rows"],
        record["seconds"],
        "; ".join(f"{k}={v}" for k, v in record["positions"].items()) or "none",
        "identical" if record["ok"] else f"{len(differing)} tables differ",
    )
    return record


def age_minutes(record: dict[str, Any] | None, now: datetime | None = None) -> float | None:
    if not record or not record.get("at"):
        return None
    return ((now or datetime.now(UTC)) - datetime.fromisoformat(record["at"])).total_seconds() / 60


def reusable(record: dict[str, Any] | None, max_minutes: float, now: datetime | None = None) -> bool:
    """A passing record no older than `max_minutes` (0: never reuse)."""
    age = age_minutes(record, now)
    return bool(max_minutes > 0 and record and record.get("ok") and age is not None and age <= max_minutes)


def checklist_detail(
    record: dict[str, Any] | None, max_minutes: float, now: datetime | None = None
) -> tuple[bool, str]:
    """The checklist's verdict on the forward pre-validation: (ok, detail)."""
    age = age_minutes(record, now)
    if record is None or age is None:
        return False, "no validation with positions recorded: pre_validate must run first"
    if not record.get("ok"):
        return False, f"pre_validate found differences {age:.0f} min ago: {'; '.join(record.get('differences')[:3])}"
    if age > max_minutes:
        return False, (
            f"pre_validate ran {age:.0f} min ago, over max_validation_age_minutes={max_minutes:g}: "
            "trigger pg_cutover again (it validates anew)"
        )
    return True, f"{record['tables']} tables ({record['rows']} rows) identical {age:.1f} min ago"


def positions_of(record: dict[str, Any] | None) -> Positions:
    return positions_from_json((record or {}).get("positions"))
