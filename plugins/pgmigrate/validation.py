"""Validate a streaming migration: per table, row count and checksum on source and target agree.

Writes continue on the source while this runs, so a single comparison can catch a table mid-flight.
A table that differs is compared again after a pause (the pipeline catches up within seconds) up to
`attempts` times; only a difference that persists is reported.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

from pgmigrate.catalog import TableRef
from pgmigrate.checksums import TableChecksum, set_canonical_session, table_checksum
from pgmigrate.endpoints import PgEndpoint

log = logging.getLogger(__name__)


@dataclass
class TableValidation:
    table: str
    source_rows: int
    target_rows: int
    source_checksum: str
    target_checksum: str
    attempts: int

    @property
    def ok(self) -> bool:
        return self.source_rows == self.target_rows and self.source_checksum == self.target_checksum


class ValidationFailed(RuntimeError):
    def __init__(self, results: list[TableValidation]) -> None:
        self.results = results
        bad = [r for r in results if not r.ok]
        names = ", ".join(f"{r.table} (source {r.source_rows} rows, target {r.target_rows})" for r in bad)
        super().__init__(
            f"{len(bad)} of {len(results)} tables differ after {bad[0].attempts} comparisons: {names}. "
            "Check the sink connector's status and lag, then rerun `validate`; if the difference persists, "
            "resync the tables named here."
        )


def compare_tables(
    source: PgEndpoint,
    target: PgEndpoint,
    tables: list[TableRef],
    attempts: int = 6,
    pause_seconds: float = 5.0,
    sleep: Callable[[float], None] = time.sleep,
) -> list[TableValidation]:
    """Compare every table; recompare those that differ until they agree or attempts run out."""
    results: dict[TableRef, TableValidation] = {}
    pending = list(tables)
    with source.connect(autocommit=True) as src, target.connect(autocommit=True) as dst:
        set_canonical_session(src)
        set_canonical_session(dst)
        for attempt in range(1, attempts + 1):
            still_different = []
            for table in pending:
                result = _compare_one(src, dst, table, attempt)
                results[table] = result
                if not result.ok:
                    still_different.append(table)
            log.info(
                "validate: attempt %d/%d, %d/%d tables identical%s",
                attempt, attempts, len(tables) - len(still_different), len(tables),
                f"; differing: {', '.join(t.qualified for t in still_different)}" if still_different else "",
            )
            pending = still_different
            if not pending or attempt == attempts:
                break
            sleep(pause_seconds)
    return [results[t] for t in tables]


def _compare_one(src, dst, table: TableRef, attempt: int) -> TableValidation:
    s: TableChecksum = table_checksum(src, table)
    d: TableChecksum = table_checksum(dst, table)
    return TableValidation(
        table=table.qualified, source_rows=s.rows, target_rows=d.rows,
        source_checksum=s.checksum, target_checksum=d.checksum, attempts=attempt,
    )


def format_results(results: list[TableValidation]) -> str:
    """A fixed-width table for the task log."""
    width = max([len("table"), *(len(r.table) for r in results)])
    lines = [f"{'table':<{width}}  {'source rows':>12}  {'target rows':>12}  {'checksum':<9}  result"]
    for r in results:
        same = "same" if r.source_checksum == r.target_checksum else "DIFFERS"
        lines.append(
            f"{r.table:<{width}}  {r.source_rows:>12}  {r.target_rows:>12}  {same:<9}  {'ok' if r.ok else 'MISMATCH'}"
        )
    return "\n".join(lines)


def results_as_dicts(results: list[TableValidation]) -> list[dict]:
    return [{**asdict(r), "ok": r.ok} for r in results]
