"""sha256 of model files, on demand, with a persistent cache.

Environments identify models by sha256, computed only for the models an
environment includes and cached by (absolute path, size, mtime_ns), so the
second publish of a 10 GB checkpoint reads nothing.

- `HashCache`: path -> (size, mtime_ns, sha256) kept in a JSON file.
- `hash_files`: digests of many files in a few threads, streaming through one
  reusable buffer per thread (flat memory whatever the file size), with
  progress, cancel, and a per-file error instead of a failed run.

`hash_files` blocks: callers on an event loop run it with `asyncio.to_thread`.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import re
import stat
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from ..errors import SageMakerError
from . import scratch
from .files import open_regular

# 1 MiB: the buffer stays in L2 next to the hash state; 4-8 MiB measured a few percent slower.
CHUNK_SIZE = 1 << 20
PROGRESS_INTERVAL = 0.25  # seconds between progress calls while files are read
SAVE_INTERVAL = 5.0  # seconds between cache saves during a run (plus one at its end)
CACHE_VERSION = 1

CHANGED = "changed while hashing (it may still be being written); hash again when it is complete"

log = logging.getLogger("comfyui_sagemaker")
_HEX64 = re.compile(r"[0-9a-f]{64}")


class HashCancelled(SageMakerError):
    """The run was cancelled; `results` holds what was known by then (cached, failed, finished files)."""

    code = "cancelled"

    def __init__(self, results: dict[str, HashResult]):
        super().__init__(f"hashing cancelled after {len(results)} file(s)")
        self.results = results


class Cancel(Protocol):
    """What `cancel` must offer: a `threading.Event` does."""

    def is_set(self) -> bool: ...


@dataclass(frozen=True, slots=True)
class HashResult:
    """One file's outcome: `sha256` (lowercase hex) or `error` (a sentence for the user), never both."""

    path: str  # absolute
    size: int | None  # bytes hashed; for an error, the size listed (None if unknown)
    sha256: str | None = None
    error: str | None = None
    cached: bool = False

    @property
    def ok(self) -> bool:
        return self.sha256 is not None


@dataclass(frozen=True, slots=True)
class Progress:
    bytes_done: int
    bytes_total: int
    files_done: int
    files_total: int
    current: str | None  # the file most recently started; None in the final call


class HashCache:
    """sha256 digests by absolute path, each valid while the file keeps its (size, mtime_ns).

    Loaded once from `path`: a missing, unreadable or corrupt file gives an empty
    cache (logged), never an error. `save` writes a temp file in the same folder
    and renames it over `path`, so a crash leaves the old or the new cache, never
    half of one. It is only a cache: two processes saving one file lose each
    other's new entries (the last save wins), which costs a re-hash, never a
    wrong digest. Thread-safe.
    """

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        self._lock = threading.Lock()
        self._save_lock = threading.Lock()  # one save at a time: an older snapshot never lands last
        self._entries = self._load()
        self._changes = 0
        self._saved_changes = 0
        self._saved_at = time.monotonic()

    def _load(self) -> dict[str, tuple[int, int, str]]:
        try:
            data = json.loads(self.path.read_bytes())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, RecursionError) as err:
            log.warning("hash cache %s is unreadable, starting empty: %s", self.path, err)
            return {}
        entries = data.get("entries") if isinstance(data, dict) and data.get("version") == CACHE_VERSION else None
        if not isinstance(entries, dict):
            log.warning("hash cache %s has an unknown layout, starting empty", self.path)
            return {}
        out = {}
        for path, e in entries.items():
            if (isinstance(e, list) and len(e) == 3 and type(e[0]) is int and type(e[1]) is int
                    and isinstance(e[2], str) and _HEX64.fullmatch(e[2])):
                out[path] = (e[0], e[1], e[2])
        return out

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, path: str, size: int, mtime_ns: int) -> str | None:
        """The digest cached for `path` if it was taken at this exact size and mtime_ns, else None."""
        with self._lock:
            entry = self._entries.get(path)
        if entry is None or entry[0] != size or entry[1] != mtime_ns:
            return None
        return entry[2]

    def put(self, path: str, size: int, mtime_ns: int, sha256: str) -> None:
        with self._lock:
            self._entries[path] = (size, mtime_ns, sha256)
            self._changes += 1

    def forget(self, path: str) -> None:
        with self._lock:
            if self._entries.pop(path, None) is not None:
                self._changes += 1

    def save(self) -> bool:
        """Write the cache if it changed since the last save; True if written. Raises OSError."""
        with self._save_lock:
            with self._lock:
                changes = self._changes
                if changes == self._saved_changes:
                    return False
                entries = dict(self._entries)
            data = json.dumps({"version": CACHE_VERSION, "entries": entries}, separators=(",", ":"))
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # Named after this process (core/fs/scratch.py): one a killed ComfyUI left is swept at start.
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f"{scratch.HIDDEN}{scratch.owner_tag()}-",
                                       suffix=f".{self.path.name}")
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, self.path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
            self._saved_changes = changes
            self._saved_at = time.monotonic()
            return True

    def save_if_due(self, interval: float) -> bool:
        """`save` when the last one is at least `interval` seconds old."""
        if time.monotonic() - self._saved_at < interval:
            return False
        return self.save()


def file_sha256(path: str | os.PathLike) -> str:
    """The sha256 of one file's bytes, read now (no cache): for checking a copy against its digest."""
    h = hashlib.sha256()
    with open_regular(path) as f:  # a FIFO would wait for a writer
        while chunk := f.read(CHUNK_SIZE):
            h.update(chunk)
    return h.hexdigest()


def _save_quietly(cache: HashCache, interval: float = 0.0) -> None:
    # A cache that cannot be written costs a re-hash next time; it must not fail the run.
    try:
        cache.save_if_due(interval)
    except OSError as err:
        log.warning("could not save the hash cache %s: %s", cache.path, err)


def _stat_error(path: str, err: OSError) -> str:
    if isinstance(err, FileNotFoundError):
        return "broken symlink: its target does not exist" if os.path.islink(path) else "file not found"
    if isinstance(err, NotADirectoryError):
        return "file not found (a parent in its path is not a folder)"
    if isinstance(err, PermissionError):
        return "permission denied"
    return f"cannot read it: {err.strerror or err}"


def _kind_error(mode: int) -> str | None:
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "is a folder, not a file"
    return "not a regular file (a pipe, socket or device)"


def _open_for_read(path: str) -> io.FileIO:
    # O_NONBLOCK: if a FIFO replaced the file since it was listed, open must not wait for a writer.
    nonblock = getattr(os, "O_NONBLOCK", 0)
    return open(path, "rb", buffering=0, opener=lambda p, flags: os.open(p, flags | nonblock))


def _sig(st: os.stat_result) -> tuple[int, int, int, int]:
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


def _hash_one(path: str, listed: os.stat_result, view: memoryview, stopped: Callable[[], bool],
              on_read: Callable[[int], None]) -> HashResult | None:
    """Digest of one file, or an error result; None if stopped (cancelled) before the end."""
    size = listed.st_size
    try:
        f = _open_for_read(path)
    except FileNotFoundError:
        return HashResult(path, size, error="disappeared before it was hashed")
    except PermissionError:
        return HashResult(path, size, error="permission denied (cannot open it for reading)")
    except OSError as err:
        return HashResult(path, size, error=f"cannot open it: {err.strerror or err}")
    with f:
        try:
            before = os.fstat(f.fileno())
            kind = _kind_error(before.st_mode)
            if kind:
                return HashResult(path, size, error=kind)
            if hasattr(os, "posix_fadvise"):  # a larger read-ahead when the file is not in the page cache
                with contextlib.suppress(OSError):
                    os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_SEQUENTIAL)
            h = hashlib.sha256()
            done = 0
            while True:
                if stopped():
                    return None
                n = f.readinto(view)  # unbuffered FileIO: one read() straight into the buffer
                if not n:
                    break
                h.update(view[:n])  # hashlib drops the GIL for large updates: threads overlap
                done += n
                on_read(done)
            after = os.fstat(f.fileno())
        except OSError as err:
            return HashResult(path, size, error=f"read error: {err.strerror or err}")
    try:
        now = os.stat(path)
    except FileNotFoundError:
        return HashResult(path, size, error="removed while hashing")
    except OSError as err:
        return HashResult(path, size, error=_stat_error(path, err))
    # The path kept the same file, the open file kept its size and mtime, and all of it was read.
    if (_sig(listed) != _sig(now) or _sig(before) != _sig(after) or done != size
            or (before.st_size, before.st_mtime_ns) != (size, listed.st_mtime_ns)):
        return HashResult(path, size, error=CHANGED)
    return HashResult(path, size, h.hexdigest())


class _Run:
    """The state shared by the worker threads of one `hash_files` call."""

    def __init__(self, todo: list[tuple[str, os.stat_result]], workers: int, chunk_size: int,
                 cancel: Cancel | None, cache: HashCache | None):
        self.todo = todo
        self.chunk_size = chunk_size
        self.cancel = cancel
        self.cache = cache
        self.lock = threading.Lock()
        self.next = 0
        self.results: dict[str, HashResult] = {}
        self.reading = [0] * workers  # bytes read of the file each worker is on; only that worker writes it
        self.finished_bytes = 0
        self.current: str | None = None
        self.stop = threading.Event()
        self.cancelled = False
        self.crash: BaseException | None = None
        self.running = workers
        self.all_done = threading.Event()

    def stopped(self) -> bool:
        if self.cancel is not None and self.cancel.is_set():
            self.cancelled = True
            self.stop.set()
        return self.stop.is_set()

    def work(self, slot: int) -> None:
        view = memoryview(bytearray(self.chunk_size))
        try:
            while not self.stop.is_set():
                with self.lock:
                    if self.next == len(self.todo):
                        return
                    path, listed = self.todo[self.next]
                    self.next += 1
                self.current = path
                size = listed.st_size

                def on_read(done: int, size: int = size) -> None:
                    self.reading[slot] = min(done, size)

                result = _hash_one(path, listed, view, self.stopped, on_read)
                if result is None:
                    return
                if self.cache is not None:
                    if result.sha256 is not None:
                        self.cache.put(path, size, listed.st_mtime_ns, result.sha256)
                    else:
                        self.cache.forget(path)
                with self.lock:
                    self.results[path] = result
                    self.finished_bytes += size
                    self.reading[slot] = 0
        except BaseException as err:  # a bug, not a file problem: stop everyone, re-raise in the caller
            self.crash = err
            self.stop.set()
        finally:
            with self.lock:
                self.running -= 1
                if not self.running:
                    self.all_done.set()


def hash_files(
    paths: Iterable[str | os.PathLike[str]],
    cache: HashCache | None = None,
    *,
    workers: int | None = None,
    chunk_size: int = CHUNK_SIZE,
    progress: Callable[[Progress], None] | None = None,
    cancel: Cancel | None = None,
) -> dict[str, HashResult]:
    """sha256 of each file, keyed by `os.fspath(path)` in the order given. Blocks: run it off the event loop.

    A file whose (size, mtime_ns) match its `cache` entry is not read. The others
    are read largest first by `workers` threads (default: up to 4), `chunk_size`
    bytes at a time into one reusable buffer per thread. Fresh digests go into
    `cache`, saved at most every SAVE_INTERVAL seconds and once at the end (a
    failed save is logged, never raised).

    A file that cannot be hashed gets a result with `error` and no cache entry:
    not found, broken symlink, a folder or other non-regular file, permission
    denied, read error, or CHANGED (its size, mtime_ns or inode moved between
    listing and the end of reading, e.g. a download still being written).

    `progress(Progress)` is called from this thread, never concurrently: every
    PROGRESS_INTERVAL seconds while files are read and once at the end of a
    complete run. Totals count every path given; cached and failed files count
    as done; `bytes_done` reaches `bytes_total` at the end.

    `cancel` (a threading.Event) is checked before each chunk, the first
    included. Once set, the run stops within a chunk per thread, saves what
    finished, and raises HashCancelled carrying those results. No thread is
    still reading when this function returns or raises.
    """
    if chunk_size < 1 or (workers is not None and workers < 1):
        raise ValueError("chunk_size and workers must be positive")
    keys: dict[str, str] = {}  # as given -> absolute
    results: dict[str, HashResult] = {}  # absolute -> result
    todo: dict[str, os.stat_result] = {}
    bytes_total = 0
    for p in paths:
        key = os.fspath(p)
        path = keys[key] = os.path.abspath(key)
        if path in results or path in todo:
            continue
        try:
            st = os.stat(path)
        except OSError as err:
            results[path] = HashResult(path, None, error=_stat_error(path, err))
            continue
        kind = _kind_error(st.st_mode)
        if kind:
            results[path] = HashResult(path, None, error=kind)
            continue
        bytes_total += st.st_size
        digest = cache.get(path, st.st_size, st.st_mtime_ns) if cache is not None else None
        if digest is not None:
            results[path] = HashResult(path, st.st_size, digest, cached=True)
        else:
            todo[path] = st
    files_total = len(results) + len(todo)

    if todo:
        n = min(workers or min(4, os.cpu_count() or 1), len(todo))
        work = sorted(todo.items(), key=lambda item: item[1].st_size, reverse=True)
        run = _Run(work, n, chunk_size, cancel, cache)
        base_bytes = bytes_total - sum(st.st_size for st in todo.values())
        base_files = len(results)

        def snapshot() -> Progress:
            with run.lock:
                done = base_bytes + run.finished_bytes + sum(run.reading)
                files = base_files + len(run.results)
            return Progress(done, bytes_total, files, files_total, run.current)

        threads = [threading.Thread(target=run.work, args=(i,), name=f"sha256-{i}", daemon=True) for i in range(n)]
        try:
            for t in threads:
                t.start()
            while not run.all_done.wait(PROGRESS_INTERVAL):
                if progress is not None:
                    progress(snapshot())
                if cache is not None:
                    _save_quietly(cache, SAVE_INTERVAL)
        except BaseException:
            run.stop.set()
            raise
        finally:
            for t in threads:
                if t.ident is not None:  # started
                    t.join()
            if cache is not None:
                _save_quietly(cache)
        if run.crash is not None:
            raise run.crash
        results.update(run.results)
        if run.cancelled:
            raise HashCancelled({k: results[p] for k, p in keys.items() if p in results})
    if progress is not None:
        progress(Progress(bytes_total, bytes_total, files_total, files_total, None))
    return {key: results[path] for key, path in keys.items()}
