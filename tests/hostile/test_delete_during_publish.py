"""Delete during publish: nothing comes back. In this ComfyUI the delete (with force) cancels the publish
and waits for it; from another ComfyUI on the same store, the publish finds its claim gone and writes
no manifest. Either way the name is free afterwards, in any case."""

from __future__ import annotations

import threading

import pytest
from comfyui_sagemaker.core.errors import Conflict
from comfyui_sagemaker.local.folder_store import FolderStore
from harness.hosts import FolderHost, model, publish_and_wait, service


@pytest.fixture
def host(tmp_path):
    return FolderHost(tmp_path / "comfy")


def held(store: FolderStore):
    """Hold a publish in its upload phase until released."""
    started, release = threading.Event(), threading.Event()
    real = store.has_blob

    def slow(sha256, size, path=None):
        started.set()
        release.wait(300)
        return real(sha256, size, path)

    store.has_blob = slow
    return started, release


@pytest.mark.parametrize("existing", [False, True], ids=["first-publish", "new-version"])
def test_force_delete_cancels_the_publish_and_nothing_comes_back(tmp_path, host, existing):
    model(host, "a.safetensors", b"a" * 1000)
    store = FolderStore(tmp_path / "store")
    svc = service(store, host, tmp_path)
    if existing:
        assert publish_and_wait(svc, "Env1").state == "succeeded"
    started, release = held(store)
    job = svc.publish("Env1", include="all")
    assert started.wait(120)
    with pytest.raises(Conflict, match="being published"):
        svc.delete("Env1")  # without force: says why
    deleted = threading.Thread(target=svc.delete, args=("Env1", True))
    deleted.start()
    release.set()
    deleted.join(120)
    assert not deleted.is_alive()
    assert svc.tasks.get(job.id).state == "cancelled"
    assert not svc.exists("Env1") and store.list("environments/") == []
    store.has_blob = FolderStore.has_blob.__get__(store)
    assert publish_and_wait(svc, "env1").state == "succeeded"  # the name (any case) is free: a new v1
    assert svc.get("env1")["name"] == "env1" and svc.versions("env1") == [1]


def test_a_delete_from_another_comfyui_is_not_undone_by_the_publish(tmp_path, host):
    model(host, "a.safetensors", b"a" * 1000)
    store = FolderStore(tmp_path / "store")
    svc = service(store, host, tmp_path)
    assert publish_and_wait(svc, "Env1").state == "succeeded"
    started, release = held(store)
    job = svc.publish("Env1", include="all")
    assert started.wait(120)
    other = service(FolderStore(tmp_path / "store"), host, tmp_path)  # its own jobs: it cannot cancel ours
    other.delete("Env1", force=True)
    release.set()
    job = svc.tasks.wait(job.id, 120)
    assert job.state == "failed" and "deleted while it was being published" in job.error["message"]
    assert not svc.exists("Env1") and store.list("environments/") == []
