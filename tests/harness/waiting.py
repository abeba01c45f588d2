"""Polling with a deadline: a condition that never holds fails the test instead of hanging it. Deadlines are
generous (a busy two-core machine must not miss them): they bound a hang, they do not measure anything."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(cond: Callable[[], T], timeout: float = 120, what: str = "condition") -> T:
    """Call `cond` until it returns something truthy; return that."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"{what} not met in {timeout} s")
