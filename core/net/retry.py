"""One way to try again: exponential backoff with a cap and jitter, bounded by a number of tries or a deadline.

`Backoff` says how long to pause before each next try; `retry` calls a function until it returns, pausing
between tries whose exception a predicate calls retryable. Callers whose tries do not raise (a webhook's HTTP
status, a ComfyUI that did not start) walk `Backoff.pauses` themselves; an asyncio caller awaits its own sleep.
The clock, the random source and the sleep are parameters, so tests run without waiting.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Backoff:
    """Pauses of `first`, then each `factor` times the last, at most `cap`; each multiplied by a random factor
    within 1 +- `jitter` (0.5: from half to one and a half). `attempts` counts the tries, the first included
    (None: as many as the deadline allows); `deadline`, in seconds from the first try (or a function giving it,
    read at each pause, for a limit that can change meanwhile), is one no pause may end past."""

    first: float
    factor: float = 2.0
    cap: float = math.inf
    jitter: float = 0.0
    attempts: int | None = None
    deadline: float | Callable[[], float] | None = None

    def pauses(self, clock: Callable[[], float] = time.monotonic,
               rand: Callable[[], float] = random.random) -> Iterator[float]:
        """The pause before each next try, in order; it ends where no further try is allowed. The deadline
        counts from this call (make it before the first try)."""
        return self._pauses(clock(), clock, rand)

    def _pauses(self, start: float, clock: Callable[[], float], rand: Callable[[], float]) -> Iterator[float]:
        delay, tries = self.first, 1
        while self.attempts is None or tries < self.attempts:
            pause = delay * (1 - self.jitter + 2 * self.jitter * rand()) if self.jitter else delay
            if self.deadline is not None:
                limit = self.deadline() if callable(self.deadline) else self.deadline
                if clock() - start + pause > limit:
                    return
            yield pause
            tries += 1
            delay = min(delay * self.factor, self.cap)


def retry(call: Callable[[], T], backoff: Backoff, retryable: Callable[[Exception], bool], *,
          sleep: Callable[[float], object] = time.sleep, clock: Callable[[], float] = time.monotonic,
          rand: Callable[[], float] = random.random) -> T:
    """call() until it returns. An exception `retryable` says no to, or one after the last try the backoff
    allows, is raised as it is."""
    pauses = backoff.pauses(clock, rand)
    while True:
        try:
            return call()
        except Exception as err:
            if not retryable(err):
                raise
            pause = next(pauses, None)
            if pause is None:
                raise
        sleep(pause)
