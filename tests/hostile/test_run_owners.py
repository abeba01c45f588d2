"""Who may cancel a run (issue 25, point 6): its owner; someone else's only a designer's ComfyUI used by one
person. Under --multi-user every user of a ComfyUI gets its role (here: designer, the default) and is told
apart by ComfyUI's comfy-user header, so each cancels only their own runs, on every face: the extension's
cancel, the Comfy API v2's job cancel, and ComfyUI's own /interrupt with the run's prompt id (refused, and
never passed on to ComfyUI, whose handler would interrupt the prompt running locally)."""

from __future__ import annotations

import uuid

import pytest
from comfyui_sagemaker.core.execution_records import ExecutionRecords
from comfyui_sagemaker.core.executions import ExecutionService, NotYourExecution, new_id
from comfyui_sagemaker.core.identity import Owner
from comfyui_sagemaker.local.folder_store import FolderStore
from harness.comfyui import ComfyUI
from harness.envs import publish_environment, wait_endpoint, wait_execution
from harness.fixtures import install_test_pack
from harness.waiting import wait_for

pytestmark = pytest.mark.comfyui


def held(signal: str, timeout: float = 600) -> dict:
    """A run held open until the file `signal` exists (core nodes and the test pack's SMTestWait)."""
    return {"1": {"class_type": "EmptyImage", "inputs": {"width": 2, "height": 2, "batch_size": 1, "color": 7}},
            "2": {"class_type": "SMTestWait", "inputs": {"image": ["1", 0], "signal": signal, "timeout": timeout}},
            "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "owners"}}}


class Shared:
    def __init__(self, server: ComfyUI, signals):
        self.server, self.client, self.signals = server, server.client(), signals
        self.users = {n: self.client.post("/users", json={"username": n}).json() for n in ("alice", "bob")}

    def signal(self) -> str:
        path = self.signals / uuid.uuid4().hex
        return str(path)

    def headers(self, who: str) -> dict:
        return {"comfy-user": self.users[who]}

    def post(self, who: str, path: str, **kw):
        return self.client.post(path, headers=self.headers(who), **kw)


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """A designer's ComfyUI (the default role) under --multi-user with users alice and bob, and a local
    endpoint whose template holds a run open."""
    base = tmp_path_factory.mktemp("multi-user")
    signals = tmp_path_factory.mktemp("signals")
    install_test_pack(base)
    server = ComfyUI(base, extra_args=["--multi-user"]).start()
    try:
        s = Shared(server, signals)
        s.template, s.env, _ = publish_environment(s.client, held(str(signals / "never")), {"kind": "local"})
        assert wait_endpoint(s.client, s.env)["state"] == "InService"
        yield s
    finally:
        for path in [signals / "never", *signals.iterdir()]:
            path.touch()
        server.stop()


def running(s: Shared, who: str, signal: str) -> tuple[str, str]:
    r = s.post(who, "/sagemaker/executions", json={"prompt": held(signal), "template": s.template,
                                                     "environment": s.env})
    assert r.status_code == 202, r.text
    execution_id, prompt_id = r.json()["execution_id"], r.json()["prompt_id"]
    wait_execution(s.client, execution_id, 180, states=("running",))
    return execution_id, prompt_id


def refused(r) -> None:
    assert r.status_code == 403, r.text
    error = r.json()["error"]
    assert error["code"] == "forbidden_for_role" and "only their own runs" in error["message"], error


def test_another_user_cannot_cancel_a_live_run_on_any_face(shared):
    s = shared
    alice_signal, local_signal = s.signal(), s.signal()
    execution_id, prompt_id = running(s, "alice", alice_signal)
    try:
        refused(s.post("bob", f"/sagemaker/executions/{execution_id}/cancel"))
        refused(s.post("bob", f"/sagemaker/v2/{s.env}/api/v2/jobs/{execution_id}/cancel"))
        # A prompt running on this ComfyUI itself: a refused /interrupt must not reach ComfyUI's handler, which
        # interrupts whatever runs locally when the prompt id is in its queue (a remote run's is).
        local = s.client.queue(held(local_signal))
        wait_for(lambda: local in [item[1] for item in s.client.get("/queue").json()["queue_running"]], 120,
                 "the local prompt running")
        refused(s.post("bob", "/interrupt", json={"prompt_id": prompt_id}))
        refused(s.post("bob", "/api/interrupt", json={"prompt_id": prompt_id}))
        assert s.client.get(f"/sagemaker/executions/{execution_id}").json()["state"] == "running"
        open(local_signal, "w").close()
        assert s.client.history(local, timeout=120)["status"]["status_str"] == "success"  # not interrupted
        # Alice's own Cancel (ComfyUI's button sends /interrupt with her prompt id) is hers to make.
        assert s.post("alice", "/interrupt", json={"prompt_id": prompt_id}).status_code == 200
        assert wait_execution(s.client, execution_id)["state"] == "cancelled"
    finally:
        open(alice_signal, "w").close()
        open(local_signal, "w").close()


def test_another_user_cannot_cancel_a_v2_job_running_or_ended(shared):
    s = shared
    signal = s.signal()
    try:
        r = s.post("alice", f"/sagemaker/v2/{s.env}/api/v2/jobs", json={"workflow": held(signal)})
        assert r.status_code == 201, r.text
        job = r.json()["id"]
        wait_execution(s.client, job, 180, states=("running",))
        refused(s.post("bob", f"/sagemaker/v2/{s.env}/api/v2/jobs/{job}/cancel"))
        refused(s.post("bob", f"/sagemaker/executions/{job}/cancel"))
        assert s.client.get(f"/sagemaker/executions/{job}").json()["state"] == "running"
        mine = s.post("alice", f"/sagemaker/v2/{s.env}/api/v2/jobs/{job}/cancel")
        assert mine.status_code == 200 and mine.json()["status"] in ("cancelled", "canceled"), mine.text
        # Ended: still not bob's to "cancel" (the idempotent answer is the owner's).
        refused(s.post("bob", f"/sagemaker/v2/{s.env}/api/v2/jobs/{job}/cancel"))
    finally:
        open(signal, "w").close()


# The rule itself, on the service every face calls (no ComfyUI): a run this process follows is checked like
# one it does not.

class NeverEnds:
    """An endpoint whose invocation blocks until the test ends: the run stays live in this process."""

    kind = "fake"

    def __init__(self):
        import threading

        self.release = threading.Event()

    def invoke(self, name, body, on_event):
        self.release.wait(300)
        return {"status": "failed", "outputs": {}, "error": {"code": "cancelled", "message": "released"}}

    def cancel(self, name, execution_id, token):
        pass


def live_run(store, owner: Owner, endpoints) -> tuple[ExecutionService, dict]:
    svc = ExecutionService(store, None, None, endpoints, None, None, lambda *a: None, owner=owner)
    record = {"id": new_id(owner.instance), "prompt_id": "p", "template": None, "environment": "E1",
              "endpoint": "E1", "owner": svc.owner_for("alice").to_json(), "client_id": None, "state": "running",
              "created_at": "x", "outputs": {}, "error": None, "inputs": {}}
    svc._etags[record["id"]] = ExecutionRecords(store).create(record)
    svc._live[record["id"]] = record
    svc.pool.submit(svc._invoke, record, {})
    return svc, record


@pytest.mark.parametrize("role", ["designer", "artist"])
def test_the_rule_holds_for_a_run_this_process_follows(tmp_path, role):
    store = FolderStore(tmp_path / "store")
    endpoints = NeverEnds()
    svc, record = live_run(store, Owner("aaaaaaaaaaaa", "shared box"), endpoints)
    try:
        with pytest.raises(NotYourExecution):
            svc.cancel(record["id"], role, "bob", shared=True)
        with pytest.raises(NotYourExecution):
            svc.cancel(record["id"], role, None, shared=True)  # no header under --multi-user: not alice either
        assert svc.get(record["id"])["state"] == "running"
        assert svc.cancel(record["id"], role, "alice", shared=True)["state"] == "cancelled"
    finally:
        endpoints.release.set()
        svc.pool.shutdown(wait=True)
