"""A shared endpoint redeployed from another ComfyUI, without a worker: the ask in the store (the newest ask wins, a
gone endpoint refuses), the router's choice (a deploy here is the shared endpoint's redeploy unless this ComfyUI
has its own endpoint, or the Share switch says false), and the owner's watcher carrying it out (the version asked
deployed beside the serving one, the ask removed; one that cannot be read deploys nothing; a malformed ask is
removed). The worker processes are tests/integration/test_serve_shared.py's and test_local_redeploy.py's."""

from __future__ import annotations

import json

import pytest
from comfyui_sagemaker.core.endpoints import EndpointStateConflict
from comfyui_sagemaker.core.endpoints_router import SHARED, EndpointsRouter
from comfyui_sagemaker.core.shared_registry import EXPIRES_S, SharedRegistry, Sharing, redeploy_key
from comfyui_sagemaker.core.worker_contract import WorkerRuntime
from comfyui_sagemaker.local.endpoints import LocalEndpoints, local_manifest
from comfyui_sagemaker.local.folder_store import FolderStore
from comfyui_sagemaker.local.shared_endpoints import SharedEndpoints
from harness.fake_comfy import publish
from harness.fake_endpoints import FakeEndpoints

TOKEN = "t" * 43


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def store(tmp_path):
    return FolderStore(tmp_path / "store")


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def registry(store, clock):
    registry = SharedRegistry(store, clock)
    registry.beat("Env1", 1, "InService", "http://127.0.0.1:8301", "i-owner", "owner", TOKEN)
    return registry


def test_a_redeploy_from_another_comfyui_is_an_ask_in_the_store_the_newest_wins(store, registry):
    publish(store, "Env1")
    manifest = publish(store, "Env1", version=2)
    changes: list[dict] = []
    view = SharedEndpoints(registry, "i-ben", "ben", on_change=changes.append).deploy(manifest)
    assert view["state"] == "InService" and "version 2 asked of owner by ben" in view["reason"]
    assert changes[-1] == view
    asked, _ = registry.redeploy_asked("Env1")
    assert asked["version"] == 2 and asked["by"] == "ben"
    SharedEndpoints(registry, "i-cy", "cy").deploy({**manifest, "version": 1})  # a rollback asked later
    assert registry.redeploy_asked("Env1")[0] == {**asked, "by": "cy", "version": 1}


def test_a_gone_endpoint_cannot_be_redeployed(store, registry, clock):
    manifest = publish(store, "Env1")
    clock.now += EXPIRES_S + 1
    with pytest.raises(EndpointStateConflict, match="has not been heard from"):
        SharedEndpoints(registry, "i-ben", "ben").deploy(manifest)
    assert not store.exists(redeploy_key("Env1"))


def router(registry: SharedRegistry, local: FakeEndpoints) -> EndpointsRouter:
    return EndpointsRouter({"local": lambda: local, SHARED: lambda: SharedEndpoints(registry, "i-ben", "ben")},
                           ("local", SHARED))


def test_a_deploy_where_another_comfyui_shares_the_endpoint_asks_its_owner(store, registry):
    manifest = publish(store, "Env1", version=2)
    local = FakeEndpoints(store)
    router(registry, local).deploy(manifest)
    assert local.list() == [] and registry.redeploy_asked("Env1")[0]["version"] == 2
    router(registry, local).rollback({**manifest, "version": 1})
    assert local.list() == [] and registry.redeploy_asked("Env1")[0]["version"] == 1


def test_the_share_switchs_false_or_an_endpoint_of_its_own_deploys_here(store, registry):
    manifest = publish(store, "Env1")
    local = FakeEndpoints(store)
    router(registry, local).deploy({**manifest, "endpoint": {"kind": "local", "shared": False}})
    assert [e["name"] for e in local.list()] == ["Env1"] and not store.exists(redeploy_key("Env1"))
    router(registry, local).deploy(manifest)  # it has its own now
    assert not store.exists(redeploy_key("Env1"))


class Owner:
    """The owner's LocalEndpoints with its deploys recorded instead of started."""

    def __init__(self, tmp_path, registry: SharedRegistry):
        runtime = WorkerRuntime(tmp_path / "no-comfyui", "", tmp_path / "no-extension")
        sharing = Sharing(registry, "i-owner", "owner", "127.0.0.1")
        self.local = LocalEndpoints(tmp_path / "state", "file://store", runtime, sharing=lambda: sharing)
        self.deployed: list[dict] = []
        self.local.deploy = self.deployed.append  # type: ignore[method-assign]
        self.local._running = lambda name, pid: True  # type: ignore[method-assign]

    def serve(self, state: str = "InService", **fields) -> None:
        """The watcher's turn on an endpoint serving version 1 in `state`."""
        self.local._write({"name": "Env1", "kind": "local", "state": state, "version": 1, "pid": 1, "shared": True,
                           "url": "http://127.0.0.1:8301", "token": TOKEN, **fields})
        self.local._share(self.local._read("Env1"), force=True)


def test_the_owners_watcher_deploys_the_version_asked_beside_the_serving_one_and_removes_the_ask(store, registry,
                                                                                                   tmp_path):
    manifest = publish(store, "Env1", version=2)
    SharedEndpoints(registry, "i-ben", "ben").deploy(manifest)
    owner = Owner(tmp_path, registry)
    owner.serve("Creating")  # one update at a time: asked again once it serves
    owner.serve("InService", next={"pid": 2, "port": 8302, "url": "http://127.0.0.1:8302", "token": TOKEN,
                                   "version": 3, "manifest_uri": "file://store/v3", "idle_stop_minutes": 0,
                                   "shared": True})
    assert owner.deployed == [] and store.exists(redeploy_key("Env1"))
    owner.serve()
    assert [(m["version"], m["endpoint"]) for m in owner.deployed] == [(2, {"kind": "local", "shared": True})]
    assert not store.exists(redeploy_key("Env1"))
    owner.serve()
    assert len(owner.deployed) == 1


def test_an_ask_made_while_the_owner_deployed_is_kept_for_its_next_turn(store, registry, tmp_path):
    publish(store, "Env1", version=2)
    publish(store, "Env1", version=3)
    registry.ask_redeploy("Env1", 2, "ben")
    owner = Owner(tmp_path, registry)

    def deploy(manifest: dict) -> None:  # a newer ask lands while the owner deploys the first
        owner.deployed.append(manifest)
        if manifest["version"] == 2:
            registry.ask_redeploy("Env1", 3, "cy")

    owner.local.deploy = deploy  # type: ignore[method-assign]
    owner.serve()
    assert registry.redeploy_asked("Env1")[0]["version"] == 3
    owner.serve()
    assert [m["version"] for m in owner.deployed] == [2, 3] and not store.exists(redeploy_key("Env1"))


@pytest.mark.parametrize("ask", [b"{", json.dumps({"by": "ben", "at": "", "version": "2"}).encode(),
                                 json.dumps({"by": "ben", "at": "", "version": 0}).encode(),
                                 json.dumps({"by": "ben", "at": "", "version": True}).encode(),
                                 json.dumps({"by": "ben", "at": "", "version": 9}).encode()])
def test_an_ask_that_is_not_one_or_names_no_version_deploys_nothing_and_goes(store, registry, tmp_path, ask):
    publish(store, "Env1")
    store.put(redeploy_key("Env1"), ask)
    owner = Owner(tmp_path, registry)
    owner.serve()
    assert owner.deployed == [] and not store.exists(redeploy_key("Env1"))


def test_an_environment_of_another_kind_is_served_with_the_local_default():
    manifest = {"name": "Env1", "version": 1, "endpoint": {"kind": "sagemaker", "instance_type": "ml.g5.xlarge"}}
    assert local_manifest(manifest, shared=True)["endpoint"] == {"kind": "local", "shared": True}  # type: ignore
    assert local_manifest({**manifest, "endpoint": {"kind": "local", "idle_stop_minutes": 5}})["endpoint"] == \
        {"kind": "local", "idle_stop_minutes": 5}  # type: ignore
