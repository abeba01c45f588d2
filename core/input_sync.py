"""Input sync: files in ComfyUI's input folder reach the store by themselves, by content.

The watcher (local/input_watcher.py) calls `notify(name)` for every change
it sees; this module decides when a file is complete (a close-write event,
or the same size and mtime on two looks `settle` apart), uploads it through
the one primitive (`core.inputs.put_inputs`), and keeps an index
name -> (size, mtime_ns, sha256, state) in a JSON file, so executions find a
digest without waiting and renames and deletes are recorded. Uploads run on
a bounded pool; a failing store is retried with backoff, then the file is
`failed` with the reason, and the next change or scan tries again.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from .daemon_pool import DaemonPool
from .errors import SageMakerError
from .fs import scratch
from .fs.hashing import HashCache
from .inputs import put_inputs
from .net.retry import Backoff, retry
from .store import Store

log = logging.getLogger("comfyui_sagemaker")


class InputSync:
    def __init__(self, store: Store, input_dir: Path, cache: HashCache, index_path: Path,
                 on_change: Callable[[dict], None] | None = None, workers: int = 4, settle: float = 0.1,
                 retries: int = 5, backoff: float = 0.5):
        self.store = store
        self.input_dir = Path(input_dir)
        self.cache = cache
        self.index_path = Path(index_path)
        self.on_change = on_change or (lambda entry: None)
        self.settle = settle
        self.retries = retries
        self.backoff = backoff
        # Daemon threads: ComfyUI's exit never waits for an upload (a file cut short is synced again at the next
        # start: the index names only what was stored whole).
        self.pool = DaemonPool(max_workers=workers, thread_name_prefix="sagemaker-input-sync")
        self._lock = threading.Lock()
        self._pending: set[str] = set()  # names queued or in flight (each at most once)
        self._again: set[str] = set()  # changed again while in flight
        self.index: dict[str, dict] = self._load()
        self._closed = False

    # the index

    def _load(self) -> dict[str, dict]:
        try:
            data = json.loads(self.index_path.read_text())
            return data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {}

    def _save(self) -> None:
        tmp = self.index_path.with_name(scratch.temp_name(scratch.HIDDEN, f".{self.index_path.name}"))
        try:
            self.index_path.parent.mkdir(parents=True, exist_ok=True)
            with self._lock:
                data = json.dumps(self.index)
            tmp.write_text(data)
            os.replace(tmp, self.index_path)
        except OSError as err:
            log.warning("input sync: cannot save its index: %s", err)

    def _set(self, name: str, **entry) -> None:
        with self._lock:
            self.index[name] = {"name": name, **entry}
            snapshot = dict(self.index[name])
        self._save()
        self.on_change(snapshot)

    def entries(self) -> list[dict]:
        with self._lock:
            listed = sorted(self.index.values(), key=lambda e: e["name"])
            pending = set(self._pending)
        return [{**e, "state": "pending"} if e["name"] in pending and e["state"] != "pending" else e for e in listed]

    def digest(self, name: str) -> str | None:
        """The synced digest of an input that has not changed since, else None."""
        path = self.input_dir / name
        with self._lock:
            entry = self.index.get(name)
        if not entry or entry.get("state") != "synced":
            return None
        try:
            st = path.stat()
        except OSError:
            return None
        return entry["sha256"] if (st.st_size, st.st_mtime_ns) == (entry["size"], entry["mtime_ns"]) else None

    # events

    def relative(self, path: str | os.PathLike) -> str | None:
        try:
            rel = Path(path).resolve().relative_to(self.input_dir.resolve()).as_posix()
        except ValueError:
            return None
        if any(part.startswith(".") for part in rel.split("/")):
            return None  # temporary and hidden files (ours and others') are not inputs
        return rel

    def notify(self, path: str | os.PathLike, closed: bool = False) -> None:
        """A file was created or modified (`closed`: its writer closed it, so it is complete)."""
        name = self.relative(path)
        if name is None or self._closed:
            return
        with self._lock:
            if name in self._pending:
                self._again.add(name)
                return
            self._pending.add(name)
        self.pool.submit(self._sync, name, closed)

    def removed(self, path: str | os.PathLike) -> None:
        name = self.relative(path)
        if name is None:
            return
        with self._lock:
            gone = self.index.pop(name, None)
        if gone is not None:
            self._save()
            self.on_change({"name": name, "state": "deleted"})

    def moved(self, src: str | os.PathLike, dest: str | os.PathLike) -> None:
        old, new = self.relative(src), self.relative(dest)
        with self._lock:
            entry = self.index.pop(old, None) if old else None
            if entry is not None and new is not None:
                self.index[new] = {**entry, "name": new}
        if entry is not None:
            self._save()
        if new is not None:
            self.notify(dest, closed=True)  # same bytes: the hash cache answers, no upload

    def scan(self) -> int:
        """Queue every file the index does not know in its current form (files added while ComfyUI was down)."""
        n = 0
        for dirpath, dirnames, filenames in os.walk(self.input_dir):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            for filename in filenames:
                name = self.relative(os.path.join(dirpath, filename))
                if name and self.digest(name) is None:
                    self.notify(os.path.join(dirpath, filename), closed=True)
                    n += 1
        with self._lock:
            known = list(self.index)
        for name in known:
            if not (self.input_dir / name).exists():
                self.removed(self.input_dir / name)
        return n

    # work

    def _stable(self, path: Path) -> os.stat_result | None:
        """Wait until the file stops changing; None if it disappears."""
        try:
            before = path.stat()
            while True:
                time.sleep(self.settle)
                after = path.stat()
                if (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns):
                    return after
                before = after
        except FileNotFoundError:
            return None

    def _sync(self, name: str, closed: bool) -> None:
        path = self.input_dir / name
        try:
            try:
                st = path.stat() if closed else self._stable(path)
            except FileNotFoundError:
                st = None
            if st is None or not path.is_file():
                self.removed(path)
                return
            if self.digest(name):
                return
            self._set(name, state="pending", size=st.st_size, mtime_ns=st.st_mtime_ns, sha256=None, error=None)
            try:
                # A failing store is tried again while the file is there and the sync open.
                sha = retry(lambda: put_inputs(self.store, self.input_dir, [name], self.cache)[name],
                            Backoff(self.backoff, cap=30, attempts=self.retries + 1),
                            lambda err: isinstance(err, SageMakerError) and path.exists() and not self._closed)
            except SageMakerError as err:
                if not path.exists():
                    self.removed(path)
                    return
                self._set(name, state="failed", size=st.st_size, mtime_ns=st.st_mtime_ns, sha256=None,
                          error=err.message)
                return
            self._set(name, state="synced", size=st.st_size, mtime_ns=st.st_mtime_ns, sha256=sha, error=None)
        except Exception as err:  # the watcher must survive anything one file does
            log.exception("input sync of %s failed", name)
            self._set(name, state="failed", size=None, mtime_ns=None, sha256=None, error=str(err))
        finally:
            with self._lock:
                self._pending.discard(name)
                again = name in self._again
                self._again.discard(name)
            if again:
                self.notify(path)

    def wait_idle(self, timeout: float = 30) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if not self._pending:
                    return True
            time.sleep(0.02)
        return False

    def close(self) -> None:
        self._closed = True
        self.pool.shutdown(wait=True, cancel_futures=True)
