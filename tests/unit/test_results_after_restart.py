"""Nothing paid for is thrown away: a ComfyUI killed with runs in flight looks each one's result up at its next
start (core/executions.py take_over) before failing it. A local endpoint's worker keeps its results for a
caller that went away (worker/results.py; FakeEndpoints keeps that contract, test_endpoints_contract.py holds it
to the real one), so the run the worker finished meanwhile ends succeeded with its outputs; a run is failed
only where its result is known lost, and its record says which: lost with a real-time stream's connection, or
no longer known to the endpoint."""

from __future__ import annotations

import pytest
from comfyui_sagemaker.core.execution_records import ExecutionRecords
from comfyui_sagemaker.core.executions import new_id
from comfyui_sagemaker.local.folder_store import FolderStore
from harness.fake_comfy import FakeComfy, publish
from harness.fake_endpoints import FakeEndpoints
from harness.waiting import wait_for

RESTARTED = "ComfyUI restarted while this execution ran"


def held(prefix: str) -> dict:
    """A run held in the test pack's SMTestWait until the test releases it (FakeRun.release)."""
    return {"1": {"class_type": "EmptyImage", "inputs": {"width": 2, "height": 2, "batch_size": 1, "color": 1}},
            "2": {"class_type": "SMTestWait", "inputs": {"image": ["1", 0], "signal": "", "timeout": 600}},
            "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": prefix}}}


class Box:
    """One ComfyUI's folder on a store with a local endpoint: killed and started again on the same folder (the
    same instance id), as a ComfyUI killed with Ctrl+C or SIGKILL and restarted."""

    def __init__(self, tmp_path):
        self.tmp = tmp_path
        self.store = FolderStore(tmp_path / "store")
        self.fake = FakeEndpoints(self.store)
        self.lives = [FakeComfy(tmp_path / "box", self.store, self.fake)]
        self.fake.deploy(publish(self.store, "Env1"))
        self.fake.wait_state("Env1")

    @property
    def comfy(self) -> FakeComfy:
        return self.lives[-1]

    def run(self, prefix: str) -> tuple[dict, object]:
        r = self.comfy.executions.create(held(prefix), environment="Env1")
        return r, self.fake.run(r["id"]).wait_started()

    def kill(self, *runs) -> None:
        """The process dies: its followers hear nothing more (its run threads are daemons: nothing waits)."""
        for run in runs:
            run.sever()

    def restart(self) -> FakeComfy:
        self.lives.append(FakeComfy(self.tmp / "box", self.store, self.fake))
        assert self.comfy.owner().instance == self.lives[0].owner().instance
        self.comfy.background()  # what ComfyUI's start runs: this instance's runs left in flight are taken over
        return self.comfy

    def close(self) -> None:
        self.fake.close()
        for comfy in self.lives:
            comfy.close()


@pytest.fixture
def box(tmp_path):
    b = Box(tmp_path)
    yield b
    b.close()


def test_a_local_run_the_worker_finished_while_comfyui_was_down_ends_succeeded_with_its_outputs(box):
    r, run = box.run("kept")
    wait_for(lambda: ExecutionRecords(box.store).read(r["id"])[0].get("resume"), 120,
             "the record to say the endpoint answers for the run")
    box.kill(run)
    run.release()
    assert run.wait_ended()["status"] == "succeeded"  # done at the worker, nobody listening
    after = box.restart()
    done = after.wait(r["id"])
    assert done["state"] == "succeeded" and done["error"] is None, done
    assert done["follower"] == after.executions.follower.id and RESTARTED in done["note"]
    image = done["outputs"]["3"]["images"][0]
    assert image["filename"].startswith("kept") and box.store.exists(f"blobs/sha256/{image['sha256']}")
    assert (after.base / "output" / image["subfolder"] / image["filename"]).is_file()  # /view serves it


def test_a_local_run_still_going_at_restart_is_waited_for(box):
    r, run = box.run("going")
    wait_for(lambda: ExecutionRecords(box.store).read(r["id"])[0].get("resume"), 120, "the record's resume")
    box.kill(run)
    after = box.restart()
    assert after.executions.live(r["id"])  # followed again, not failed
    assert after.executions.get(r["id"])["state"] == "running"
    run.release()
    assert after.wait(r["id"])["state"] == "succeeded"


def test_a_run_the_worker_no_longer_knows_is_failed_saying_so(box):
    r, run = box.run("forgotten")
    wait_for(lambda: ExecutionRecords(box.store).read(r["id"])[0].get("resume"), 120, "the record's resume")
    box.kill(run)
    run.release()
    run.wait_ended()
    box.fake.forget_result(r["id"])  # kept past the worker's limit (or the worker restarted since)
    done = box.restart().wait(r["id"])
    assert done["state"] == "failed" and done["error"]["code"] == "interrupted", done
    assert done["error"]["message"].startswith(f"{RESTARTED}: the endpoint no longer knows the run"), done


def test_a_run_whose_worker_died_meanwhile_is_failed_saying_the_endpoint_no_longer_knows_it(box):
    r, run = box.run("died")
    wait_for(lambda: ExecutionRecords(box.store).read(r["id"])[0].get("resume"), 120, "the record's resume")
    box.kill(run)
    box.fake.kill("Env1")
    done = box.restart().wait(r["id"])
    assert done["state"] == "failed"
    assert done["error"]["message"].startswith(f"{RESTARTED}: the endpoint no longer knows the run"), done


def test_a_real_time_run_is_failed_saying_its_result_was_lost_with_the_connection(box):
    box.fake.resumable = False  # a real-time stream: answered to its invoker's connection only
    r, run = box.run("stream")
    box.kill(run)
    done = box.restart().wait(r["id"])
    assert done["state"] == "failed" and done["error"] == {
        "code": "interrupted", "message": f"{RESTARTED}: the result was lost with the connection"}, done
    assert "resume" not in done


def test_a_run_never_sent_is_failed_saying_so(box):
    records = ExecutionRecords(box.store)
    me = box.comfy.owner()
    queued = {"id": new_id(me.instance), "prompt_id": "p", "template": None, "environment": "Env1",
              "endpoint": "Env1", "owner": me.to_json(), "client_id": None, "state": "queued", "created_at": "x",
              "outputs": {}, "error": None, "follower": f"{me.instance}-0123456789ab"}
    records.create(queued)
    box.restart()
    done = records.read(queued["id"])[0]
    assert done["state"] == "failed" and done["error"]["message"] == f"{RESTARTED}: it never reached its endpoint"
