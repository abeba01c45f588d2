"""A run in flight has one marker, `executions/inflight/<owner>/<id>.<follower>` (core/execution_records.py): it
says both that the run is in flight and who follows it (one PUT and one DELETE a run, where earlier versions
wrote a second marker, `<owner>/<id>`, beside it). Runs an earlier version left in a shared store, with both
markers, are still listed once, followed again, failed or cancelled from here, and leave nothing behind; the
artist's IAM policy lets it write its own markers only."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
from comfyui_sagemaker.core.execution_records import INFLIGHT, ExecutionRecords
from comfyui_sagemaker.core.executions import ExecutionService, new_id
from comfyui_sagemaker.core.followers import lease_key
from comfyui_sagemaker.core.identity import Owner
from comfyui_sagemaker.gateway.host import HeadlessHost
from harness.iam_semantics import allows, object_arn, stack_policy
from harness.waiting import wait_for

ME = Owner("aaaaaaaaaaaa", "box")
OTHER = "fff000fff000"
DEAD = f"{ME.instance}-0123456789ab"  # a follower of an earlier life of this ComfyUI: no lease
PROMPT = {"1": {"class_type": "EmptyImage", "inputs": {"width": 2, "height": 2, "batch_size": 1, "color": 0}},
          "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "f"}}}


class Endpoint:
    """Holds each invocation until released; answers a run followed again at once."""

    kind = "fake"

    def __init__(self):
        self.started, self.release = threading.Event(), threading.Event()
        self.resumed: list[str] = []

    def check_ready(self, name):
        return {"name": name, "state": "InService"}

    def invoke(self, name, body, on_event):
        self.started.set()
        self.release.wait(300)
        return {"status": "succeeded", "outputs": {}}

    def resume(self, name, execution_id, resume, on_event):
        self.resumed.append(execution_id)
        return {"status": "succeeded", "outputs": {}}

    def cancel(self, name, execution_id, token):
        pass


class Environments:
    def get(self, name, version=None):
        return {"name": "E1", "version": 1, "custom_nodes": [], "models": [], "core_node_types": None}


def service(store, endpoint) -> ExecutionService:
    return ExecutionService(store, None, Environments(), endpoint, HeadlessHost(Path(".")), None,
                            lambda *a: None, owner=ME)


def markers(store) -> list[str]:
    return [k for k in store.list(INFLIGHT) if not k.endswith(".json")]


def earlier_run(store, state: str = "running", resume: dict | None = None) -> dict:
    """A run an earlier version left in flight: its record, its in-flight marker and its follower's beside it."""
    record = {"id": new_id(ME.instance), "prompt_id": "p", "template": None, "environment": "E1",
              "endpoint": "E1", "owner": ME.to_json(), "client_id": None, "state": state, "created_at": "x",
              "started_at": "x", "outputs": {}, "error": None, "follower": DEAD}
    if resume is not None:
        record["resume"] = resume
    store.create(ExecutionRecords(store).key(record["id"]), json.dumps(record).encode())
    store.put(f"{INFLIGHT}{ME.key}/{record['id']}", b"")
    store.put(f"{INFLIGHT}{ME.key}/{record['id']}.{DEAD}", b"")
    return record


def test_a_run_in_flight_has_one_marker_naming_its_follower(store):
    endpoint = Endpoint()
    svc = service(store, endpoint)
    try:
        run = svc.create(PROMPT, environment="E1")
        assert endpoint.started.wait(120)
        assert markers(store) == [f"{INFLIGHT}{ME.key}/{run['id']}.{svc.follower.id}"]
        records = ExecutionRecords(store)
        assert records.inflight() == records.inflight(ME.key) == records.inflight_of(ME.instance) == [run["id"]]
        endpoint.release.set()
        wait_for(lambda: not svc.live(run["id"]), 120, "the run to end")
        assert markers(store) == [] and records.inflight() == []
    finally:
        endpoint.release.set()
        svc.pool.shutdown(wait=True)


def test_a_run_an_earlier_version_left_is_listed_once_and_followed_again_leaving_one_marker(store):
    run = earlier_run(store, resume={"output": "s3://b/out/x.out"})
    records = ExecutionRecords(store)
    assert records.inflight() == records.inflight(ME.key) == records.inflight_of(ME.instance) == [run["id"]]
    endpoint = Endpoint()
    svc = service(store, endpoint)
    try:
        assert svc.take_over(run["id"], lambda f: f == DEAD, "its follower stopped") == "followed"
        wait_for(lambda: not svc.live(run["id"]), 120, "the run followed again to end")
        assert endpoint.resumed == [run["id"]] and records.read(run["id"])[0]["state"] == "succeeded"
        assert markers(store) == [] and records.inflight() == []
    finally:
        svc.pool.shutdown(wait=True)


@pytest.mark.parametrize("how", ["failed", "cancelled"])
def test_a_run_an_earlier_version_left_that_is_ended_here_leaves_no_marker(store, how):
    run = earlier_run(store)  # no resume: its endpoint cannot answer for it to another follower
    svc = service(store, Endpoint())
    try:
        if how == "failed":
            assert svc.take_over(run["id"], lambda f: f == DEAD, "its follower stopped") == "failed"
        else:
            assert svc.cancel(run["id"])["state"] == "cancelled"
        assert ExecutionRecords(store).read(run["id"])[0]["state"] == how
        assert markers(store) == [] and not store.exists(lease_key(DEAD))
    finally:
        svc.pool.shutdown(wait=True)


def test_an_artist_writes_and_removes_its_own_in_flight_markers_not_anothers():
    from comfyui_sagemaker.aws import stack

    artist = stack_policy("artist")
    run = "20261207T000000000000-deadbeef-{owner}"
    for action in ("s3:PutObject", "s3:DeleteObject"):
        key = "executions/inflight/{owner}/" + run + ".{owner}-0123456789ab"
        mine, theirs = key.format(owner=ME.instance), key.format(owner=OTHER)
        assert allows(artist, action, object_arn(mine), {f"aws:PrincipalTag/{stack.INSTANCE_TAG}": ME.instance})
        assert not allows(artist, action, object_arn(theirs), {f"aws:PrincipalTag/{stack.INSTANCE_TAG}": ME.instance})
