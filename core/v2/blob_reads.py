"""Bytes served from the store under a digest, checked against it before a client can take them as genuine.

Whoever can write the store can rewrite a blob (same size, other bytes), so a reader that hands bytes out
as "the content of sha256 X" checks them, on every read: `verified_pieces` reads the whole blob once, in
order, hashing it, and yields the requested range as it goes by, always holding back its last piece until
the digest (and, for an asset, its blake3) has matched. A mismatch raises BlobCorrupt instead of that piece:
a client never receives a complete answer of bytes that do not match (a caller that has begun an answer
aborts its connection; one that has not answers an error).

No verification is cached: the bytes sent must be the bytes hashed. A cache keyed by what the store says of
an object (S3's ETag is the MD5 of a single-part upload, which an artist who writes both versions can make
collide; a folder's mtime can be set back) would let bytes written after the check pass as checked. A range
therefore costs a read of the whole blob; a whole download costs one read, as it would anyway.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator

from ..store import BlobCorrupt, KeyNotFound, Store, blob_key

CHUNK = 1024 * 1024
log = logging.getLogger("comfyui_sagemaker")


def _blake3():
    from blake3 import blake3  # lazily: only assets carry a blake3

    return blake3()


def verified_pieces(store: Store, sha256: str, size: int, start: int = 0, end: int | None = None,
                    blake3: str | None = None, chunk: int = CHUNK) -> Iterator[bytes]:
    """Bytes `start`..`end` (inclusive; default: to the end) of blob `sha256`, which has `size` bytes, as pieces;
    the last one only once all `size` bytes hash to `sha256` (and to `blake3`, when given). BlobCorrupt (logged)
    otherwise, KeyNotFound if the blob is gone. Blocking: each `next` reads the store."""
    key = blob_key(sha256)
    end = size - 1 if end is None else end
    h = hashlib.sha256()
    h3 = _blake3() if blake3 else None
    held: bytes | None = None
    position = 0
    while position < size:
        data = store.read_range(key, position, min(chunk, size - position))
        if not data:
            break
        h.update(data)
        if h3 is not None:
            h3.update(data)
        piece = data[max(start - position, 0):max(end + 1 - position, 0)]
        position += len(data)
        if piece:
            if held is not None:
                yield held
            held = piece
    why = None
    if position != size:
        why = f"it has {position} bytes, not the {size} it had when the answer began"
    elif h.hexdigest() != sha256:
        why = f"its bytes hash to sha256 {h.hexdigest()}"
    elif h3 is not None and h3.hexdigest() != blake3:
        why = f"its bytes hash to blake3 {h3.hexdigest()}, not the asset's {blake3}"
    if why:
        log.error("comfyui-sagemaker: blob %s in the store does not match its digest (%s): not served", key, why)
        raise BlobCorrupt(f"the stored bytes of {sha256} do not match their digest (rewritten or damaged in the "
                          "store); they are not served")
    if held is not None:
        yield held


def read_verified(store: Store, sha256: str, blake3: str | None = None) -> int:
    """Read blob `sha256` through and check it (and its `blake3`, when given): its size. BlobCorrupt or
    KeyNotFound otherwise."""
    size = store.size(blob_key(sha256))
    if size is None:
        raise KeyNotFound(blob_key(sha256))
    for _ in verified_pieces(store, sha256, size, start=size, blake3=blake3):  # an empty range: nothing kept
        pass
    return size
