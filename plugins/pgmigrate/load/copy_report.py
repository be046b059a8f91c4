"""How far the `copy` method's parallel COPY got, for the task log: per table (`TableCopyStats`: committed rows and
bytes, the progress line with its ETA) and for the whole copy (`CopyReport`, with the pgcopydb-style summary
table). Plain figures, apart from the copy's threads and connections (`snapshot_copy`).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field


@dataclass
class TableCopyStats:
    """Committed rows and bytes of one table; `started`/`finished` are time.monotonic() values."""

    table: str
    chunks_total: int
    estimated_rows: int = 0
    rows: int = 0
    bytes: int = 0
    chunks_done: int = 0
    started: float | None = None
    finished: float | None = None

    @property
    def seconds(self) -> float:
        return 0.0 if self.started is None else (self.finished or time.monotonic()) - self.started

    @property
    def done(self) -> bool:
        return self.chunks_done == self.chunks_total

    def progress_line(self, rows_streaming: int = 0, bytes_streaming: int = 0, started: float | None = None) -> str:
        """`copy: public.orders 3/8 chunks, 1.2M/3.0M rows (40%), 45 MB/s, ETA 00:00:31`; rows and bytes
        include what chunks still running have streamed, so parallel chunks do not make the ETA jump."""
        rows, nbytes = self.rows + rows_streaming, self.bytes + bytes_streaming
        starts = [t for t in (self.started, started) if t is not None]
        seconds = max((self.finished or time.monotonic()) - min(starts), 1e-6) if starts else 1e-6
        if self.done:
            fraction = 1.0
        elif self.estimated_rows > rows:
            fraction = rows / self.estimated_rows
        else:  # no statistics, or more rows than they said: go by chunks
            fraction = self.chunks_done / self.chunks_total
        eta = seconds / fraction - seconds if fraction > 0 else 0.0
        total = rows if self.done else max(self.estimated_rows, rows)
        return (
            f"copy: {self.table} {self.chunks_done}/{self.chunks_total} chunks, {_human_count(rows)}/"
            f"{_human_count(total)} rows ({math.floor(fraction * 100)}%), {_human_bytes(nbytes / seconds)}/s, "
            f"ETA {time.strftime('%H:%M:%S', time.gmtime(eta))}"
        )


@dataclass
class CopyReport:
    tables: dict[str, TableCopyStats] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def rows(self) -> int:
        return sum(t.rows for t in self.tables.values())

    @property
    def bytes(self) -> int:
        return sum(t.bytes for t in self.tables.values())

    def summary(self) -> str:
        """A pgcopydb-style table for the task log."""
        width = max([len("table"), *(len(n) for n in self.tables)])
        header = f"{'table':<{width}}  {'rows':>12}  {'bytes':>10}  {'seconds':>8}  {'rows/s':>10}"
        total = TableCopyStats("total", 0, rows=self.rows, bytes=self.bytes, started=0.0, finished=self.seconds)
        lines = [header, "-" * len(header)]
        for stats in [*sorted(self.tables.values(), key=lambda t: -t.bytes), None, total]:
            if stats is None:
                lines.append("-" * len(header))
                continue
            rate = stats.rows / stats.seconds if stats.seconds > 0 else 0.0
            lines.append(
                f"{stats.table:<{width}}  {stats.rows:>12,}  {_human_bytes(stats.bytes):>10}  "
                f"{stats.seconds:>8.1f}  {rate:>10,.0f}"
            )
        return "\n".join(lines)


def _human_count(n: float) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.1f}{unit}"
    return f"{int(n)}"


def _human_bytes(n: float) -> str:
    for unit, size in (("GB", 1 << 30), ("MB", 1 << 20), ("kB", 1 << 10)):
        if n >= size:
            return f"{n / size:.1f} {unit}" if n < 10 * size else f"{n / size:.0f} {unit}"
    return f"{int(n)} B"
