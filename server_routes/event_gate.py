"""Who receives the extension's broadcasts (sagemaker.job, .endpoint, .execution, .input).

ComfyUI's websocket takes any client that reaches its port. Where no token is
needed (loopback, none configured) a broadcast goes to every browser, as
before. Where one is needed, only to the browsers that subscribed through
`POST /sagemaker/events/subscribe {client_id}`, which the guard lets through
with the token only. Events meant for one browser (a run's ComfyUI events, to
the client id that queued it) go to that browser as they always did.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable

MAX_SUBSCRIBERS = 1000  # browsers come and go: the oldest subscriptions are dropped first


class EventGate:
    def __init__(self, send: Callable[..., None], token_required: Callable[[], bool]):
        self._send = send
        self._required = token_required
        self._subscribers: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()

    def subscribe(self, client_id: str) -> None:
        with self._lock:
            self._subscribers[client_id] = None
            self._subscribers.move_to_end(client_id)
            while len(self._subscribers) > MAX_SUBSCRIBERS:
                self._subscribers.popitem(last=False)

    def forget_subscribers(self) -> None:
        """The token changed: a page subscribed with the old one must subscribe again with the new one."""
        with self._lock:
            self._subscribers.clear()

    def send(self, event: str, data: dict, sid: str | None = None, required: bool | None = None) -> None:
        """`required` overrides whether a token gates this broadcast (the configuration's change itself
        goes out as the configuration before it was gated)."""
        if sid is not None or not (self._required() if required is None else required):
            self._send(event, data, sid)
            return
        with self._lock:
            subscribers = list(self._subscribers)
        for client_id in subscribers:
            self._send(event, data, client_id)


