"""The proof gate of a local redeploy (local/endpoint_redeploy.py, core/proofs.py's Prover): once the new worker is
ready, and before traffic moves, the proofs run on that worker; a failing one stops the switch (the new worker is
stopped, the old one serves on, the endpoint says which template failed and keeps the results), a passing one
switches with its results, and a rollback is not held to proofs. On test_local_redeploy.py's stand-in workers,
with a Prover stand-in that runs one prompt on the worker it is given and answers what the test says."""

from __future__ import annotations

import json

import pytest
from comfyui_sagemaker.core.worker_contract import WorkerRuntime
from comfyui_sagemaker.local.endpoints import LocalEndpoints
from harness.waiting import wait_for
from unit.test_local_redeploy import NAME, Rig, alive


class Prover:
    """Runs a prompt on the worker `run` is given (it writes its pid where the prompt says); passes or not."""

    def __init__(self, rig: Rig):
        self.rig, self.passes, self.ran, self.kept = rig, True, [], {}

    def run(self, environment: str, version: int, invoke) -> dict:
        arrived = self.rig.signal()
        result = invoke({"execution_id": f"proof-{version}", "prompt": {"arrived": str(arrived)}})
        self.ran.append({"version": version, "pid": int(arrived.read_text()), "status": result["status"]})
        results = [{"template": "T", "passed": self.passes, "problems": [] if self.passes else ["node 2 (X): boom"],
                    "node_id": None if self.passes else "2", "node_type": None if self.passes else "X"}]
        run = {"environment": environment, "version": version, "passed": self.passes, "results": results,
               "finished_at": "now"}
        self.kept[version] = run
        return run

    def results(self, environment: str, version: int) -> dict | None:
        return self.kept.get(version)


class ProvenRig(Rig):
    def make(self) -> LocalEndpoints:
        self.prover = Prover(self)
        return LocalEndpoints(self.tmp / "state", self.store.root.resolve().as_uri(),
                              WorkerRuntime(self.tmp, "", self.worker), on_change=self.changes,
                              prover=lambda: self.prover)


@pytest.fixture
def rig(tmp_path, monkeypatch):
    rig = ProvenRig(tmp_path, monkeypatch)
    yield rig
    rig.endpoints.stop_all()


def test_a_failing_proof_stops_the_switch_on_the_new_worker_and_a_passing_one_switches(rig):
    rig.endpoints.deploy(rig.publish(1))
    assert rig.serving(1).get("proofs") is None and rig.prover.ran == []  # a first deploy has nothing to keep
    before = rig.state()
    rig.prover.passes = False
    rig.endpoints.deploy(rig.publish(2))
    said = rig.changes.wait(lambda v: "did not deploy" in (v.get("reason") or ""), "the failed proof reported")
    assert said["state"] == "InService" and said["version"] == 1 and said["url"] == before["url"], said
    assert said["reason"] == "version 2 did not deploy (its proof failed (template T: node 2 (X): boom)); still " \
                             "serving version 1"
    assert said["proof_failed"] == rig.prover.kept[2] and said["proofs"] is None
    tried = rig.prover.ran[-1]
    assert tried["version"] == 2 and tried["status"] == "succeeded" and tried["pid"] != before["pid"]
    wait_for(lambda: not alive(tried["pid"]), 60, "the new worker stopped")
    assert rig.state()["next"] is None and rig.state()["pid"] == before["pid"]
    assert rig.endpoints.invoke(NAME, {"prompt": {}}, lambda e: None)["outputs"]["version"] == 1
    rig.prover.passes = True
    rig.endpoints.deploy(rig.publish(3))
    switched = rig.serving(3)
    assert switched["proofs"] == rig.prover.kept[3] and switched["proof_failed"] is None and \
        switched["reason"] is None
    assert rig.state()["pid"] == rig.prover.ran[-1]["pid"]  # traffic moved to the worker the proof ran on
    proven = len(rig.prover.ran)
    rig.prover.passes = False  # a rollback goes back to what artists ran on, whatever its proofs say now
    with rig.changes.cond:
        rig.changes.seen.clear()
    rig.endpoints.rollback(json.loads(rig.store.get(f"environments/{NAME.lower()}/versions/v000001.json").data))
    back = rig.serving(1)
    assert len(rig.prover.ran) == proven and back["proofs"] is None and back["reason"] is None
