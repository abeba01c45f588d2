"""The folder store: the embedded default, a directory on this machine.

Atomicity: `create` writes a temporary file and hard-links it to the final
name (`os.link` fails if the name exists), so exactly one creator wins and
no reader sees half a file. `replace` and `delete` take a lock (one of 256 lock files under `.locks/`,
by the key's hash) and check the ETag (sha256 of the content) under it.

Blobs are hashed while they are copied in and renamed only if the digest
matches; a present blob counts only once its content has been checked
(remembered per inode, size, mtime and ctime for the life of the process), so one
that was corrupted or tampered with is written again by the next publish.
Temporary files are named after the process writing them (core/fs/scratch.py): `sweep()` removes those a
killed process left, whatever their age.

Every object is read only if it is a regular file: a FIFO, device or socket put in the folder is
refused with its key (NotARegularFile), never opened for a read that would wait.
"""

from __future__ import annotations

import builtins
import functools
import hashlib
import heapq
import os
import re
import threading
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

from ..core.errors import StoreUnavailable
from ..core.fs import scratch
from ..core.fs.files import open_regular, read_regular
from ..core.fs.hashing import file_sha256
from ..core.store import (
    BlobMismatch,
    KeyExists,
    KeyNotFound,
    PreconditionFailed,
    Store,
    Versioned,
    blob_key,
    check_key,
)
from .filelock import locked

CHUNK = 8 * 1024 * 1024
TEMP_PREFIX = scratch.HIDDEN
LOCKS = ".locks"  # hidden: never listed
LOCK_STRIPES = 256
LEGACY_LOCK = re.compile(r"\.(.+)\.lock")  # `.<object>.lock`, beside the object, from earlier versions


def etag_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _signature(sha256: str, st: os.stat_result) -> tuple[str, int, int, int, int]:
    # A rewrite in place that sets the mtime back still moves the ctime, which no writer can set.
    return sha256, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns


def _unavailable_on_oserror(fn):
    @functools.wraps(fn)
    def wrapper(self, *args, **kwargs):
        try:
            return fn(self, *args, **kwargs)
        except (KeyExists, KeyNotFound, PreconditionFailed, BlobMismatch):
            raise
        except PermissionError as err:
            raise StoreUnavailable(f"folder store at {self.root}: permission denied ({err.filename})") from None
        except OSError as err:
            raise StoreUnavailable(f"folder store at {self.root}: {err.strerror or err}") from None

    return wrapper


class FolderStore(Store):
    kind = "folder"

    def __init__(self, root: Path | str):
        self.root = Path(root)
        self._verified: set[tuple[str, int, int, int, int]] = set()  # _signature()s of blobs checked
        self._verified_lock = threading.Lock()

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*check_key(key).split("/"))

    def _lock_path(self, key: str) -> Path:
        """The lock `replace` and `delete` hold on a key: one of LOCK_STRIPES files under `.locks/`, chosen by the
        key's hash, made once and kept. A lock file per key was never removed (a waiter may hold it open, so
        removing it would let two writers in), and stores filled with one per key ever replaced or deleted."""
        stripe = hashlib.sha256(check_key(key).encode()).digest()[0] % LOCK_STRIPES
        path = self.root / LOCKS / f"{stripe:02x}.lock"
        if not path.parent.is_dir():
            path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def _write_temp(self, path: Path, data: bytes) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(scratch.temp_name(TEMP_PREFIX))
        try:
            with open(tmp, "xb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        except BaseException:
            tmp.unlink(missing_ok=True)  # a full disk must not leave half a file behind
            raise
        return tmp

    @_unavailable_on_oserror
    def get(self, key: str) -> Versioned:
        try:
            data = read_regular(self._path(key), f"store object {key}")
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise KeyNotFound(key) from None
        return Versioned(data, etag_of(data))

    @_unavailable_on_oserror
    def read_range(self, key: str, start: int, length: int) -> bytes:
        try:
            with open_regular(self._path(key), f"store object {key}") as f:
                f.seek(start)
                return f.read(max(length, 0))
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise KeyNotFound(key) from None

    @_unavailable_on_oserror
    def create(self, key: str, data: bytes) -> str:
        path = self._path(key)
        tmp = self._write_temp(path, data)
        try:
            os.link(tmp, path)
        except FileExistsError:
            raise KeyExists(key) from None
        finally:
            tmp.unlink(missing_ok=True)
        return etag_of(data)

    @_unavailable_on_oserror
    def replace(self, key: str, data: bytes, if_match: str) -> str:
        path = self._path(key)
        if not path.parent.is_dir():
            raise KeyNotFound(key)
        with locked(self._lock_path(key)):
            current = self.get(key)
            if current.etag != if_match:
                raise PreconditionFailed(key)
            os.replace(self._write_temp(path, data), path)
        return etag_of(data)

    @_unavailable_on_oserror
    def put(self, key: str, data: bytes) -> str:
        path = self._path(key)
        os.replace(self._write_temp(path, data), path)
        return etag_of(data)

    @_unavailable_on_oserror
    def delete(self, key: str) -> None:
        path = self._path(key)
        if not path.parent.is_dir():
            raise KeyNotFound(key)
        with locked(self._lock_path(key)):
            try:
                path.unlink()
            except FileNotFoundError:
                raise KeyNotFound(key) from None

    @_unavailable_on_oserror
    def size(self, key: str) -> int | None:
        try:
            return self._path(key).stat().st_size
        except (FileNotFoundError, NotADirectoryError):
            return None

    def _copy(self, src: str | Path, dest: Path, on_bytes: Callable[[int], None] | None,
              sha256: str | None = None, what: str | None = None) -> None:
        """Copy through a temporary name; the final name appears only when complete (and, with
        `sha256`, only if the bytes copied hash to it: BlobMismatch otherwise)."""
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(scratch.temp_name(TEMP_PREFIX))
        h = hashlib.sha256()
        try:
            with open_regular(src, what) as fin, open(tmp, "xb") as fout:
                buf = bytearray(CHUNK)
                view = memoryview(buf)
                while n := fin.readinto(buf):
                    fout.write(view[:n])
                    if sha256:
                        h.update(view[:n])
                    if on_bytes:
                        on_bytes(n)
            if sha256 and h.hexdigest() != sha256:
                raise BlobMismatch(f"{src} changed after it was hashed: its bytes no longer hash to {sha256}; "
                                   "nothing was stored (publish again once it is complete)")
            os.replace(tmp, dest)
        finally:
            tmp.unlink(missing_ok=True)

    @_unavailable_on_oserror
    def put_file(self, key: str, path: str, on_bytes: Callable[[int], None] | None = None) -> None:
        self._copy(path, self._path(key), on_bytes)

    @_unavailable_on_oserror
    def put_blob(self, sha256: str, path: str, on_bytes: Callable[[int], None] | None = None) -> None:
        dest = self._path(blob_key(sha256))
        self._copy(path, dest, on_bytes, sha256=sha256)
        self._remember(sha256, dest)

    @_unavailable_on_oserror
    def has_blob(self, sha256: str, size: int, path: str | None = None) -> bool:
        blob = self._path(blob_key(sha256))  # its own copy is read, not the caller's `path`
        try:
            st = blob.stat()
        except (FileNotFoundError, NotADirectoryError):
            return False
        if st.st_size != size:
            return False
        with self._verified_lock:
            if _signature(sha256, st) in self._verified:
                return True
        if file_sha256(blob) != sha256 or _signature(sha256, blob.stat()) != _signature(sha256, st):
            return False  # corrupt, tampered with or changed while read: the caller writes it again
        with self._verified_lock:
            self._verified.add(_signature(sha256, st))
        return True

    def _remember(self, sha256: str, path: Path) -> None:
        with self._verified_lock:
            self._verified.add(_signature(sha256, path.stat()))

    def sweep(self, older_than: float = scratch.UNKNOWN_AFTER_S) -> list[str]:
        """Remove temporary files a killed writer left: any age when their writer is known dead (this host),
        else older than `older_than` s (another host's, an older version's); and the per-key lock files earlier
        versions left beside objects that no longer exist. Returns what was removed."""
        removed = [os.path.relpath(p, self.root) for p in scratch.sweep(self.root, (TEMP_PREFIX,), recursive=True,
                                                                         unknown_after=older_than)]
        for dirpath, dirnames, filenames in os.walk(self.root):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            for name in filenames:
                m = LEGACY_LOCK.fullmatch(name)
                if m and not os.path.lexists(os.path.join(dirpath, m.group(1))):
                    try:
                        os.unlink(os.path.join(dirpath, name))
                    except FileNotFoundError:
                        continue
                    removed.append(os.path.relpath(os.path.join(dirpath, name), self.root))
        return removed

    @_unavailable_on_oserror
    def get_file(self, key: str, path: str, on_bytes: Callable[[int], None] | None = None) -> None:
        src = self._path(key)
        if not src.exists() or src.is_dir():
            raise KeyNotFound(key)
        self._copy(src, Path(path), on_bytes, what=f"store object {key}")

    def list(self, prefix: str) -> list[str]:
        return sorted(self.list_stamps(prefix))

    @_unavailable_on_oserror
    def list_page(self, folder: str, start_after: str = "", limit: int = 1000) -> builtins.list[str]:
        base = self.root.joinpath(*[p for p in folder.split("/") if p])
        after = start_after[len(folder):] if start_after.startswith(folder) else ("" if start_after < folder else None)
        if after is None:  # the cursor is past this folder
            return []
        try:
            with os.scandir(base) as entries:
                # The page's names only, smallest first: a folder is read once, but never sorted whole.
                names = heapq.nsmallest(limit, (e.name for e in entries if not e.name.startswith(".")
                                                and e.name > after and e.is_file()))
        except (FileNotFoundError, NotADirectoryError):
            return []
        return [f"{folder}{n}" for n in names]

    @_unavailable_on_oserror
    def get_if_changed(self, key: str, etag: str | None) -> Versioned | None:
        got = self.get(key)
        return None if got.etag == etag else got

    @_unavailable_on_oserror
    def list_modified(self, prefix: str) -> dict[str, datetime]:
        # Every write goes through a new temporary file renamed into place, so mtime is the last write's time.
        out = {}
        for key in self.list_stamps(prefix):
            try:
                out[key] = datetime.fromtimestamp(self._path(key).stat().st_mtime, timezone.utc)
            except FileNotFoundError:  # removed while listing
                continue
        return out

    @_unavailable_on_oserror
    def list_stamps(self, prefix: str) -> dict[str, str]:
        # replace() makes a new inode, so a changed object always gets a new stamp.
        return {key: f"{st.st_ino}-{st.st_size}-{st.st_mtime_ns}" for key, st in self._stats(prefix)}

    @_unavailable_on_oserror
    def sizes(self, prefix: str = "") -> dict[str, int]:
        return {key: st.st_size for key, st in self._stats(prefix)}

    def _stats(self, prefix: str) -> builtins.list[tuple[str, os.stat_result]]:
        """Every object under `prefix` and its stat, sorted by key (temporary dot-files left out)."""
        base = self.root.joinpath(*[p for p in prefix.split("/") if p])
        if not base.is_dir():
            return []
        out = []
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            rel = Path(dirpath).relative_to(self.root).as_posix()
            for name in filenames:
                if name.startswith("."):
                    continue
                try:
                    st = os.stat(os.path.join(dirpath, name))
                except FileNotFoundError:  # removed while listing
                    continue
                out.append((name if rel == "." else f"{rel}/{name}", st))
        return sorted(out, key=lambda item: item[0])
