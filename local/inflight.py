"""The invocations this process has sent to each local worker and not yet seen end.

A redeploy moves an endpoint's traffic to its new worker at once, but the old worker goes on with the runs it
was given: it is stopped when its count here falls to zero (`wait_drained`). Each run also keeps the worker it
went to (url and secret), so a cancel reaches that worker, not the endpoint's newer one.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class Route:
    """Where one invocation went: its worker's process, address and secret."""

    pid: int
    url: str
    token: str | None


class InFlight:
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._count: dict[int, int] = {}
        self._routes: dict[str, Route] = {}

    def begin(self, route: Route, execution_id: str | None) -> None:
        with self._cond:
            self._count[route.pid] = self._count.get(route.pid, 0) + 1
            if execution_id:
                self._routes[execution_id] = route

    def end(self, route: Route, execution_id: str | None) -> None:
        with self._cond:
            left = self._count.get(route.pid, 0) - 1
            if left > 0:
                self._count[route.pid] = left
            else:
                self._count.pop(route.pid, None)
            if execution_id and self._routes.get(execution_id) == route:
                del self._routes[execution_id]
            self._cond.notify_all()

    def count(self, pid: int) -> int:
        with self._cond:
            return self._count.get(pid, 0)

    def route(self, execution_id: str) -> Route | None:
        with self._cond:
            return self._routes.get(execution_id)

    def wait_drained(self, pid: int, limit: float) -> bool:
        """Until no invocation of this process is on worker `pid`, at most `limit` s; whether it drained."""
        deadline = time.monotonic() + limit
        with self._cond:
            return self._cond.wait_for(lambda: not self._count.get(pid), max(0.0, deadline - time.monotonic()))
