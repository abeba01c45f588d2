"""A clock that moves when the test says, for loops that sleep on it; and a store that counts its calls."""

from __future__ import annotations

import threading
import time

from .waiting import wait_for


class Clock:
    """A time function (time.time's shape) that says `now` until the test moves it."""

    def __init__(self, now: float = 0.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


class FakeClock:
    """Time that moves when the test says. A loop's sleep, `wait(event, seconds)`, ends when its event is set
    or the clock has moved past its end; `advance` returns once every loop sleeps again."""

    def __init__(self, loops: int):
        self.now = 0.0
        self.loops = loops
        self._cond = threading.Condition()
        self._sleeping: dict[int, tuple[float, threading.Event]] = {}

    def time(self) -> float:
        return self.now

    def wait(self, event: threading.Event, seconds: float) -> bool:
        me = threading.get_ident()
        with self._cond:
            self._sleeping[me] = (self.now + seconds, event)
            self._cond.notify_all()
            while not event.is_set() and self.now < self._sleeping[me][0]:
                self._cond.wait(0.02)  # an event set elsewhere does not notify this condition
            del self._sleeping[me]
            self._cond.notify_all()
        return event.is_set()

    def settled(self) -> bool:
        with self._cond:
            return len(self._sleeping) == self.loops and all(
                end > self.now and not event.is_set() for end, event in self._sleeping.values())

    def sleeps(self) -> list[float]:
        """How long each loop sleeps from now."""
        with self._cond:
            return sorted(end - self.now for end, _ in self._sleeping.values())

    def advance(self, seconds: float, settle: bool = True) -> None:
        """Move on; with `settle`, return once the loops sleep again (not when the step ends a loop)."""
        with self._cond:
            self.now += seconds
            self._cond.notify_all()
        if settle:
            wait_for(self.settled, 60, "the loops to sleep again")


class CountingStore:
    """The store, with every call of its interface counted (what would be a request on S3)."""

    def __init__(self, inner):
        self.inner = inner
        self.calls: list[str] = []
        self.times: list[float] = []  # when each call was made (time.monotonic)
        self._lock = threading.Lock()

    def __getattr__(self, name: str):
        attr = getattr(self.inner, name)
        if name.startswith("_") or not callable(attr):
            return attr

        def counted(*args, **kwargs):
            with self._lock:
                self.calls.append(name)
                self.times.append(time.monotonic())
            return attr(*args, **kwargs)

        return counted

    def taken(self) -> list[str]:
        """The calls since the last look."""
        with self._lock:
            calls, self.calls = self.calls, []
        return calls
