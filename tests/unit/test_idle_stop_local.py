"""Idle stop of a local endpoint on the folder store (core/idle_stop.py): the owning ComfyUI's watcher reads the
worker's `idle_since` in the /status it polls anyway and, on a fake clock past the endpoint's idle_stop_minutes,
calls the endpoint's own Stop; the view then says who stopped it and when. The worker is a stand-in
(tests/harness/fake_worker.py) that reports itself ready and idle since a fixed time."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest
from comfyui_sagemaker.core import idle_stop
from comfyui_sagemaker.core.environments import manifest_key
from comfyui_sagemaker.core.worker_contract import WorkerRuntime
from comfyui_sagemaker.local.endpoints import LocalEndpoints
from comfyui_sagemaker.local.folder_store import FolderStore
from harness import fake_worker
from harness.fake_clock import Clock
from harness.fake_worker import Changes

IDLE_SINCE = "2026-01-01T00:00:00+00:00"
T0 = datetime(2026, 1, 1, tzinfo=timezone.utc).timestamp()


@pytest.fixture
def local(tmp_path):
    store = FolderStore(tmp_path / "store")
    changes = Changes()
    endpoints = LocalEndpoints(tmp_path / "state", store.root.resolve().as_uri(),
                               WorkerRuntime(tmp_path, "", fake_worker.install(tmp_path)), on_change=changes)
    endpoints.clock = Clock(T0 + 59 * 60)
    yield store, endpoints, changes
    endpoints.stop_all()


def publish(store: FolderStore, endpoint: dict) -> dict:
    manifest = {"name": "Portraits", "version": 1, "custom_nodes": [], "models": [], "endpoint": endpoint,
                "fake": {"idle_since": IDLE_SINCE}}  # the stand-in worker reports itself idle since then
    store.put(manifest_key("Portraits", 1), json.dumps(manifest).encode())
    return manifest


@pytest.mark.slow  # waits seconds for the endpoint's watcher: the whole suite runs it, the fast tier does not
def test_an_idle_local_endpoint_is_stopped_once_its_minutes_have_passed(local):
    store, endpoints, changes = local
    endpoints.deploy(publish(store, {"kind": "local", "idle_stop_minutes": 60}))
    running = changes.wait("InService")
    assert running["idle_stop_minutes"] == 60 and running["stopped_by"] is None
    state = endpoints._read("Portraits")
    assert not endpoints.idle_due(state, {"state": "ready", "idle_since": IDLE_SINCE})  # 59 minutes: not yet
    assert not endpoints.idle_due(state, {"state": "ready", "idle_since": None})  # running something
    endpoints.clock.now = T0 + 60 * 60
    stopped = changes.wait("Stopped")  # the watcher's next /status: the existing Stop
    assert stopped["stopped_by"] == idle_stop.IDLE and stopped["stopped_at"]
    assert endpoints.get("Portraits")["stopped_by"] == "idle"
    endpoints.start("Portraits")  # a person's start clears it
    assert endpoints.get("Portraits")["stopped_by"] is None


def test_a_local_endpoint_without_idle_minutes_is_never_stopped(local):
    store, endpoints, _ = local
    endpoints.deploy(publish(store, {"kind": "local"}))
    state = endpoints._read("Portraits")
    assert state["idle_stop_minutes"] == 0
    endpoints.clock.now = T0 + 24 * 3600
    assert not endpoints.idle_due(state, {"state": "ready", "idle_since": IDLE_SINCE})


@pytest.mark.parametrize("config, expected", [
    ({"kind": "local"}, 0),
    ({"kind": "local", "idle_stop_minutes": 30}, 30),
    ({"kind": "sagemaker", "mode": "async", "autoscaling": None}, 60),
    ({"kind": "sagemaker", "mode": "realtime", "autoscaling": {"min": 1, "max": 2}}, 60),
    ({"kind": "sagemaker", "mode": "async", "autoscaling": {"min": 1, "max": 2}, "idle_stop_minutes": 0}, 0),
    ({"kind": "sagemaker", "mode": "async", "autoscaling": {"min": 1, "max": 2}, "idle_stop_minutes": 15}, 15),
    ({"kind": "sagemaker", "mode": "async", "autoscaling": {"min": 0, "max": 2}}, 0),  # it scales to zero itself
    (None, 0),
])
def test_which_endpoints_stop_when_idle(config, expected):
    assert idle_stop.minutes(config) == expected


def test_the_decision_and_the_worker_clock():
    assert idle_stop.due(60, T0, T0 + 3600) and not idle_stop.due(60, T0, T0 + 3599)
    assert not idle_stop.due(0, T0, T0 + 10 ** 9) and not idle_stop.due(60, None, T0 + 10 ** 9)
    clock = Clock(T0)
    idleness = idle_stop.Idleness(clock)
    idleness.begin()
    idleness.begin()
    clock.now += 10
    idleness.end()
    assert idleness.since() is None  # one run still going
    idleness.end()
    assert idleness.since() == T0 + 10
    assert idle_stop.parse(idle_stop.stamp(T0)) == T0 and idle_stop.parse("soon") is None


def test_the_config_field_is_checked_and_stored_only_when_given():
    from comfyui_sagemaker.core.endpoint_config import EndpointConfigInvalid, validate

    assert validate({"kind": "sagemaker", "idle_stop_minutes": 15}, 4)["idle_stop_minutes"] == 15
    assert validate({"kind": "local", "idle_stop_minutes": 0}, 4) == {"kind": "local", "idle_stop_minutes": 0}
    assert "idle_stop_minutes" not in validate({"kind": "sagemaker"}, 4)  # absent: the kind's default
    for bad, message in ((-1, "endpoint.idle_stop_minutes must be 0 (never) or more"),
                         ("60", "endpoint.idle_stop_minutes must be a whole number, got '60'")):
        with pytest.raises(EndpointConfigInvalid) as caught:
            validate({"kind": "sagemaker", "idle_stop_minutes": bad}, 4)
        assert caught.value.message == message
