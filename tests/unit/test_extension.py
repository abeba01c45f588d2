"""The Extension's lifetime (extension.py), in this process and without ComfyUI: start, configurations applied
while a local endpoint runs, stop. The local endpoints are a FakeEndpoints (tests/harness/fake_endpoints.py)
made by the Extension's LocalSupervisor, as LocalEndpoints is in a ComfyUI: it is made once, the services of
every configuration get that same one, and it tells the services that run now."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
from comfyui_sagemaker.core import config as config_mod
from comfyui_sagemaker.core.host_facts import ComfyFacts
from comfyui_sagemaker.core.local_supervisor import LocalSupervisor
from comfyui_sagemaker.core.templates import TemplateService
from comfyui_sagemaker.extension import Extension
from comfyui_sagemaker.local.folder_store import FolderStore
from comfyui_sagemaker.services import Services
from harness.fake_endpoints import FakeEndpoints
from harness.waiting import wait_for

MANIFEST = {"name": "Env1", "version": 1, "endpoint": {"kind": "local"}}
CHANGED = "changes/endpoints.json"  # what an endpoint's change marks in the store of the services told of it


class Local(FakeEndpoints):
    """The process's local endpoints: counts its re-adoptions."""

    def __init__(self, store_uri, on_change):
        super().__init__(on_change=on_change)
        self.deploys_from = store_uri
        self.adopted = 0

    def adopt(self) -> None:
        self.adopted += 1


class Comfy:
    """What the Extension gets from a ComfyUI: its facts (folders of this test's own) and a way to its pages."""

    def __init__(self, base: Path, config: dict | str):
        for sub in ("input", "output", "config"):
            (base / sub).mkdir(parents=True, exist_ok=True)
        self.base = base
        self.config_dir = base / "config"
        self.write(config)
        self.facts = ComfyFacts(version="0.3.75", listen=("127.0.0.1",), config_dir=self.config_dir,
                                input_dir=base / "input", output_dir=base / "output", extension_dir=base)
        self.made: list[Local] = []
        self.sent: list[tuple[str, dict]] = []

    def write(self, config: dict | str) -> None:
        text = config if isinstance(config, str) else json.dumps(config)
        (self.config_dir / config_mod.CONFIG_FILE).write_text(text)

    def make_local(self, store_uri, on_change) -> Local:
        self.made.append(Local(store_uri, on_change))
        return self.made[-1]

    def extension(self, **kw) -> Extension:
        return Extension.load(self.facts, lambda event, data, sid=None: self.sent.append((event, data)),
                              local=LocalSupervisor(self.make_local), **kw)

    def close(self) -> None:
        for local in self.made:
            local.close()


def folder(tmp_path: Path, name: str, **extra) -> dict:
    return {"store": "folder", "store_path": str(tmp_path / name), **extra}


def reload(ext: Extension, comfy: Comfy, config: dict) -> None:
    """config.json edited, then Reload the file in the Connect panel (the store cannot be changed from the page)."""
    comfy.write(config)
    ext.reload_file()


def started() -> bool:
    """The start-up work of the services a configuration change made (a thread of its own) is done."""
    return not any(t.name == "sagemaker-start" and t.is_alive() for t in threading.enumerate())


@pytest.fixture
def comfy(tmp_path):
    return Comfy(tmp_path / "comfy", folder(tmp_path, "a"))


def test_a_local_endpoint_stays_owned_and_running_across_two_configurations(comfy, tmp_path):
    ext = comfy.extension()
    try:
        ext.start(wait=True)
        first = ext.services
        assert first.endpoints.deploy(MANIFEST)["state"] == "Creating"
        [local] = comfy.made
        local.wait_state("Env1")
        assert local.adopted == 1  # this process's start: the workers its previous life left are taken back

        reload(ext, comfy, folder(tmp_path, "b"))
        second = ext.services
        reload(ext, comfy, folder(tmp_path, "c"))
        third = ext.services
        wait_for(started, 30, "the start-up work of the services applied")

        assert len({id(first), id(second), id(third)}) == 3 and ext.applied == 2
        assert first.closed.is_set() and second.closed.is_set() and not third.closed.is_set()
        assert comfy.made == [local] and local.adopted == 1  # made once; applied configurations adopt nothing
        assert third.endpoints.provider("local") is local and first.endpoints.provider("local") is local
        assert third.endpoints.get("Env1")["state"] == "InService"  # its worker ran on through both changes
        assert local.deploys_from() == (tmp_path / "c").resolve().as_uri()  # new deploys read the new store

        # A change of the endpoint reaches the services that run now (the sidebar, the store they watch).
        comfy.sent.clear()
        third.endpoints.stop("Env1")
        assert ("sagemaker.endpoint", third.endpoints.get("Env1")) in comfy.sent
        assert FolderStore(tmp_path / "c").exists(CHANGED) and not FolderStore(tmp_path / "b").exists(CHANGED)
    finally:
        ext.stop()
        comfy.close()
    assert third.closed.is_set()
    assert local.get("Env1")["state"] == "Stopped"  # stopping the extension stops no endpoint: workers outlive it


def test_a_run_in_flight_finishes_on_the_services_it_started_on(comfy, tmp_path):
    ext = comfy.extension()
    try:
        ext.start(wait=True)
        old = ext.services
        old.endpoints.deploy(MANIFEST)
        [local] = comfy.made
        local.wait_state("Env1")
        local.manual = True
        result: dict = {}
        call = threading.Thread(target=lambda: result.update(old.endpoints.invoke(
            "Env1", {"execution_id": "run-1", "prompt": {"1": {"class_type": "EmptyImage", "inputs": {}}}},
            lambda event: None)))
        call.start()
        run = local.run("run-1")
        run.wait_started()
        reload(ext, comfy, folder(tmp_path, "b"))
        assert old.closed.is_set() and run.state == "running"  # the change stopped nothing in flight
        run.succeed()
        call.join(30)
        assert result["status"] == "succeeded"
    finally:
        ext.stop()
        comfy.close()


def test_a_broken_configuration_waits_for_the_first_good_one_to_start(tmp_path):
    comfy = Comfy(tmp_path / "comfy", "{not json")
    ext = comfy.extension()
    try:
        assert ext.config is None and ext.config_error and ext.effective_config().role == "artist"
        ext.start()
        assert not ext.services_made and comfy.made == []  # nothing runs on a configuration it cannot read
        comfy.write(folder(tmp_path, "a"))
        ext.reload_file()
        # The first configuration that runs does this process's start-up work (in a thread of its own).
        wait_for(lambda: comfy.made and comfy.made[0].adopted == 1, 30, "the local endpoints to be re-adopted")
        reload(ext, comfy, folder(tmp_path, "b"))
        wait_for(started, 30, "the start-up work of the services applied")
        assert len(comfy.made) == 1 and comfy.made[0].adopted == 1  # once per process
    finally:
        ext.stop()
        comfy.close()


def test_the_maintenance_runs_on_the_designers_services_that_run_now(tmp_path, monkeypatch):
    reconciled: list[Path] = []
    monkeypatch.setattr(TemplateService, "reconcile", lambda self: reconciled.append(Path(self.store.root)))
    comfy = Comfy(tmp_path / "comfy", folder(tmp_path, "a"))
    ext = comfy.extension(maintenance_every=0.02)
    try:
        ext.start(wait=True)
        wait_for(lambda: (tmp_path / "a") in reconciled, 30, "the maintenance of the first store")
        reload(ext, comfy, folder(tmp_path, "b"))
        wait_for(lambda: (tmp_path / "b") in reconciled, 30, "the maintenance of the store applied")
        reload(ext, comfy, folder(tmp_path, "b", role="artist"))  # an artist's ComfyUI maintains nothing
        time.sleep(0.1)  # a round begun before the change ends
        reconciled.clear()
        time.sleep(0.2)
        assert reconciled == []
        reload(ext, comfy, folder(tmp_path, "b"))
        wait_for(lambda: reconciled, 30, "the maintenance of a designer's ComfyUI again")
    finally:
        ext.stop()
        comfy.close()
    time.sleep(0.1)
    reconciled.clear()
    time.sleep(0.2)
    assert reconciled == []  # stopped: no more rounds


def test_the_maintenance_expires_runs_of_comfyuis_that_never_came_back(tmp_path, monkeypatch):
    expired: list[str] = []
    monkeypatch.setattr(Services, "expire_runs", lambda self: expired.append(self.config.role) or 0)
    comfy = Comfy(tmp_path / "comfy", folder(tmp_path, "a"))
    ext = comfy.extension(maintenance_every=0.02)
    try:
        ext.start(wait=True)
        wait_for(lambda: expired, 30, "the maintenance's expiry of abandoned runs (core/run_expiry.py)")
    finally:
        ext.stop()
        comfy.close()
