"""A local redeploy side by side meets shared endpoints and kept results (local/endpoint_redeploy.py): the next worker
of a shared endpoint listens on share_host as its first one did, the endpoint's `shared` changes with the switch
of workers, and a run's result is asked of the worker it was sent to (never of the one that replaced it). No
worker runs here: the process start is recorded, and the next worker's watcher is left out."""

from __future__ import annotations

import json
import os

import pytest
from comfyui_sagemaker.core.endpoints import RunUnknown
from comfyui_sagemaker.core.environments import manifest_key
from comfyui_sagemaker.core.shared_registry import SharedRegistry, Sharing
from comfyui_sagemaker.core.worker_contract import WorkerRuntime
from comfyui_sagemaker.local.endpoints import LocalEndpoints
from comfyui_sagemaker.local.folder_store import FolderStore

NAME = "Env1"
SHARE_HOST = "127.0.0.2"  # a loopback address of its own: where the worker listens tells which host was chosen


class Started:
    """Worker starts as the endpoints ask for them: their environment; each gets a pid no process has."""

    def __init__(self) -> None:
        self.envs: list[dict[str, str]] = []

    def __call__(self, argv: list[str], env: dict[str, str], log_path) -> int:
        self.envs.append(env)
        return 2**22 + len(self.envs)  # above the default pid_max: never a live process


@pytest.fixture
def local(tmp_path):
    store = FolderStore(tmp_path / "store")
    registry = SharedRegistry(store)
    endpoints = LocalEndpoints(tmp_path / "state", "file://store", WorkerRuntime(tmp_path, "", tmp_path),
                               sharing=lambda: Sharing(registry, "i-designer", "designer", SHARE_HOST))
    endpoints.started = Started()  # type: ignore[attr-defined]
    endpoints._processes.start = endpoints.started  # type: ignore[method-assign]
    endpoints._watch_next = lambda name, pid: None  # type: ignore[method-assign]
    endpoints._watch = lambda name, pid: None  # type: ignore[method-assign]
    endpoints.store = store  # type: ignore[attr-defined]
    return endpoints


def serving(local: LocalEndpoints, shared: bool) -> None:
    """Version 1 in service on a live process (this test's own), shared or not."""
    local._write({"name": NAME, "kind": "local", "state": "InService", "environment": NAME, "version": 1,
                  "manifest_uri": "file://store/v1", "pid": os.getpid(), "port": 1, "url": "http://127.0.0.1:1",
                  "token": "old-secret", "shared": shared, "next": None, "retiring": None})


def manifest(version: int, shared: bool | None = None) -> dict:
    endpoint: dict = {"kind": "local"} if shared is None else {"kind": "local", "shared": shared}
    return {"name": NAME, "version": version, "custom_nodes": [], "models": [], "endpoint": endpoint}


def test_the_next_worker_of_a_shared_endpoint_listens_on_share_host(local):
    serving(local, shared=True)
    answer = local.deploy(manifest(2))
    assert answer["state"] == "Updating" and answer["shared"] is True and answer["version"] == 1
    assert local.started.envs[-1]["WORKER_HOST"] == SHARE_HOST
    nxt = local._read(NAME)["next"]
    assert nxt["shared"] is True and nxt["url"].startswith(f"http://{SHARE_HOST}:")


def test_the_share_switch_starts_the_next_worker_on_share_host_and_shares_once_traffic_moves(local):
    serving(local, shared=False)
    assert local.deploy(manifest(1, shared=True))["shared"] is False  # the serving worker listens on loopback
    assert local.started.envs[-1]["WORKER_HOST"] == SHARE_HOST
    nxt = local._read(NAME)["next"]
    local._switch(NAME, nxt["pid"], {})
    state = local._read(NAME)
    assert state["shared"] is True and state["url"] == nxt["url"]
    entry = local._sharing().registry.entry(NAME)
    assert entry is not None and entry["url"] == nxt["url"]  # the team's entry points at the new worker


def test_a_private_redeploy_of_a_shared_endpoint_starts_on_loopback(local):
    serving(local, shared=True)
    local.deploy(manifest(2, shared=False))
    assert local.started.envs[-1]["WORKER_HOST"] == "127.0.0.1"
    assert local._read(NAME)["shared"] is True  # until traffic moves: the serving worker is the team's


class Asked(Exception):
    pass


def test_a_result_is_asked_of_the_worker_the_run_was_sent_to(local, monkeypatch):
    import requests

    serving(local, shared=False)
    asked: list[tuple[str, dict]] = []

    def post(url, **kw):
        asked.append((url, kw["headers"]))
        raise Asked

    monkeypatch.setattr(requests, "post", post)
    # Its worker was replaced by a redeploy since: its results went with it, the serving one is not asked.
    with pytest.raises(RunUnknown, match="worker that ran the run gone"):
        local.resume(NAME, "run-1", {"kind": "local", "worker_pid": 2**22 + 99}, lambda e: None)
    assert asked == []
    # The serving worker ran it: asked with its own secret.
    with pytest.raises(Asked):
        local.resume(NAME, "run-1", {"kind": "local", "worker_pid": os.getpid()}, lambda e: None)
    assert asked[-1][0] == "http://127.0.0.1:1/invocations" and asked[-1][1]["X-Worker-Token"] == "old-secret"


def test_an_invocation_says_which_worker_keeps_its_result(local, monkeypatch):
    from comfyui_sagemaker.local import endpoint_runs as module

    serving(local, shared=False)
    seen: list[dict] = []

    def worker(name, url, headers, body, on_event, on_lost, resumable=False):
        assert resumable and url == "http://127.0.0.1:1" and headers["X-Worker-Token"] == "old-secret"
        on_event({"type": module.RESUMABLE, "data": {"resume": {"kind": "local", "kept_s": 60}}})
        return {"execution_id": body["execution_id"], "status": "succeeded", "outputs": {}}

    monkeypatch.setattr(module, "invoke_worker", worker)
    local.invoke(NAME, {"execution_id": "run-2", "prompt": {}}, seen.append)
    assert seen[0]["data"]["resume"] == {"kind": "local", "kept_s": 60, "worker_pid": os.getpid()}
    assert local._inflight.count(os.getpid()) == 0


def test_the_next_worker_of_a_shared_endpoint_reads_its_own_versions_manifest(local):
    serving(local, shared=True)
    local.deploy(manifest(2))
    assert local.started.envs[-1]["SAGEMAKER_MANIFEST_URI"] == f"file://store/{manifest_key(NAME, 2)}"
    assert json.loads((local.root / NAME.lower() / "state.json").read_text())["next"]["version"] == 2
