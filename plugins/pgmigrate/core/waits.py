"""What a wait looks at, once: done, still waiting, or failed for good.

Each deferrable sensor has one plain function returning a `WaitStatus`; the sensor's `poke()` (deferrable=False)
and its trigger's `run()` (deferred, in the triggerer) both call it, so both paths judge alike, a FAILED connector
included.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class WaitStatus:
    done: bool
    message: str  # what an operator reads in the task log at every look
    fatal: bool = False  # retrying the wait cannot help until someone fixes the cause
    result: dict[str, Any] = field(default_factory=dict)  # the sensor's XCom when done

    @classmethod
    def failed(cls, message: str) -> WaitStatus:
        return cls(False, message, fatal=True)
