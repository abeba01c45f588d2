"""A test after a browser test in the same process runs with no event loop marked running (Playwright's sync
API leaves its loop marked between calls): asyncio.run works in it, and Playwright finds its mark back."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from harness.loops import outside_playwrights_loop


class Item:
    def __init__(self, *markers: str):
        self.markers = markers

    def get_closest_marker(self, name: str):
        return name if name in self.markers else None


async def nothing() -> int:
    return 7


@contextlib.contextmanager
def playwrights_mark():
    """The main thread as Playwright leaves it between two of its calls (set in the test itself: the suite's
    hooks take it away around each phase of a test that is not a browser test, this file's too)."""
    loop = asyncio.new_event_loop()
    asyncio._set_running_loop(loop)
    try:
        yield loop
    finally:
        asyncio._set_running_loop(None)
        loop.close()


def test_the_mark_is_what_breaks_asyncio_run():
    with playwrights_mark():
        coro = nothing()
        with pytest.raises(RuntimeError, match="running event loop"):
            asyncio.run(coro)
        coro.close()


def test_another_test_runs_outside_it_and_the_mark_is_put_back():
    with playwrights_mark() as mark:
        phase = outside_playwrights_loop(Item())
        next(phase)
        assert asyncio.run(nothing()) == 7
        with pytest.raises(StopIteration):
            next(phase)
        assert asyncio._get_running_loop() is mark


def test_also_when_the_test_fails():
    with playwrights_mark() as mark:
        phase = outside_playwrights_loop(Item())
        next(phase)
        with pytest.raises(ValueError):
            phase.throw(ValueError("the test failed"))
        assert asyncio._get_running_loop() is mark


@pytest.mark.parametrize("item, last", [(Item("browser"), False), (Item(), True)])
def test_a_browser_test_and_the_sessions_last_teardown_keep_the_mark(item, last):
    with playwrights_mark() as mark:
        phase = outside_playwrights_loop(item, last=last)
        next(phase)
        assert asyncio._get_running_loop() is mark
        with pytest.raises(StopIteration):
            next(phase)
