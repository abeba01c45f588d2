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
- `put` overwrites unconditionally (content-addressed blobs, where any
  writer writes the same bytes).
- Failures of the backend itself (unreachable, access denied, bucket
  missing) raise `core.errors.StoreUnavailable` with a message for the user.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass

KEY_RE = re.compile(r"[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*")


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

    @abstractmethod
    def list(self, prefix: str) -> list[str]:
        """Keys under `prefix` (a folder-like prefix ending in `/`), sorted, recursively."""

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

    def exists(self, key: str) -> bool:
        try:
            self.get(key)
        except KeyNotFound:
            return False
        return True
