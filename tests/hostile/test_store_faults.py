"""Faults around the store during a publish: a model rewritten after it was hashed or while it is copied,
a blob corrupted in the store, a store that fails half-way, temporary files a killed writer left. Real
folder store, real environment service, real files; the faults are injected where they happen."""

from __future__ import annotations

import hashlib
import os

import pytest
from comfyui_sagemaker.local.folder_store import FolderStore
from harness.hosts import FailingStore, FolderHost, model, publish_and_wait, service


@pytest.fixture
def host(tmp_path):
    return FolderHost(tmp_path / "comfy")


def blobs(store: FolderStore) -> dict[str, bytes]:
    return {k.rsplit("/", 1)[1]: store.get(k).data for k in store.list("blobs/sha256/")}


def assert_every_blob_matches_its_digest(store: FolderStore) -> None:
    for digest, data in blobs(store).items():
        assert hashlib.sha256(data).hexdigest() == digest


def test_a_model_rewritten_after_hashing_never_becomes_a_blob_under_its_old_digest(tmp_path, host):
    old = model(host, "a.safetensors", b"a" * 5000)
    store = FolderStore(tmp_path / "store")
    real = store.has_blob

    def rewrite_first(sha256, size, path=None):  # the user's tool rewrites the file between hashing and upload
        if sha256 == old:
            (host.root / "models" / "loras" / "a.safetensors").write_bytes(b"b" * 5000)
        return real(sha256, size, path)

    store.has_blob = rewrite_first
    job = publish_and_wait(service(store, host, tmp_path))
    assert job.state == "failed" and "changed after it was hashed" in job.error["message"], job.error
    assert old not in blobs(store) and not store.list("environments/")
    assert_every_blob_matches_its_digest(store)


def test_a_model_rewritten_while_it_is_copied_is_caught_by_the_bytes(tmp_path, host):
    """Same size and mtime kept (no stat can tell): the digest of the bytes copied can."""
    old = model(host, "a.safetensors", b"a" * (20 << 20))
    path = host.root / "models" / "loras" / "a.safetensors"
    store = FolderStore(tmp_path / "store")
    real = store.put_blob

    def rewrite_midway(sha256, src, on_bytes=None):
        st = os.stat(src)
        seen = [0]

        def hook(n):
            seen[0] += n
            if seen[0] >= (8 << 20) and seen[0] - n < (8 << 20):
                with open(src, "r+b") as f:  # rewrite the end in place, keep size and mtime
                    f.seek(16 << 20)
                    f.write(b"z" * (4 << 20))
                os.utime(src, ns=(st.st_atime_ns, st.st_mtime_ns))
            if on_bytes:
                on_bytes(n)

        return real(sha256, src, hook)

    store.put_blob = rewrite_midway
    job = publish_and_wait(service(store, host, tmp_path))
    assert job.state == "failed" and "no longer hash" in job.error["message"], job.error
    assert old not in blobs(store)
    assert path.stat().st_size == 20 << 20
    assert_every_blob_matches_its_digest(store)
    assert not [p for p in (tmp_path / "store").rglob(".tmp-*")]


def test_a_corrupted_blob_is_written_again_by_the_next_publish(tmp_path, host):
    digest = model(host, "a.safetensors", b"a" * 5000)
    store = FolderStore(tmp_path / "store")
    svc = service(store, host, tmp_path)
    assert publish_and_wait(svc).state == "succeeded"
    (tmp_path / "store" / "blobs" / "sha256" / digest).write_bytes(b"x" * 5000)  # same size, other bytes
    fresh = FolderStore(tmp_path / "store")  # another ComfyUI (or a restart): nothing remembered
    job = publish_and_wait(service(fresh, host, tmp_path))
    assert job.state == "succeeded", job.error
    assert job.result["bytes_written"] >= 5000 and blobs(fresh)[digest] == b"a" * 5000


def test_a_store_failing_mid_publish_leaves_no_environment_and_no_temporary_file(tmp_path, host):
    model(host, "a.safetensors", b"a" * 3_000_000)
    model(host, "b.safetensors", b"b" * 3_000_000)
    store = FailingStore(tmp_path / "store", budget=4_000_000)
    svc = service(store, host, tmp_path)
    job = publish_and_wait(svc)
    assert job.state == "failed" and "store went away" in job.error["message"]
    assert not svc.exists("Env1") and not store.list("environments/")
    assert not [p for p in (tmp_path / "store").rglob(".tmp-*")]
    assert_every_blob_matches_its_digest(store)


def test_uploads_a_killed_comfyui_left_are_swept_at_start(tmp_path, host):
    import time

    from comfyui_sagemaker.core.fs.hashing import HashCache
    from comfyui_sagemaker.core.models import ModelService
    from comfyui_sagemaker.core.tasks import TaskManager

    loras = host.root / "models" / "loras"
    dead, live = loras / ".big.safetensors.1234.upload", loras / ".other.safetensors.5678.upload"
    dead.write_bytes(b"half of 300 MB")
    live.write_bytes(b"being uploaded right now")
    os.utime(dead, (time.time() - 7200, time.time() - 7200))
    kept = model(host, "a.safetensors", b"a")
    svc = ModelService(host.folders, HashCache(tmp_path / "hc.json"), TaskManager(), lambda: [])
    assert svc.sweep() == [str(dead)]
    assert live.exists() and (loras / "a.safetensors").exists() and kept
