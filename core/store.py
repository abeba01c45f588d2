"""The Store: where templates, environments, blobs, inputs, outputs and executions live.

One interface, two implementations: `local.folder_store.FolderStore` (the
embedded default) and `aws.s3_store.S3Store`. Services above never ask which
one they have. Keys are `/`-separated relative paths made of
`[A-Za-z0-9._-]` segments (`templates/foo.json`, `blobs/sha256/<hex>`); the
services build them, never a request.

What every implementation promises:
- `create` is atomic and exclusive: of N concurrent creates of one key,
  exactly one succeeds and the others raise KeyExists; a reader never sees a
  partly written object.
- `replace` is compare-and-swap on the ETag returned by `get`/`create`/
  `replace`: it raises PreconditionFailed when the object changed since.
- `put` overwrites unconditionally.
- Blobs (`blobs/sha256/<hex>`) are written by `put_blob` only, once: the bytes
  that land under a digest are the bytes of that digest, or nothing is written
  (BlobMismatch) — a file changed during a publish never becomes a blob that
  lies about its content; a blob already there is never overwritten, only
  deleted and created again by a writer allowed to delete (on S3, a designer)
  when it is corrupt (BlobCorrupt for the others).
- Nothing in the store is trusted because of where it lies: whoever can write the store can rewrite a
  blob, so every reader checks the bytes it hands out or uses against their digest
  (`core/v2/blob_reads.py` for reads served from the store, a fetched copy's sha256 elsewhere).
- Failures of the backend itself (unreachable, access denied, bucket
  missing) raise `core.errors.StoreUnavailable` with a message for the user.
"""

from __future__ import annotations

import builtins
import re
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from .errors import SageMakerError

KEY_RE = re.compile(r"[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*")
BLOBS = "blobs/sha256/"
DIGEST_RE = re.compile(r"[0-9a-f]{64}")


def blob_key(sha256: str) -> str:
    if not isinstance(sha256, str) or not DIGEST_RE.fullmatch(sha256):
        raise ValueError(f"bad digest {sha256!r}")
    return BLOBS + sha256


class BlobMismatch(SageMakerError):
    """The bytes read from a file do not hash to the digest they were to be stored under: the file
    changed after it was hashed (or while it was copied). Nothing was stored."""

    code = "blob_mismatch"


class BlobCorrupt(SageMakerError):
    """The bytes stored under a digest do not hash to it (rewritten or damaged in the store since they were
    written): none of them is handed out as that digest's content."""

    code = "blob_corrupt"


class KeyExists(Exception):
    """`create` lost: the key exists already."""


class KeyNotFound(Exception):
    """No object under the key."""


class PreconditionFailed(Exception):
    """`replace` lost: the object changed since the ETag was read."""


@dataclass(frozen=True)
class Versioned:
    data: bytes
    etag: str


def check_key(key: str) -> str:
    if not KEY_RE.fullmatch(key) or any(part in (".", "..") for part in key.split("/")):
        raise ValueError(f"bad store key {key!r}")
    return key


class Store(ABC):
    kind: str  # "folder" | "s3"

    @abstractmethod
    def get(self, key: str) -> Versioned:
        """The object and its ETag; KeyNotFound if absent."""

    @abstractmethod
    def create(self, key: str, data: bytes) -> str:
        """Write `data` only if `key` does not exist (atomic); return the ETag. KeyExists if it does."""

    @abstractmethod
    def replace(self, key: str, data: bytes, if_match: str) -> str:
        """Overwrite only if the current ETag is `if_match`; return the new ETag.
        KeyNotFound if absent, PreconditionFailed if changed."""

    @abstractmethod
    def put(self, key: str, data: bytes) -> str:
        """Overwrite unconditionally; return the ETag."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove the object; KeyNotFound if absent."""

    def discard(self, key: str) -> None:
        """Remove the object if it is there (a caller that does not need to know whether it was): on S3 one
        request where `delete` makes two."""
        try:
            self.delete(key)
        except KeyNotFound:
            pass

    @abstractmethod
    def list(self, prefix: str) -> list[str]:
        """Keys under `prefix` (a folder-like prefix ending in `/`), sorted, recursively."""

    @abstractmethod
    def list_page(self, folder: str, start_after: str = "", limit: int = 1000) -> builtins.list[str]:
        """Up to `limit` keys directly in `folder` (a prefix ending in `/`; not its sub-folders), in
        ascending order, after the key `start_after`: lists that page cost one request, however many
        keys the folder holds."""

    @abstractmethod
    def get_if_changed(self, key: str, etag: str | None) -> Versioned | None:
        """The object if its ETag is not `etag` (a conditional GET on S3: cheap when unchanged), else None;
        KeyNotFound if absent."""

    @abstractmethod
    def list_stamps(self, prefix: str) -> dict[str, str]:
        """Like `list`, with a stamp per key that changes whenever the object does
        (S3's ETag; on the folder store inode, size and mtime): lets callers cache reads."""

    @abstractmethod
    def size(self, key: str) -> int | None:
        """The object's size in bytes, or None if absent (cheap: no data read)."""

    @abstractmethod
    def put_file(self, key: str, path: str, on_bytes: Callable[[int], None] | None = None) -> None:
        """Upload a local file unconditionally, streamed (flat memory). `on_bytes(n)` is called
        as chunks go out; an exception it raises aborts the upload and leaves no object."""

    @abstractmethod
    def get_file(self, key: str, path: str, on_bytes: Callable[[int], None] | None = None) -> None:
        """Download to `path` (written to a temporary name, renamed when complete); KeyNotFound."""

    @abstractmethod
    def put_blob(self, sha256: str, path: str, on_bytes: Callable[[int], None] | None = None) -> None:
        """Store the file at `path` as blob `sha256`, only if the bytes stored hash to it; BlobMismatch
        otherwise, with nothing left under the key."""

    @abstractmethod
    def has_blob(self, sha256: str, size: int, path: str | None = None) -> bool:
        """True if blob `sha256` is present with `size` bytes and verified in full to hold that content (not by
        its size; each verification done once per process); False for a corrupt blob, which `put_blob` then
        replaces. `path`: the caller's own copy (it hashes to `sha256`), which a store may check against instead
        of reading the blob back."""

    def read_range(self, key: str, start: int, length: int) -> bytes:
        """Up to `length` bytes of the object from byte `start` (fewer at its end, none past it); KeyNotFound
        if absent. Implementations read only that range (served downloads stream a blob in parts)."""
        return self.get(key).data[start:start + length]

    def s3_object(self, key: str) -> tuple[str, str, str] | None:
        """(region, bucket, object key) of `key` on S3, for a reader with a client of its own (the worker's
        parallel ranged GETs); None on a store that is not S3."""
        return None

    def list_modified(self, prefix: str) -> dict[str, datetime]:
        """Like `list`, with when each object was last written (UTC): S3's LastModified, a file's mtime. A
        store that cannot tell lists nothing, so nothing is swept for being old (core/retention.py)."""
        return {}

    def sizes(self, prefix: str = "") -> dict[str, int]:
        """Every key under `prefix` ("" for the whole store) and its size in bytes. Implementations read the sizes
        with the listing (a HEAD per object, as here, would cost a request each)."""
        found = {key: self.size(key) for key in self.list(prefix)}
        return {key: size for key, size in found.items() if size is not None}

    def exists(self, key: str) -> bool:
        try:
            self.get(key)
        except KeyNotFound:
            return False
        return True

    def sweep(self) -> builtins.list[str]:
        """Remove the temporary files killed writers left in the store; what was removed. None by default: the
        S3 store's unfinished uploads are its bucket's lifecycle rule's job."""
        return []
