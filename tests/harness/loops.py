"""The main thread's event loop between tests (tests/conftest.py's runtest hooks)."""

from __future__ import annotations

import asyncio


def outside_playwrights_loop(item, last: bool = False):
    """Playwright's sync API (the browser tier's session-long Playwright) marks its event loop as running in
    the main thread between its calls, on purpose; a test that runs after a browser test in the same process
    would meet it (asyncio.run: "cannot be called from a running event loop"). Every other test's phases run
    with no loop marked running, and Playwright's mark is put back after them. Not around the session's
    last teardown: Playwright itself stops there, in its loop."""
    if item.get_closest_marker("browser") is not None or last:
        yield
        return
    held = asyncio._get_running_loop()
    asyncio._set_running_loop(None)
    try:
        yield
    finally:
        asyncio._set_running_loop(held)
