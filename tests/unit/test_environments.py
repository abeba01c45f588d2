"""The environment service on real stores and real folders (include "all": no node registry needed)."""

import json
import threading

import pytest
from comfyui_sagemaker.core import errors
from comfyui_sagemaker.core.environments import EnvironmentExists
from comfyui_sagemaker.local.folder_store import FolderStore
from harness.hosts import FailingStore, FolderHost, model, publish_and_wait, service


@pytest.fixture
def host(tmp_path):
    return FolderHost(tmp_path / "comfy")


def test_publish_all_writes_blobs_then_manifest(tmp_path, host):
    sha = model(host, "a.safetensors", b"a" * 1000)
    store = FolderStore(tmp_path / "store")
    svc = service(store, host, tmp_path)
    task = publish_and_wait(svc)
    assert task.state == "succeeded", task.error
    m = svc.get("Env1")
    assert m["version"] == 1 and m["models"] == [{"folder": "loras", "name": "a.safetensors", "size": 1000,
                                                   "sha256": sha}]
    assert [p["folder"] for p in m["custom_nodes"]] == ["pack_a"]
    assert store.size(f"blobs/sha256/{sha}") == 1000
    assert store.size(f"blobs/sha256/{m['custom_nodes'][0]['archive']['sha256']}") > 0
    assert any(p["name"].lower() == "pytest" for p in m["python_packages"])
    assert all("platform_specific" in p for p in m["python_packages"])
    again = publish_and_wait(svc)
    assert again.result["version"] == 2 and again.result["bytes_written"] == 0
    assert svc.get("Env1", 1)["version"] == 1 and svc.versions("env1") == [1, 2]


def test_store_failing_midway_leaves_no_manifest_and_retry_writes_the_rest(tmp_path, host):
    model(host, "a.safetensors", b"a" * 3_000_000)
    model(host, "b.safetensors", b"b" * 3_000_000)
    store = FailingStore(tmp_path / "store", budget=4_000_000)
    svc = service(store, host, tmp_path)
    task = publish_and_wait(svc)
    assert task.state == "failed" and "store went away" in task.error["message"]
    assert not svc.exists("Env1") and svc.list() == []
    store.budget = 10**12
    retry = publish_and_wait(svc)
    assert retry.state == "succeeded"
    archive = svc.get("Env1")["custom_nodes"][0]["archive"]["size"]
    assert retry.result["bytes_written"] == 3_000_000 + archive  # only what the failed run did not finish


def test_cancelled_publish_leaves_nothing_and_frees_the_name(tmp_path, host):
    model(host, "a.safetensors", b"a" * 1000)
    store = FolderStore(tmp_path / "store")
    svc = service(store, host, tmp_path)
    started = threading.Event()
    release = threading.Event()
    real_has_blob = store.has_blob

    def slow_has_blob(sha256, size, path=None):  # hold the task in its upload phase until cancelled
        started.set()
        release.wait(300)
        return real_has_blob(sha256, size, path)

    store.has_blob = slow_has_blob
    task = svc.publish("Env1", include="all", endpoint={"kind": "local"})
    assert started.wait(120)
    svc.tasks.cancel(task.id)
    release.set()
    task = svc.tasks.wait(task.id, 120)
    assert task.state == "cancelled"
    assert not svc.exists("Env1") and store.list("environments/") == []
    with pytest.raises(errors.Conflict):
        svc.tasks.cancel(task.id)


def test_names_are_unique_regardless_of_case(tmp_path, host):
    svc = service(FolderStore(tmp_path / "store"), host, tmp_path)
    assert publish_and_wait(svc, "Env1").state == "succeeded"
    with pytest.raises(EnvironmentExists):
        svc.publish("ENV1", include="all", endpoint={"kind": "local"})
    assert publish_and_wait(svc, "Env1").result["version"] == 2


def test_concurrent_manifest_writes_never_share_a_version(tmp_path, host):
    svc = service(FolderStore(tmp_path / "store"), host, tmp_path)
    svc._claim("Env1")  # as publish() does before its task runs
    barrier = threading.Barrier(8)
    versions = []

    def write():
        barrier.wait()
        versions.append(svc._write_manifest({"name": "Env1", "size": 0}))

    threads = [threading.Thread(target=write) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(versions) == list(range(1, 9))


def test_two_publishes_of_one_name_at_once_one_is_409(tmp_path, host):
    store = FolderStore(tmp_path / "store")
    svc = service(store, host, tmp_path)
    release = threading.Event()
    real_size = store.size
    store.size = lambda key: (release.wait(300), real_size(key))[1]
    first = svc.publish("Env1", include="all", endpoint={"kind": "local"})
    with pytest.raises(errors.Conflict, match="being published"):
        svc.publish("Env1", include="all", endpoint={"kind": "local"})
    release.set()
    assert svc.tasks.wait(first.id, 120).state == "succeeded"


def test_no_templates_without_include_all_is_400(tmp_path, host):
    svc = service(FolderStore(tmp_path / "store"), host, tmp_path)
    with pytest.raises(errors.BadRequest, match="no templates"):
        svc.publish("Env1", endpoint={"kind": "local"})


def test_delete_guards_and_force(tmp_path, host):
    store = FolderStore(tmp_path / "store")
    svc = service(store, host, tmp_path)
    publish_and_wait(svc)
    svc.templates.environment_exists = svc.exists
    svc.templates.create("T1", {"nodes": []}, {"1": {"class_type": "X", "inputs": {}}}, environment="env1")
    with pytest.raises(errors.Conflict, match="T1"):
        svc.delete("Env1")
    svc.delete("Env1", force=True)
    assert not svc.exists("Env1")
    with pytest.raises(errors.EnvironmentNotFound):
        svc.delete("Env1")


@pytest.mark.slow  # writes 2 GiB to the folder store: the whole suite runs it, the fast tier does not
def test_sparse_two_gigabyte_model_hashes_and_uploads_with_flat_memory(tmp_path, host):
    import resource

    path = host.root / "models" / "loras" / "big.safetensors"
    with open(path, "wb") as f:
        f.truncate(2 * 1024**3)
    store = FolderStore(tmp_path / "store")
    svc = service(store, host, tmp_path)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    task = publish_and_wait(svc)
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert task.state == "succeeded", task.error
    assert grown_mib < 100, f"peak RSS grew {grown_mib:.0f} MiB publishing a 2 GiB model"
    m = svc.get("Env1")["models"][0]
    assert m["size"] == 2 * 1024**3
    assert json.dumps(m)  # and its blob is there, complete
    assert store.size(f"blobs/sha256/{m['sha256']}") == 2 * 1024**3
