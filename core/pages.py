"""The pages that look at this ComfyUI: whether its loops need to read the store now.

Reading the store costs money on S3 (a 304 is billed as a GET), so what only pages use (the change feed) reads
nothing while no page looks, and the maintenance that must go on without one (the sweep for runs whose
follower died) reads at its slow pace (core/changes.py, core/followers.py).

A page subscribes (`POST /sagemaker/events/subscribe {client_id}`) when it loads, when its websocket
reconnects, when it becomes visible again, and every RENEW_S (web/js/sagemaker.js) while it is visible. Its
subscription counts while
- its lease runs (LEASE_S since it last subscribed), and
- its websocket is open (ComfyUI's `PromptServer.sockets` holds its client id), or it subscribed less than
  CONNECT_GRACE_S ago (a page subscribes as it loads, before its websocket may be open).
So a reload (the frontend keeps its client id in sessionStorage) renews the same subscription; a closed tab
stops counting when its websocket closes; a hidden tab stops renewing and counts no more once its lease ends;
shown again, it subscribes, the loops look at once, and the lists that changed meanwhile reload. Where the
host does not say which websockets are open (`connected` None), the lease alone decides.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable

LEASE_S = 300.0  # a page renews every RENEW_S (60 s) while visible; a hidden tab's timers may run once a minute
CONNECT_GRACE_S = 30.0
MAX_PAGES = 1000  # pages come and go: the oldest subscriptions are dropped first


class Pages:
    """`connected(client_id)`: whether that page's websocket is open now (the host's; None if it cannot
    say); `clock`: seconds, monotonic (tests: a fake)."""

    def __init__(self, connected: Callable[[str], bool] | None = None, lease: float = LEASE_S,
                 clock: Callable[[], float] = time.monotonic):
        self._connected = connected
        self.lease = lease
        self._clock = clock
        self._subscribed: OrderedDict[str, float] = OrderedDict()  # client id -> when it last subscribed
        self._wakes: list[threading.Event] = []
        self._lock = threading.Lock()

    def subscribe(self, client_id: str) -> None:
        """A page looks (or still looks): its lease starts again, and the loops waiting for a page wake."""
        with self._lock:
            self._subscribed[client_id] = self._clock()
            self._subscribed.move_to_end(client_id)
            while len(self._subscribed) > MAX_PAGES:
                self._subscribed.popitem(last=False)
            wakes = list(self._wakes)
        for wake in wakes:
            wake.set()

    def waking(self, event: threading.Event) -> None:
        """`event` is set whenever a page subscribes (a loop sleeping while nobody looks waits on it)."""
        with self._lock:
            self._wakes.append(event)

    def unwaking(self, event: threading.Event) -> None:
        """`event`'s loop has stopped (its services were replaced)."""
        with self._lock:
            if event in self._wakes:
                self._wakes.remove(event)

    def looking(self) -> bool:
        """Whether at least one page looks now."""
        return self.count() > 0

    def count(self) -> int:
        """The pages that look now; subscriptions whose lease ended are forgotten."""
        now = self._clock()
        with self._lock:
            for client_id in [c for c, at in self._subscribed.items() if now - at >= self.lease]:
                del self._subscribed[client_id]
            subscribed = list(self._subscribed.items())
        return sum(1 for client_id, at in subscribed if now - at < CONNECT_GRACE_S or self._open(client_id))

    def _open(self, client_id: str) -> bool:
        if self._connected is None:
            return True
        try:
            return bool(self._connected(client_id))
        except Exception:  # the host's shape changed: the lease alone decides, as without the hook
            return True
