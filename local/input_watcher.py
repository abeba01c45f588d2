"""Watches ComfyUI's input folder with watchdog and feeds core.input_sync.

On Linux (inotify) a file is taken when its writer closes it, so a file
written slowly is uploaded once, complete; elsewhere, when its size and mtime
settle. Uploads through ComfyUI's /upload/image land in the same folder and
take the same path.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from ..core.input_sync import InputSync

if TYPE_CHECKING:  # watchdog is imported when the watch starts
    from watchdog.observers.api import BaseObserver

log = logging.getLogger("comfyui_sagemaker")


class InputWatcher:
    def __init__(self, sync: InputSync):
        self.sync = sync
        self.observer: BaseObserver | None = None

    def start(self) -> None:
        from watchdog.events import FileSystemEventHandler
        from watchdog.observers import Observer

        sync = self.sync
        observer = Observer()
        close_events = type(observer).__name__ == "InotifyObserver"

        class Handler(FileSystemEventHandler):
            def on_closed(self, event):
                if not event.is_directory:
                    sync.notify(event.src_path, closed=True)

            def on_created(self, event):
                if not event.is_directory and not close_events:
                    sync.notify(event.src_path)

            def on_modified(self, event):
                if not event.is_directory and not close_events:
                    sync.notify(event.src_path)

            def on_deleted(self, event):
                if not event.is_directory:
                    sync.removed(event.src_path)

            def on_moved(self, event):
                if not event.is_directory:
                    sync.moved(event.src_path, event.dest_path)

        if not close_events:
            sync.settle = max(sync.settle, 1.0)  # no close events: wait for a quiet second
        sync.input_dir.mkdir(parents=True, exist_ok=True)
        observer.schedule(Handler(), str(sync.input_dir), recursive=True)
        observer.daemon = True
        observer.start()
        self.observer = observer
        queued = sync.scan()
        log.info("comfyui-sagemaker: watching %s (%d files to sync)", sync.input_dir, queued)

    def stop(self) -> None:
        if self.observer is not None:
            self.observer.stop()
            self.observer.join(timeout=5)
            self.observer = None

    @property
    def running(self) -> bool:
        return self.observer is not None
