"""A worker whose environment cannot be materialised ends its start at once with a reason (in /status,
in its log, and on the endpoint), instead of staying 'starting' until a time limit: hand-written and
corrupt manifests, blobs that are not archives, archives the extraction refuses."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import uuid

import pytest
from comfyui_sagemaker.local.folder_store import FolderStore
from harness.envs import publish_environment, wait_endpoint
from harness.worker import WorkerProcess

pytestmark = pytest.mark.comfyui


def blob(store: FolderStore, data: bytes) -> str:
    digest = hashlib.sha256(data).hexdigest()
    store.put(f"blobs/sha256/{digest}", data)
    return digest


def tar_gz(*members: tuple[tarfile.TarInfo, bytes | None]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def symlink(name: str, target: str) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = tarfile.SYMTYPE, target
    return info, None


def pack(folder: str, sha: str) -> dict:
    return {"folder": folder, "archive": {"sha256": sha, "size": 1}}


def manifests(store: FolderStore) -> dict[str, tuple[object, str]]:
    """name -> (manifest, words the reason must hold)."""
    not_tar = blob(store, b"this is not a tar archive" * 10)
    absolute = blob(store, tar_gz(symlink("p/etc", "/etc")))
    escaping = blob(store, tar_gz(symlink("up", "../../..")))
    return {
        "no-archive": ({"custom_nodes": [{"folder": "p"}], "models": []}, "no archive"),
        "models-5": ({"custom_nodes": [], "models": 5}, "models must be a list"),
        "not-json": (b"{models", "not JSON"),
        "not-an-object": ([1, 2], "not a JSON object"),
        "blob-missing": ({"custom_nodes": [pack("p", "0" * 64)], "models": []}, "missing"),
        "bad-digest": ({"custom_nodes": [pack("p", "../../etc/passwd")], "models": []}, "digest"),
        "not-a-tar": ({"custom_nodes": [pack("p", not_tar)], "models": []}, "archive"),
        "absolute-link": ({"custom_nodes": [pack("p", absolute)], "models": []}, "/etc"),
        "escaping-link": ({"custom_nodes": [pack("p", escaping)], "models": []}, "outside"),
        "extension-name": ({"custom_nodes": [pack("ComfyUI-SageMaker", not_tar)], "models": []}, "built-in"),
        "pip-option": ({"custom_nodes": [], "models": [],
                        "python_packages": [{"name": "--index-url=http://evil", "version": "1"}]}, "plain name"),
    }


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> FolderStore:
    return FolderStore(tmp_path_factory.mktemp("hostile-store"))


@pytest.mark.parametrize("case", ["no-archive", "models-5", "not-json", "not-an-object", "blob-missing",
                                  "bad-digest", "not-a-tar", "absolute-link", "escaping-link", "extension-name",
                                  "pip-option"])
def test_a_manifest_the_worker_cannot_use_fails_its_start_with_a_reason(store, tmp_path, case):
    manifest, words = manifests(store)[case]
    key = f"environments/h{uuid.uuid4().hex[:8]}/versions/v000001.json"
    store.put(key, manifest if isinstance(manifest, bytes) else json.dumps(manifest).encode())
    w = WorkerProcess(f"{store.root.resolve().as_uri()}/{key}", tmp_path / "w").start()
    try:
        status = w.wait_state()
        assert status["state"] == "failed" and words in status["reason"], status
        assert "worker failed:" in w.log()
        assert not any((tmp_path / "w" / "base").glob("**/etc/passwd"))
    finally:
        w.stop()


def test_the_endpoint_shows_why_its_worker_failed(comfyui):
    client = comfyui.client()
    prompt = {"1": {"class_type": "EmptyImage", "inputs": {"width": 2, "height": 2, "batch_size": 1, "color": 1}},
              "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "mf"}}}
    _, env, _ = publish_environment(client, prompt)
    store = FolderStore(comfyui.user_dir / "__sagemaker" / "store")
    # A version written by hand (or by a broken tool) that the extension can read (a manifest it cannot read is
    # refused before any deploy: tests/hostile/test_corrupt_records.py) but the worker cannot use.
    store.create(f"environments/{env.lower()}/versions/v000002.json",
                 json.dumps({"name": env, "version": 2, "custom_nodes": [], "models": [], "endpoint": {"kind": "local"},
                             "python_packages": [{"name": "--index-url=http://x", "version": "1"}]}).encode())
    try:
        assert client.post("/sagemaker/endpoints", json={"environment": env}).status_code == 202
        endpoint = wait_endpoint(client, env)
        assert endpoint["state"] == "Failed" and "needs a plain name and version" in endpoint["reason"], endpoint
        # One broken manifest never hides the list: it is listed with what is wrong.
        listed = {e["name"]: e for e in client.get("/sagemaker/environments").json()["environments"]}
        assert "incomplete" in listed[env]["problem"]
    finally:
        client.delete(f"/sagemaker/endpoints/{env}")
        client.delete(f"/sagemaker/environments/{env}?force=true")
