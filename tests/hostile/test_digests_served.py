"""Bytes handed out under a digest are those bytes: a blob rewritten in the store (same size, other bytes; on
S3 whoever may write blobs/* can do it) is never served by the Comfy API v2's asset content route, whole or
as a range, and a rewritten `blobs/blake3/<hex>` entry never makes another blob's bytes pass for that
blake3. Through the HTTP routes of the session's real ComfyUI, on its folder store."""

from __future__ import annotations

import hashlib
import json

import pytest
import requests
from blake3 import blake3
from comfyui_sagemaker.core.execution_records import ExecutionRecords
from comfyui_sagemaker.core.executions import new_id
from comfyui_sagemaker.local.folder_store import FolderStore
from harness.envs import unique

pytestmark = pytest.mark.comfyui


@pytest.fixture
def v2api(comfyui):
    """(client, v2 path prefix, the ComfyUI's store). Assets need no deployed environment, only its name."""
    return comfyui.client(), f"/sagemaker/v2/{unique('E')}/api/v2", FolderStore(comfyui.user_dir / "__sagemaker"
                                                                              / "store")


def upload(client, base: str, data: bytes, name: str = "photo.bin") -> dict:
    r = client.post(f"{base}/assets", files={"file": (name, data, "application/octet-stream")},
                    data={"file_path": name})
    assert r.status_code in (200, 201), r.text
    return r.json()


def rewrite_in_place(store: FolderStore, digest: str, at: int = -1) -> None:
    """Flip one byte of the stored blob, keeping its size (and file: a rewrite, not a new object)."""
    path = store.root / "blobs" / "sha256" / digest
    data = bytearray(path.read_bytes())
    data[at] ^= 0xFF
    with open(path, "r+b") as f:
        f.write(data)


def error_code(r: requests.Response) -> str | None:
    try:
        return r.json()["error"]["code"]
    except (ValueError, KeyError, TypeError):
        return None


def test_an_uploaded_asset_rewritten_in_the_store_is_refused_whole_and_in_part(v2api):
    client, base, store = v2api
    data = unique("asset ").encode() * 1000
    asset = upload(client, base, data)
    url = f"{base}/assets/{asset['id']}/content"
    assert client.get(url).content == data and client.get(url, headers={"Range": "bytes=2-5"}).content == data[2:6]
    rewrite_in_place(store, hashlib.sha256(data).hexdigest())
    for headers in ({}, {"Range": "bytes=0-9"}, {"Range": "bytes=-10"}):
        r = client.get(url, headers=headers)
        assert r.status_code == 502 and error_code(r) == "blob_corrupt", (headers, r.status_code, r.content[:200])


def test_an_output_rewritten_in_the_store_is_never_served_complete(v2api):
    """An output of several pieces: the answer has begun when the mismatch is found at the end, so the
    connection is cut; the client never holds a complete body, nor a complete range."""
    client, base, store = v2api
    data = hashlib.sha256(b"seed").digest() * (3 * 1024 * 1024 // 32)  # 3 MiB: several pieces
    digest = hashlib.sha256(data).hexdigest()
    src = store.root.parent / f"{digest}.src"
    src.write_bytes(data)
    store.put_blob(digest, str(src))
    src.unlink()
    environment = base.split("/")[3]
    execution_id = new_id("hostile00001")
    ExecutionRecords(store).create({
        "id": execution_id, "state": "succeeded", "environment": environment, "template": None, "owner": None,
        "created_at": "2026-01-01T00:00:00.000Z", "finished_at": "2026-01-01T00:00:01.000Z", "error": None,
        "outputs": {"2": {"images": [{"filename": "out.png", "subfolder": "", "type": "output", "sha256": digest,
                                      "size": len(data)}]}}})
    url = f"{client.url}{base}/assets/out-{execution_id}-{digest[:24]}/content"
    assert requests.get(url, timeout=30).content == data  # served while it is intact
    rewrite_in_place(store, digest, at=-1)  # the last byte: only a read of all of it can tell
    for headers in ({}, {"Range": "bytes=0-"}, {"Range": f"bytes=0-{2 * 1024 * 1024}"}, {"Range": "bytes=-100"}):
        try:
            r = requests.get(url, headers=headers, timeout=30)
        except requests.exceptions.ChunkedEncodingError:
            continue  # cut mid-answer: incomplete, as it must be
        assert r.status_code == 502 and error_code(r) == "blob_corrupt", (headers, r.status_code, len(r.content))


def test_a_blake3_entry_rewritten_to_another_blob_is_missing(v2api, comfyui):
    client, base, store = v2api
    a, b = unique("the bytes of a ").encode() * 50, unique("the bytes of b ").encode() * 50
    upload(client, base, a)
    upload(client, base, b)
    hash_a = f"blake3:{blake3(a).hexdigest()}"
    assert client.http.head(f"{client.url}{base}/assets/by-hash/{hash_a}", timeout=30).status_code == 200
    # The entry of a now names b's blob: genuine bytes under b's sha256, but not the bytes of a.
    (store.root / "blobs" / "blake3" / blake3(a).hexdigest()).write_text(
        json.dumps({"sha256": hashlib.sha256(b).hexdigest(), "size": len(b)}))
    assert client.http.head(f"{client.url}{base}/assets/by-hash/{hash_a}", timeout=30).status_code == 404
    r = client.post(f"{base}/assets/from-hash", json={"hash": hash_a, "file_path": "a.bin"})
    assert r.status_code == 404 and error_code(r) == "blob_not_found", r.text
    assert f"blobs/blake3/{blake3(a).hexdigest()} points at blob" in comfyui.log()
    # Uploading the bytes again mends the entry.
    upload(client, base, a)
    assert client.http.head(f"{client.url}{base}/assets/by-hash/{hash_a}", timeout=30).status_code == 200
