"""Rows in flight versus real differences: every differing key is re-read on the source before and after a
pause longer than the pipeline's lag and on the target in between (`key_ranges.classify_keys`), for all
tables in shared rounds, one pause per round for all of them."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from pgmigrate.validate.diff_result import sorted_keys
from pgmigrate.validate.key_ranges import classify_keys

log = logging.getLogger(__name__)


@dataclass
class Recheck:
    """One table's suspect keys being re-checked (`recheck_together`); the readings are keyed like the keys."""

    keys: set
    read_source: Callable[[list], dict]
    read_target: Callable[[list], dict]
    differing: set = field(default_factory=set)
    changing: set = field(default_factory=set)
    source: dict = field(default_factory=dict)
    target: dict = field(default_factory=dict)
    used: int = 0
    previous: set | None = None
    settled: bool = False
    seconds: float = 0.0  # spent in the rounds this check took part in


def recheck_together(
    checks: list[Recheck], attempts: int, pause_seconds: float, sleep: Callable[[float], None]
) -> None:
    """Separate real differences from rows in flight, for several tables in shared rounds. Each round reads the
    source of every open check, pauses once, then reads the target and the source again (`classify_keys`). A
    check settles when nothing differs any more, or when every differing key also differed in its previous
    round with nothing in flight; keys still in flight after `attempts` rounds are counted as such, not
    reported as differences. One pause per round for all tables: a validation of many hot tables waits at most
    `attempts` pauses, not that many per table."""
    round_no = 0
    while active := [c for c in checks if c.keys and not c.settled and c.used < attempts]:
        round_no += 1
        log.info(
            "row diff: re-check %d/%d of %d rows in %d tables (pause %.0f s)",
            round_no,
            attempts,
            sum(len(c.keys) for c in active),
            len(active),
            pause_seconds,
        )
        started = time.monotonic()
        ordered = [sorted_keys(c.keys) for c in active]
        before = [c.read_source(keys) for c, keys in zip(active, ordered, strict=True)]
        sleep(pause_seconds)
        for check, keys, earlier in zip(active, ordered, before, strict=True):
            check.used += 1
            check.target = check.read_target(keys)
            check.source = check.read_source(keys)
            check.differing, check.changing = classify_keys(earlier, check.target, check.source, check.keys)
            previous, check.previous = check.previous, check.differing
            if check.differing and not check.changing and previous is not None and check.differing <= previous:
                check.settled = True
            check.keys = check.differing | check.changing
        for check in active:
            check.seconds += time.monotonic() - started
