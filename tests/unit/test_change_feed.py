"""The change feed (core/changes.py) outlives its listener: a listener that raises on one change is logged and the
feed tells the next change (a ComfyUI's pages stopped hearing of the others' changes for good when one notice's
handler raised: a stub's method of the same name with another signature)."""

from __future__ import annotations

import threading

from comfyui_sagemaker.core.changes import ChangeFeed
from comfyui_sagemaker.local.folder_store import FolderStore
from harness.waiting import wait_for


def test_a_listener_that_raises_does_not_stop_the_feed(tmp_path, caplog):
    store = FolderStore(str(tmp_path / "store"))
    told: list[str] = []
    first = threading.Event()

    def on_change(collection: str) -> None:
        if not first.is_set():
            first.set()
            raise TypeError("a listener's own bug")
        told.append(collection)

    feed = ChangeFeed(store, "here")
    try:
        feed.start(on_change, interval=0.01)
        wait_for(lambda: feed._thread is not None and feed._thread.is_alive(), 60, "the feed's thread")
        elsewhere = ChangeFeed(store, "elsewhere")
        while not first.is_set():  # until the feed has seen a change (its first look is its starting point)
            elsewhere.touch("environments")
            first.wait(0.2)
        elsewhere.touch("endpoints")
        wait_for(lambda: "endpoints" in told, 60, "the next change told after the listener raised")
        assert feed._thread.is_alive()
        assert "telling the pages that environments changed failed" in caplog.text
    finally:
        feed.stop()
