"""A local endpoint's redeploy starts the new worker beside the serving one (local/endpoint_redeploy.py): the old one
serves until the new one is ready, runs in flight finish on it, a new version that does not start leaves it
serving (in SageMaker's words for a rolled-back update), the environment's lease is held until the switch, and
a restart of ComfyUI mid-update adopts the new worker. The workers are stand-ins (tests/harness/fake_worker.py,
started as the real ones are) that serve the version their manifest says, start when a signal file exists and
hold each run until its own signal file exists: orderings, never timings."""

from __future__ import annotations

import json
import os
import signal
import threading
import uuid
from pathlib import Path

import pytest
from comfyui_sagemaker.core.endpoints import EndpointNotReady, InvocationFailed
from comfyui_sagemaker.core.environments import EndpointHooks, EnvironmentService, manifest_key
from comfyui_sagemaker.core.identity import Owner
from comfyui_sagemaker.core.leases import DeployInProgress, Leases
from comfyui_sagemaker.core.worker_contract import WorkerRuntime
from comfyui_sagemaker.local.endpoints import LocalEndpoints
from comfyui_sagemaker.local.folder_store import FolderStore
from harness import fake_worker
from harness.fake_worker import Changes
from harness.waiting import wait_for

NAME = "Portraits"
class Rig:
    def __init__(self, tmp: Path, monkeypatch: pytest.MonkeyPatch):
        self.tmp = tmp
        self.store = FolderStore(tmp / "store")
        self.worker = fake_worker.install(tmp)
        self.cancels = tmp / "cancels.ndjson"
        monkeypatch.setenv("FAKE_CANCELS", str(self.cancels))  # the workers inherit this process's environment
        self.changes = Changes()
        self.endpoints = self.make()

    def make(self) -> LocalEndpoints:
        """The local endpoints of a ComfyUI on this state folder (a second one: the same after a restart)."""
        return LocalEndpoints(self.tmp / "state", self.store.root.resolve().as_uri(),
                              WorkerRuntime(self.tmp, "", self.worker), on_change=self.changes)

    def signal(self) -> Path:
        return self.tmp / f"signal-{uuid.uuid4().hex[:8]}"

    def publish(self, version: int, **fake) -> dict:
        manifest = {"name": NAME, "version": version, "custom_nodes": [], "models": [],
                    "endpoint": {"kind": "local"}, "fake": fake}
        self.store.put(manifest_key(NAME, version), json.dumps(manifest).encode())
        return manifest

    def state(self) -> dict:
        return json.loads((self.endpoints.root / NAME.lower() / "state.json").read_text())

    def serving(self, version: int) -> dict:
        return self.changes.wait(lambda v: v["state"] == "InService" and v.get("version") == version,
                                 f"InService on version {version}")


class Run:
    """An invocation in a thread of its own (invoke blocks); `arrived` once the worker has it."""

    def __init__(self, rig: Rig, wait: Path | None = None):
        self.arrived = rig.signal()
        prompt = {"arrived": str(self.arrived), "wait": str(wait) if wait else None}
        self.result: dict | None = None
        self.error: Exception | None = None
        self.execution_id = f"run-{uuid.uuid4().hex[:8]}"
        self.thread = threading.Thread(target=self._run, args=(rig.endpoints, prompt), daemon=True)
        self.thread.start()

    def _run(self, endpoints: LocalEndpoints, prompt: dict) -> None:
        try:
            self.result = endpoints.invoke(NAME, {"execution_id": self.execution_id, "prompt": prompt},
                                           lambda event: None)
        except Exception as err:
            self.error = err

    def at_worker(self) -> int:
        """The pid of the worker running it, once it has arrived there."""
        wait_for(lambda: self.arrived.exists() and self.arrived.read_text() or self.error, 60, "the run at its worker")
        assert self.error is None, self.error
        return int(self.arrived.read_text())

    def end(self) -> dict:
        self.thread.join(60)
        assert not self.thread.is_alive(), "the invocation never ended"
        if self.error is not None:
            raise self.error
        assert self.result is not None
        return self.result


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


@pytest.fixture
def rig(tmp_path, monkeypatch):
    rig = Rig(tmp_path, monkeypatch)
    rig.endpoints.deploy(rig.publish(1))
    rig.serving(1)
    yield rig
    rig.endpoints.stop_all()
    for path in tmp_path.glob("go-*"):
        path.touch()


def test_runs_in_flight_finish_on_the_old_worker_and_runs_sent_during_the_update_go_to_it(rig):
    go, ready = rig.tmp / "go-1", rig.signal()
    before = rig.state()
    held = [Run(rig, go) for _ in range(3)]
    assert {run.at_worker() for run in held} == {before["pid"]}
    answer = rig.endpoints.deploy(rig.publish(2, ready_when=str(ready)))
    # Still serving the old worker, the new one beside it.
    assert answer["state"] == "Updating" and answer["version"] == 1 and answer["url"] == before["url"]
    during = rig.state()
    assert (during["pid"], during["token"], during["version"]) == (before["pid"], before["token"], 1)
    assert during["next"]["version"] == 2 and during["next"]["pid"] != before["pid"]
    assert during["next"]["url"] != before["url"] and during["next"]["token"] != before["token"]
    sent_during = Run(rig, go)
    assert sent_during.at_worker() == before["pid"]
    assert rig.endpoints.invoke(NAME, {"prompt": {}}, lambda e: None)["outputs"]["version"] == 1
    ready.touch()
    switched = rig.serving(2)
    assert switched["url"] == during["next"]["url"] and switched["reason"] is None
    after = rig.state()
    assert after["pid"] == during["next"]["pid"] and after["token"] == during["next"]["token"]
    assert after["next"] is None and before["pid"] in after["retiring"]
    assert alive(before["pid"])  # four runs of this process are still on it
    assert rig.endpoints.invoke(NAME, {"prompt": {}}, lambda e: None)["outputs"]["version"] == 2
    go.touch()
    for run in [*held, sent_during]:
        assert run.end()["outputs"] == {"version": 1, "pid": before["pid"]}
    wait_for(lambda: not alive(before["pid"]), 60, "the old worker stopped once its runs ended")
    wait_for(lambda: not rig.state()["retiring"], 60, "the old worker no longer listed")
    assert rig.endpoints.get(NAME)["state"] == "InService"  # its stop is no failure


def test_a_new_version_that_does_not_start_leaves_the_old_one_serving_and_says_so(rig):
    before = rig.state()
    rig.endpoints.deploy(rig.publish(2, fail="no GPU memory left"))
    said = rig.changes.wait(lambda v: "did not deploy" in (v.get("reason") or ""), "the failed update reported")
    assert said["state"] == "InService" and said["version"] == 1 and said["url"] == before["url"]
    assert said["reason"].startswith("version 2 did not deploy (no GPU memory left")
    assert said["reason"].endswith("; still serving version 1")
    state = rig.state()
    assert state["next"] is None and state["pid"] == before["pid"]
    assert rig.endpoints.invoke(NAME, {"prompt": {}}, lambda e: None)["outputs"]["version"] == 1
    # The same version again once it is fixed: beside the old one again.
    ready = rig.signal()
    assert rig.endpoints.deploy(rig.publish(3, ready_when=str(ready)))["state"] == "Updating"
    ready.touch()
    assert rig.serving(3)["reason"] is None


def test_a_redeploy_with_no_worker_serving_is_creating_and_takes_no_runs(rig):
    os.killpg(rig.state()["pid"], signal.SIGKILL)
    rig.changes.wait(lambda v: v["state"] == "Failed", "the dead worker's endpoint Failed")
    ready = rig.signal()
    assert rig.endpoints.deploy(rig.publish(2, ready_when=str(ready)))["state"] == "Creating"
    with pytest.raises(EndpointNotReady, match="Creating"):  # Updating would have sent it to a worker starting
        rig.endpoints.invoke(NAME, {"prompt": {}}, lambda e: None)
    ready.touch()
    rig.serving(2)


def test_the_old_worker_is_stopped_after_the_runs_time_limit_without_failing_the_endpoint(rig):
    rig.endpoints.drain_limit = 0  # the runs' time limit, here none at all
    go, ready = rig.tmp / "go-limit", rig.signal()
    before = rig.state()
    held = Run(rig, go)
    held.at_worker()
    rig.endpoints.deploy(rig.publish(2, ready_when=str(ready)))
    assert held.thread.is_alive() and alive(before["pid"])  # the update started beside it
    ready.touch()
    rig.serving(2)
    with pytest.raises(InvocationFailed):
        held.end()
    wait_for(lambda: not alive(before["pid"]), 60, "the old worker stopped")
    assert rig.endpoints.get(NAME)["state"] == "InService"
    assert rig.endpoints.invoke(NAME, {"prompt": {}}, lambda e: None)["outputs"]["version"] == 2


def test_a_cancel_reaches_the_worker_its_run_went_to(rig):
    go, ready = rig.tmp / "go-cancel", rig.signal()
    held = Run(rig, go)
    held.at_worker()
    rig.endpoints.deploy(rig.publish(2, ready_when=str(ready)))
    ready.touch()
    rig.serving(2)
    rig.endpoints.cancel(NAME, held.execution_id, "token")
    assert [json.loads(line) for line in rig.cancels.read_text().splitlines()] == [
        {"execution_id": held.execution_id, "version": 1}]
    go.touch()
    assert held.end()["outputs"]["version"] == 1


def test_a_restart_of_comfyui_mid_update_adopts_the_new_worker(rig):
    ready = rig.signal()
    rig.endpoints.deploy(rig.publish(2, ready_when=str(ready)))
    during = rig.state()
    restarted = rig.make()  # a ComfyUI restarted: the workers outlived the old one
    restarted.adopt()
    rig.endpoints = restarted
    assert rig.state()["next"]["pid"] == during["next"]["pid"]  # the update goes on
    ready.touch()
    rig.serving(2)
    assert rig.state()["pid"] == during["next"]["pid"]
    wait_for(lambda: not alive(during["pid"]), 300, "the replaced worker stopped (no run of this process on it)")


def test_the_environments_lease_is_held_until_traffic_moves(rig):
    leases = Leases(rig.store, Owner("instance-1", "designer"))
    environments = EnvironmentService(
        rig.store, None, None, None, None, 4,  # type: ignore[arg-type]  # a deploy uses only the store and hooks
        hooks=EndpointHooks(deploy=rig.endpoints.deploy, settled=rig.endpoints.when_settled), leases=leases)
    ready = rig.signal()
    rig.publish(2, ready_when=str(ready))
    assert environments.deploy(NAME, 2)["state"] == "Updating"
    assert leases.current(NAME)["what"] == "deploying"
    with pytest.raises(DeployInProgress):
        environments.deploy(NAME, 2)
    ready.touch()
    rig.serving(2)
    wait_for(lambda: leases.current(NAME) is None, 60, "the lease released at the switch")
