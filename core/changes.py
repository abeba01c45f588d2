"""Live across ComfyUIs on one store: one small object per collection that changes whenever the
collection does, watched with conditional reads. The cost of watching is a few cheap requests every
interval, whatever the number of templates, environments or runs.

- templates: their index (`templates/index.json`) is the marker: every template write changes it.
- environments, endpoints, executions: `changes/<collection>.json`, written after each change.

A ComfyUI's watcher tells its own browsers (`sagemaker.changed {collection}`) and they reload
that list; a change made here shows here at once (its own events) and there within one interval.

Only pages use the feed, so it reads the store only while one looks (core/pages.py): while none does it
reads nothing (on S3 a 304 is billed as a GET: 4 every 1.5 s are about 6.9 million a month per ComfyUI,
$2.76 at S3 Standard's GET price) and looks again whether one does every IDLE_S (no request), or at once when
one subscribes. Its ETags outlive the quiet
time: a page that comes back is told what changed while nobody looked.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable

from .pages import Pages
from .store import KeyNotFound, Store
from .templates import INDEX_KEY, now

log = logging.getLogger("comfyui_sagemaker")
MARKERS = {
    "templates": INDEX_KEY,
    "environments": "changes/environments.json",
    "endpoints": "changes/endpoints.json",
    "executions": "changes/executions.json",
}
# Collections whose changes come in bursts (a run is created, starts and ends within a second): their marker is
# written once, this many seconds after the first change of a burst, instead of once per change.
COALESCE_S = {"executions": 0.5}
INTERVAL = 1.5  # seconds: a change elsewhere shows within ~2 s (the issue asks for 5)
IDLE_S = 60.0  # while no page looks: how often the feed asks whether one does (no store request)


class ChangeFeed:
    """`pages`: who looks (None: always someone, as for a process with no pages of its own to ask);
    `wait(event, seconds)` sleeps until `event` is set or the seconds pass (tests: a fake clock's)."""

    def __init__(self, store: Store, by: str = "", pages: Pages | None = None,
                 wait: Callable[[threading.Event, float], object] | None = None):
        self.store = store
        self.by = by
        self.pages = pages
        self._wait = wait or (lambda event, seconds: event.wait(seconds))
        self._stop = threading.Event()
        self._wake = threading.Event()  # a page subscribed, or the feed stops
        if pages is not None:
            pages.waking(self._wake)
        self._thread: threading.Thread | None = None
        self._pending: dict[str, threading.Timer] = {}  # collection -> the write that will say its changes
        self._pending_lock = threading.Lock()

    def touch(self, collection: str) -> None:
        """Say `collection` changed (templates say it by their index already); a collection of COALESCE_S is
        said by one write after a burst's first change (any change made before that write is said by it)."""
        if collection == "templates":
            return
        delay = COALESCE_S.get(collection)
        if delay is None:
            self._mark(collection)
            return
        with self._pending_lock:
            if collection in self._pending:
                return
            timer = self._pending[collection] = threading.Timer(delay, self._flush, args=(collection,))
        timer.daemon = True
        timer.start()

    def _flush(self, collection: str) -> None:
        with self._pending_lock:
            timer = self._pending.pop(collection, None)
        if timer is not None:
            timer.cancel()
            self._mark(collection)

    def flush(self) -> None:
        """Write the markers still pending now (the feed's services close)."""
        for collection in list(self._pending):
            self._flush(collection)

    def _mark(self, collection: str) -> None:
        try:
            self.store.put(MARKERS[collection], json.dumps({"at": now(), "by": self.by}).encode())
        except Exception as err:  # liveness is a courtesy: a change never fails for it
            log.warning("comfyui-sagemaker: cannot mark %s changed: %s", collection, err)

    def start(self, on_change: Callable[[str], None], interval: float = INTERVAL) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._loop, args=(on_change, interval), daemon=True,
                                        name="sagemaker-changes")
        self._thread.start()

    def stop(self) -> None:
        self.flush()
        self._stop.set()
        self._wake.set()
        if self.pages is not None:
            self.pages.unwaking(self._wake)

    def _looking(self) -> bool:
        return self.pages is None or self.pages.looking()

    def _loop(self, on_change: Callable[[str], None], interval: float) -> None:
        etags: dict[str, str | None] = {c: self._etag(k) for c, k in MARKERS.items()}  # now: nothing new yet
        while True:
            if self._looking():  # a page renewing its subscription does not make the feed look sooner
                self._wait(self._stop, interval)
            else:  # a page subscribing wakes it
                self._wait(self._wake, IDLE_S)
            self._wake.clear()
            if self._stop.is_set():
                return
            if self._looking():
                self._poll(etags, on_change)

    def _poll(self, etags: dict[str, str | None], on_change: Callable[[str], None]) -> None:
        for collection, key in MARKERS.items():
            try:
                got = self.store.get_if_changed(key, etags[collection])
            except KeyNotFound:
                continue
            except Exception as err:  # a passing store error: look again next time
                log.debug("change feed: %s", err)
                continue
            if got is not None:
                etags[collection] = got.etag
                try:
                    on_change(collection)
                except Exception:  # a listener's error is its own: the feed goes on telling the next changes
                    log.exception("comfyui-sagemaker: telling the pages that %s changed failed", collection)

    def _etag(self, key: str) -> str | None:
        try:
            return self.store.get(key).etag
        except Exception:
            return None
