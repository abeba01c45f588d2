"""Reads served under a digest (core/v2/blob_reads.py), on both stores: the range asked for, and never all of it
when the blob does not hash to its digest; a blake3 index entry believed only once its blob hashes to it."""

from __future__ import annotations

import hashlib
import json

import pytest
from blake3 import blake3
from comfyui_sagemaker.core.identity import Owner
from comfyui_sagemaker.core.store import BlobCorrupt, KeyNotFound, blob_key
from comfyui_sagemaker.core.v2.assets import BY_BLAKE3, AssetService
from comfyui_sagemaker.core.v2.blob_reads import read_verified, verified_pieces

DATA = bytes(range(256)) * 41  # 10,496 bytes: several pieces of CHUNK below


def put(store, tmp_path, data: bytes) -> str:
    digest = hashlib.sha256(data).hexdigest()
    path = tmp_path / digest
    path.write_bytes(data)
    store.put_blob(digest, str(path))
    return digest


def rewrite(store, digest: str, data: bytes) -> None:
    """Whoever can write the store rewrites a blob (S3: an artist's credentials may write blobs/*)."""
    store.put(blob_key(digest), data)


def pieces(store, digest, start=0, end=None, **kw) -> tuple[list[bytes], Exception | None]:
    got: list[bytes] = []
    try:
        for piece in verified_pieces(store, digest, len(DATA), start, end, chunk=1000, **kw):
            got.append(piece)
    except (BlobCorrupt, KeyNotFound) as err:
        return got, err
    return got, None


@pytest.mark.parametrize("start, end", [(0, None), (0, 0), (5, 2999), (999, 1000), (10_000, 10_495), (3000, 3999)])
def test_an_intact_blob_gives_exactly_the_range(store, tmp_path, start, end):
    digest = put(store, tmp_path, DATA)
    got, err = pieces(store, digest, start, end)
    assert err is None and b"".join(got) == DATA[start:(len(DATA) if end is None else end + 1)]


@pytest.mark.parametrize("start, end", [(0, None), (0, 10), (9000, 9999), (10_400, 10_495)])
def test_a_rewritten_blob_never_gives_its_whole_range(store, tmp_path, start, end):
    digest = put(store, tmp_path, DATA)
    tampered = bytearray(DATA)
    tampered[-1] ^= 1  # the very last byte: only a read of everything can tell
    rewrite(store, digest, bytes(tampered))
    got, err = pieces(store, digest, start, end)
    wanted = DATA[start:(len(DATA) if end is None else end + 1)]
    assert isinstance(err, BlobCorrupt) and err.code == "blob_corrupt"
    assert len(b"".join(got)) < len(wanted)


def test_a_blob_shortened_or_removed_mid_way_is_not_served_whole(store, tmp_path):
    digest = put(store, tmp_path, DATA)
    rewrite(store, digest, DATA[:5000])
    got, err = pieces(store, digest)
    assert isinstance(err, BlobCorrupt) and len(b"".join(got)) < len(DATA)
    store.delete(blob_key(digest))
    assert isinstance(pieces(store, digest)[1], KeyNotFound)


def test_an_asset_is_checked_against_its_blake3_too(store, tmp_path):
    digest = put(store, tmp_path, DATA)
    assert pieces(store, digest, blake3=blake3(DATA).hexdigest())[1] is None
    got, err = pieces(store, digest, blake3=blake3(b"other").hexdigest())
    assert isinstance(err, BlobCorrupt) and len(b"".join(got)) < len(DATA)


def test_an_empty_blob_is_checked_too(store, tmp_path):
    digest = put(store, tmp_path, b"")
    assert read_verified(store, digest) == 0
    other = hashlib.sha256(b"x").hexdigest()
    rewrite(store, other, b"")
    with pytest.raises(BlobCorrupt):
        read_verified(store, other)


def test_a_blake3_entry_pointing_at_other_bytes_is_missing(store, tmp_path, caplog):
    assets = AssetService(store, lambda user: Owner("me", "me"), lambda execution_id: None)
    a, b = b"the bytes of a" * 100, b"the bytes of b" * 100
    for data in (a, b):
        path = tmp_path / "upload"
        path.write_bytes(data)
        assets.ingest(str(path), hashlib.sha256(data).hexdigest(), blake3(data).hexdigest(), len(data),
                      "application/octet-stream", "x.bin")
    hash_a = f"blake3:{blake3(a).hexdigest()}"
    assert assets.blob_of(hash_a) == (hashlib.sha256(a).hexdigest(), len(a))
    # The entry of a now names b's blob (b's bytes are genuine under b's sha256, but they are not a).
    store.put(BY_BLAKE3 + blake3(a).hexdigest(),
              json.dumps({"sha256": hashlib.sha256(b).hexdigest(), "size": len(b)}).encode())
    fresh = AssetService(store, lambda user: Owner("me", "me"), lambda execution_id: None)  # another process
    for service in (assets, fresh):
        assert service.blob_of(hash_a) is None
    assert "treated as missing" in caplog.text
    with pytest.raises(Exception) as refused:
        fresh.from_hash(hash_a)
    assert getattr(refused.value, "code", None) == "blob_not_found"
    # An entry that does match is believed (and, once checked, not read again for the same pair).
    assert fresh.blob_of(f"blake3:{blake3(b).hexdigest()}") == (hashlib.sha256(b).hexdigest(), len(b))


def test_a_folder_blob_rewritten_with_its_mtime_set_back_is_checked_again(tmp_path):
    """has_blob remembers blobs it checked; a rewrite in place that restores size and mtime is still seen (the
    ctime moves, and no writer can set it), so the next publish writes the blob again."""
    import os
    import time

    from comfyui_sagemaker.local.folder_store import FolderStore

    store = FolderStore(tmp_path / "store")
    digest = put(store, tmp_path, DATA)
    assert store.has_blob(digest, len(DATA))
    path = tmp_path / "store" / "blobs" / "sha256" / digest
    before = path.stat()
    probe = tmp_path / "probe"
    deadline = time.monotonic() + 10
    while True:  # until the file system's clock has moved past the blob's ctime (its tick may be coarse)
        probe.write_bytes(b"x")
        if probe.stat().st_ctime_ns != before.st_ctime_ns or time.monotonic() > deadline:
            break
    with open(path, "r+b") as f:
        f.write(b"\xff")
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert (path.stat().st_size, path.stat().st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    assert not store.has_blob(digest, len(DATA))
