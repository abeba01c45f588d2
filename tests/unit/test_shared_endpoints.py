"""Shared local endpoints without a worker: the store's registry (what it holds, what it keeps out, a heartbeat's
expiry), the router's choice (this ComfyUI's own endpoint first, another's shared one when it has none), a stop
asked from another ComfyUI, the config that shares, and what an artist is told when nothing runs. The worker and
three real ComfyUIs are tests/integration/test_shared_endpoints.py's."""

from __future__ import annotations

import json

import pytest
from comfyui_sagemaker.core.config import Config, ConfigInvalid, load
from comfyui_sagemaker.core.endpoint_config import EndpointConfigInvalid, validate
from comfyui_sagemaker.core.endpoints import EndpointNotReady
from comfyui_sagemaker.core.endpoints_router import SHARED, EndpointsRouter
from comfyui_sagemaker.core.shared_registry import (
    EXPIRES_S,
    GONE,
    SharedRegistry,
    Sharing,
    entry_key,
    stop_key,
)
from comfyui_sagemaker.core.worker_contract import WorkerRuntime
from comfyui_sagemaker.local.endpoints import LocalEndpoints
from comfyui_sagemaker.local.folder_store import FolderStore
from comfyui_sagemaker.local.shared_endpoints import SharedEndpoints
from harness.fake_comfy import FakeComfy, publish
from harness.fake_endpoints import FakeEndpoints

TOKEN = "t" * 43
PROMPT = {"1": {"class_type": "EmptyImage", "inputs": {"width": 4, "height": 2, "batch_size": 1, "color": 1}},
          "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "shared"}}}


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


def share(registry: SharedRegistry, name: str = "Env1", owner: str = "designer", instance: str = "i-designer",
          url: str = "http://127.0.0.1:8301") -> None:
    registry.beat(name, 3, "InService", url, instance, owner, TOKEN)


def test_an_entry_says_where_and_who_but_never_the_token(store, clock):
    registry = SharedRegistry(store, clock)
    share(registry)
    raw = store.get(entry_key("Env1")).data.decode()
    assert TOKEN not in raw
    assert json.loads(raw)["url"] == "http://127.0.0.1:8301" and json.loads(raw)["owner"] == "designer"
    assert registry.token("env1") == TOKEN  # its own key (entry_key's folder is the environment's, lowercased)
    view = SharedEndpoints(registry, "i-ana", "ana").get("Env1")
    assert view["shared"] is True and view["owner"] == "designer" and view["state"] == "InService"
    assert view["version"] == 3 and TOKEN not in json.dumps(view)


def test_an_endpoint_whose_heartbeat_stopped_is_gone_and_takes_no_runs(store, clock):
    registry = SharedRegistry(store, clock)
    share(registry)
    shared = SharedEndpoints(registry, "i-ana", "ana")
    clock.now += EXPIRES_S - 1
    assert shared.get("Env1")["state"] == "InService"
    clock.now += 2
    view = shared.get("Env1")
    assert view["state"] == GONE and view["url"] is None and "designer's ComfyUI" in view["reason"]
    with pytest.raises(EndpointNotReady, match="has not been heard from"):
        shared.check_ready("Env1")
    share(registry)  # its ComfyUI came back: the next beat revives it
    assert shared.get("Env1")["state"] == "InService"


def test_the_owner_lists_its_own_shared_endpoint_through_its_local_provider_only(store, clock):
    registry = SharedRegistry(store, clock)
    share(registry, instance="i-designer")
    assert SharedEndpoints(registry, "i-designer", "designer").list() == []
    assert [e["owner"] for e in SharedEndpoints(registry, "i-ana", "ana").list()] == ["designer"]


def test_the_router_runs_on_the_shared_endpoint_only_when_this_comfyui_has_none(store, clock):
    registry = SharedRegistry(store, clock)
    share(registry)
    publish(store, "Env1")
    local = FakeEndpoints(store)
    router = EndpointsRouter({"local": lambda: local, SHARED: lambda: SharedEndpoints(registry, "i-ana", "ana")},
                             ("local", SHARED))
    chosen = router.get("Env1")
    assert chosen["shared"] is True and chosen["owner"] == "designer"
    assert [e["name"] for e in router.list()] == ["Env1"]
    local.deploy(json.loads(store.get("environments/env1/versions/v000001.json").data))
    assert "shared" not in router.get("Env1")  # its own comes first
    assert len(router.list()) == 2  # both are listed, each says whose it is


def test_a_deploy_here_never_removes_another_comfyuis_shared_endpoint(store, clock):
    registry = SharedRegistry(store, clock)
    share(registry)
    manifest = publish(store, "Env1")
    local = FakeEndpoints(store)
    router = EndpointsRouter({"local": lambda: local, SHARED: lambda: SharedEndpoints(registry, "i-ana", "ana")},
                             ("local", SHARED))
    router.deploy(manifest)
    assert registry.entry("Env1") is not None and not store.exists(stop_key("Env1"))


def test_a_stop_from_another_comfyui_is_a_marker_its_owner_obeys(store, clock):
    registry = SharedRegistry(store, clock)
    share(registry)
    changes = []
    view = SharedEndpoints(registry, "i-ben", "ben", on_change=changes.append).stop("Env1")
    assert view["state"] == "Stopping" and changes[-1]["state"] == "Stopping"
    assert registry.stop_asked("Env1") == {"by": "ben", "at": json.loads(store.get(stop_key("Env1")).data)["at"]}
    SharedEndpoints(registry, "i-cy", "cy").stop("Env1")  # a second ask changes nothing
    assert registry.stop_asked("Env1")["by"] == "ben"
    registry.withdraw("Env1")  # what the owner does once stopped
    assert registry.entries() == [] and registry.token("Env1") is None and registry.stop_asked("Env1") is None


def test_a_gone_endpoints_stop_removes_its_entry(store, clock):
    registry = SharedRegistry(store, clock)
    share(registry)
    clock.now += EXPIRES_S + 1
    assert SharedEndpoints(registry, "i-ben", "ben").stop("Env1")["state"] == "Deleted"
    assert registry.entries() == []


def test_the_endpoint_config_shares_and_a_private_one_is_stored_as_before():
    assert validate({"kind": "local", "shared": True}, 1) == {"kind": "local", "shared": True}
    assert validate({"kind": "local", "shared": False}, 1) == {"kind": "local"}
    with pytest.raises(EndpointConfigInvalid, match="endpoint.shared must be true or false"):
        validate({"kind": "local", "shared": "yes"}, 1)
    with pytest.raises(EndpointConfigInvalid, match="unknown endpoint fields for kind sagemaker: shared"):
        validate({"kind": "sagemaker", "shared": True}, 1)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "designer.example", "127.0.0.1:8000"])
def test_share_host_is_one_address(host, tmp_path):
    with pytest.raises(ConfigInvalid, match="share_host"):
        load(tmp_path, {"COMFYUI_SAGEMAKER_SHARE_HOST": host})
    assert load(tmp_path, {"COMFYUI_SAGEMAKER_SHARE_HOST": "192.168.1.20"}).share_host == "192.168.1.20"


def test_a_shared_deploy_without_share_host_is_refused_before_any_worker_starts(store, tmp_path, clock):
    runtime = WorkerRuntime(tmp_path / "no-comfyui", "", tmp_path / "no-extension")
    sharing = Sharing(SharedRegistry(store, clock), "i-designer", "designer", "")
    local = LocalEndpoints(tmp_path / "state", "file://store", runtime, sharing=lambda: sharing)
    manifest = {**publish(store, "Env1"), "endpoint": {"kind": "local", "shared": True}}
    with pytest.raises(Exception, match=r"\(share_host\) in Connect"):
        local.deploy(manifest)
    assert local.list() == []


def test_a_second_comfyui_cannot_share_what_another_shares(store, tmp_path, clock):
    registry = SharedRegistry(store, clock)
    share(registry, owner="designer", instance="i-designer")
    runtime = WorkerRuntime(tmp_path / "no-comfyui", "", tmp_path / "no-extension")
    local = LocalEndpoints(tmp_path / "state", "file://store", runtime,
                           sharing=lambda: Sharing(registry, "i-other", "other", "127.0.0.1"))
    manifest = {**publish(store, "Env1"), "endpoint": {"kind": "local", "shared": True}}
    with pytest.raises(Exception, match="designer shares an endpoint of Env1 already"):
        local.deploy(manifest)
    assert local.list() == []


@pytest.mark.parametrize("role, said", [("artist", "ask a designer to deploy or share one"),
                                        ("designer", "deploy one first, or share one")])
def test_nothing_running_tells_an_artist_who_can_help_not_to_deploy(store, tmp_path, role, said):
    publish(store, "Env1")
    comfy = FakeComfy(tmp_path / role, store, FakeEndpoints(store), role=role, name=role)
    try:
        r = comfy.post("/sagemaker/executions", json={"prompt": PROMPT, "environment": "Env1"})
        assert r.status_code == 409 and said in r.json()["error"]["message"], r.text
        if role == "artist":
            assert "deploy one first" not in r.json()["error"]["message"]
    finally:
        comfy.close()


def test_config_default_shares_nothing():
    assert Config().share_host == ""


class Recording(FakeEndpoints):
    """FakeEndpoints that keeps the endpoint config of each deploy."""

    def __init__(self, store) -> None:
        super().__init__(store)
        self.configs: list[dict] = []

    def deploy(self, manifest: dict) -> dict:
        self.configs.append(manifest["endpoint"])
        return super().deploy(manifest)


def test_the_share_switch_deploys_the_endpoint_shared_or_private_and_leaves_the_manifest(store, tmp_path):
    publish(store, "Env1")
    fake = Recording(store)
    comfy = FakeComfy(tmp_path / "designer", store, fake, role="designer", name="designer")
    try:
        assert comfy.post("/sagemaker/endpoints", json={"environment": "Env1", "shared": True}).status_code == 202
        assert comfy.post("/sagemaker/endpoints", json={"environment": "Env1", "shared": False}).status_code == 202
        assert comfy.post("/sagemaker/endpoints", json={"environment": "Env1"}).status_code == 202
        assert fake.configs == [{"kind": "local", "shared": True}, {"kind": "local", "shared": False},
                                {"kind": "local"}]
        stored = json.loads(store.get("environments/env1/versions/v000001.json").data)
        assert stored["endpoint"] == {"kind": "local"}
        r = comfy.post("/sagemaker/endpoints", json={"environment": "Env1", "shared": "yes"})
        assert r.status_code == 400 and "shared must be true or false" in r.text
    finally:
        comfy.close()


def test_only_a_local_endpoint_is_shared(store, tmp_path):
    manifest = publish(store, "Env2", version=1)
    store.put("environments/env2/versions/v000001.json", json.dumps(
        {**manifest, "endpoint": {"kind": "sagemaker", "instance_type": "ml.g5.xlarge", "initial_count": 1,
                                  "mode": "async", "autoscaling": {"min": 0, "max": 1}}}).encode())
    comfy = FakeComfy(tmp_path / "designer", store, FakeEndpoints(store), role="designer", name="designer")
    try:
        r = comfy.post("/sagemaker/endpoints", json={"environment": "Env2", "shared": True})
        assert r.status_code == 400 and "only a local endpoint is shared" in r.text
    finally:
        comfy.close()


def test_an_artist_may_not_share(store, tmp_path):
    publish(store, "Env1")
    comfy = FakeComfy(tmp_path / "ana", store, FakeEndpoints(store), role="artist", name="ana")
    try:
        assert comfy.post("/sagemaker/endpoints", json={"environment": "Env1", "shared": True}).status_code == 403
    finally:
        comfy.close()


def test_sharing_sticks_to_a_local_endpoint_through_redeploys_until_the_switch_says_false(store, tmp_path, clock):
    registry = SharedRegistry(store, clock)
    runtime = WorkerRuntime(tmp_path / "no-comfyui", "", tmp_path / "no-extension")
    local = LocalEndpoints(tmp_path / "state", "file://store", runtime,
                           sharing=lambda: Sharing(registry, "i-designer", "designer", ""))
    manifest = publish(store, "Env1")
    local._write({"name": "Env1", "kind": "local", "state": "Stopped", "version": 1, "shared": True})
    # A redeploy of {"kind": "local"} shares it again (here without share_host: refused, so it would have shared).
    with pytest.raises(Exception, match=r"\(share_host\) in Connect"):
        local.deploy(manifest)
    started = []
    local._start = started.append  # no worker: what it would start with
    local.deploy({**manifest, "endpoint": {"kind": "local", "shared": False}})
    assert started[-1]["shared"] is False and local.get("Env1")["shared"] is False


def test_costs_without_a_comfyui_estimate_a_shared_endpoint_instead_of_failing(store, clock):
    """The CLI has no local provider (no ComfyUI) but lists the team's shared endpoints, of kind local."""
    from datetime import datetime, timezone

    from comfyui_sagemaker.core.errors import SageMakerError

    def no_local():
        raise SageMakerError("local endpoints need a running ComfyUI")

    registry = SharedRegistry(store, clock)
    share(registry)
    router = EndpointsRouter({"local": no_local, SHARED: lambda: SharedEndpoints(registry, "i-cli", "cli")},
                             ("local", SHARED))
    views, problems = router.list_with_problems()
    assert [v["owner"] for v in views] == ["designer"] and [p["kind"] for p in problems] == ["local"]
    assert router.usage(views, datetime(2026, 1, 1, tzinfo=timezone.utc), datetime.now(timezone.utc)) == {}
