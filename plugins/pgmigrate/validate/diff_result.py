"""What a row diff reports: `TableDiff` per table (its stable JSON form is documented in `row_diff`), the
differing rows (`RowDifference`), values as JSON types, and the text an operator reads in the task log
(`format_diff`)."""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from datetime import time as dtime
from typing import Any, Literal

from pgmigrate.core.catalog import TableRef
from pgmigrate.validate.key_ranges import KeyRange

Mode = Literal["full", "sample"]


@dataclass(frozen=True)
class RowDifference:
    key: dict[str, Any]  # primary key column -> value; for a keyless table, the whole (example) row
    kind: Literal["missing", "extra", "changed"]
    columns: list[str] = field(default_factory=list)  # differing columns of a changed row

    def as_dict(self) -> dict[str, Any]:
        return {"key": dict(self.key), "kind": self.kind, "columns": list(self.columns)}


@dataclass
class TableDiff:
    table: TableRef
    mode: Mode
    primary_key: list[str] = field(default_factory=list)
    source_rows: int | None = None
    target_rows: int | None = None
    chunks: int = 0
    sampled: int = 0
    missing: list[RowDifference] = field(default_factory=list)
    extra: list[RowDifference] = field(default_factory=list)
    changed: list[RowDifference] = field(default_factory=list)
    missing_count: int = 0
    extra_count: int = 0
    changed_count: int = 0
    in_flight: list[dict[str, Any]] = field(default_factory=list)
    in_flight_count: int = 0
    differing_chunks: list[str] = field(default_factory=list)  # row_diff=False: key ranges that still differ
    attempts: int = 0
    seconds: float = 0.0
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and not (
            self.missing_count or self.extra_count or self.changed_count or self.differing_chunks
        )

    def as_dict(self) -> dict[str, Any]:
        """The stable JSON-able form documented in the module docstring."""
        return {
            "table": self.table.qualified,
            "schema": self.table.schema,
            "name": self.table.name,
            "mode": self.mode,
            "ok": self.ok,
            "error": self.error,
            "primary_key": list(self.primary_key),
            "source_rows": self.source_rows,
            "target_rows": self.target_rows,
            "chunks": self.chunks,
            "sampled": self.sampled,
            "missing": [d.as_dict() for d in self.missing],
            "missing_count": self.missing_count,
            "extra": [d.as_dict() for d in self.extra],
            "extra_count": self.extra_count,
            "changed": [d.as_dict() for d in self.changed],
            "changed_count": self.changed_count,
            "in_flight": [dict(k) for k in self.in_flight],
            "in_flight_count": self.in_flight_count,
            "differing_chunks": list(self.differing_chunks),
            "attempts": self.attempts,
            "seconds": round(self.seconds, 3),
        }


def jsonable(value: Any, max_text: int | None = None) -> Any:
    """A value as a JSON type; text longer than `max_text` is cut (example rows of keyless tables)."""
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, datetime | date | dtime):
        return value.isoformat()
    if isinstance(value, bytes | bytearray | memoryview):
        text = "\\x" + bytes(value).hex()
    elif isinstance(value, list | tuple):
        return [jsonable(v, max_text) for v in value]
    elif isinstance(value, dict):
        return {str(k): jsonable(v, max_text) for k, v in value.items()}
    else:
        text = value if isinstance(value, str) else str(value)
    if max_text is not None and len(text) > max_text:
        return text[:max_text] + f"… ({len(text)} chars)"
    return text


def sorted_keys(keys: Iterable[Hashable]) -> list:
    """Keys in their natural order when comparable (stable reports), else by their text."""
    keys = list(keys)
    try:
        return sorted(keys)
    except TypeError:
        return sorted(keys, key=repr)


def describe_range(rng: KeyRange) -> str:
    """A key range for people: "[5001 .. 10001)", "[-inf .. 5001)", "[25001 .. +inf]"."""

    def show(bound: tuple | None, infinity: str) -> str:
        return infinity if bound is None else ",".join(str(v) for v in bound)

    return f"[{show(rng.lower, '-inf')} .. {show(rng.upper, '+inf')}{']' if rng.last else ')'}"


def _key_text(key: dict[str, Any]) -> str:
    return ", ".join(f"{name}={value}" for name, value in key.items())


def format_diff(diffs: list[TableDiff], keys_per_kind: int = 5) -> str:
    """A few lines per table for task logs and the CLI: the verdict, then the first keys of each kind."""
    lines = []
    for d in diffs:
        rows = f"sampled {d.sampled} keys" if d.mode == "sample" else f"{d.source_rows} rows"
        head = f"{d.table.qualified}: "
        if d.error:
            lines.append(head + f"NOT COMPARED: {d.error}")
            continue
        flight = f"; {d.in_flight_count} rows in flight (changed during every re-check)" if d.in_flight_count else ""
        if d.ok:
            lines.append(head + f"identical ({d.mode}, {rows}, {d.seconds:.1f} s){flight}")
            continue
        if d.differing_chunks:
            shown = ", ".join(d.differing_chunks[:keys_per_kind])
            extra = len(d.differing_chunks) - keys_per_kind
            more = f" … (+{extra} more)" if extra > 0 else ""
            lines.append(head + f"DIFFERS (checksums only): {len(d.differing_chunks)} key ranges differ: {shown}{more}")
            continue
        lines.append(
            head + f"DIFFERS ({d.mode}, {rows}): {d.missing_count} missing on target, {d.extra_count} extra on "
            f"target, {d.changed_count} changed{flight}"
        )
        if not d.primary_key:
            for kind, examples in (("missing on target", d.missing), ("extra on target", d.extra)):
                for row in examples[:keys_per_kind]:
                    lines.append(f"  {kind}, e.g. ({_key_text(row.key)})")
            continue
        for kind, items, count in (
            ("missing on target", d.missing, d.missing_count),
            ("extra on target", d.extra, d.extra_count),
            ("changed", d.changed, d.changed_count),
        ):
            if not count:
                continue
            shown = [
                _key_text(r.key) + (f" ({', '.join(r.columns)})" if r.columns else "") for r in items[:keys_per_kind]
            ]
            more = f" … (+{count - len(shown)} more)" if count > len(shown) else ""
            lines.append(f"  {kind}: {'; '.join(shown)}{more}")
    return "\n".join(lines)


def classify_rows(differing: set, source: dict, target: dict) -> tuple[list, list, list]:
    """(missing on target, extra on target, changed), each in key order."""
    missing = [k for k in sorted_keys(differing) if k in source and k not in target]
    extra = [k for k in sorted_keys(differing) if k in target and k not in source]
    changed = [k for k in sorted_keys(differing) if k in source and k in target]
    return missing, extra, changed


def multiset_difference(hashes: Iterable[str], source: dict[str, int], target: dict[str, int]) -> tuple[int, int]:
    """(rows missing on the target, rows extra on the target) of a keyless table, from row-hash counts."""
    missing = extra = 0
    for h in hashes:
        n = source.get(h, 0) - target.get(h, 0)
        missing, extra = missing + max(n, 0), extra + max(-n, 0)
    return missing, extra


def differing_columns(columns: list[str], source: tuple, target: tuple) -> list[str]:
    """Names of the columns whose (hashed) values differ between two readings of one row."""
    return [name for name, s, t in zip(columns, source, target, strict=True) if s != t]
