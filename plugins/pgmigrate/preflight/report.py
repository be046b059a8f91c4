"""Preflight's report: every check's result, one line each for the task log, and when any failed the message
that lists them all with their fixes and the missing privileges as one block of statements per server.

Apart from `checks` (which runs the checks against the servers) so that how the outcome reads is built and
tested from results alone, without a database.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from pgmigrate.preflight.rules import CheckResult


class PreflightError(RuntimeError):
    def __init__(self, message: str, report: PreflightReport) -> None:
        super().__init__(message)
        self.report = report


@dataclass
class PreflightReport:
    migration_id: str
    results: list[CheckResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.results)

    @property
    def failed(self) -> list[CheckResult]:
        return [r for r in self.results if not r.ok and not r.skipped]

    @property
    def skipped(self) -> list[CheckResult]:
        return [r for r in self.results if r.skipped]

    def summary(self) -> str:
        """One line per check, for the task log."""
        lines = [f"Preflight of migration {self.migration_id!r}:"]
        for r in self.results:
            text = r.problem if not r.ok else r.detail
            lines.append(f"  {r.status} {r.name}" + (f": {text}" if text else ""))
        return "\n".join(lines)

    def failure_message(self) -> str:
        failed = self.failed
        lines = [f"Preflight of migration {self.migration_id!r} failed {len(failed)} of {len(self.results)} checks:"]
        for i, r in enumerate(failed, 1):
            lines.append(f"{i}. [{r.name}] {r.problem}")
            if r.fix:
                lines.append("   Fix: " + r.fix.replace("\n", "\n        "))
        if self.skipped:
            lines.append(
                "Not run because a connection failed (rerun after fixing it): "
                + ", ".join(r.name for r in self.skipped)
                + "."
            )
        lines.extend(self.grant_script())
        return "\n".join(lines)

    def grant_script(self) -> list[str]:
        """The missing privileges' statements as one block per server, to paste into psql as a superuser."""
        by_server: dict[str, list[str]] = {}
        for r in self.failed:
            if r.statements:
                by_server.setdefault(r.run_on, []).extend(r.statements)
        if not by_server:
            return []
        lines = ["Missing privileges: run as a superuser, then rerun preflight:"]
        for run_on, statements in by_server.items():
            lines.append(f"-- on the {run_on}:")
            lines.extend(dict.fromkeys(statements))
        return lines

    def raise_if_failed(self) -> None:
        if not self.ok:
            raise PreflightError(self.failure_message(), self)

    def to_dict(self) -> dict[str, Any]:
        return {"migration_id": self.migration_id, "ok": self.ok, "results": [asdict(r) for r in self.results]}
