"""What a run says in its first second is written once, then (core/executions.py `_settle`), or with its end if
that comes first: an async run's "running" and where its result lands (`resume`), a local or real-time run's
`resume`. A short async run is created and ended in two writes of its record; one that lasts is written a third
time a second in, with both, so a process that takes it over can follow it again (core/followers.py)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from comfyui_sagemaker.core.execution_records import ExecutionRecords
from comfyui_sagemaker.core.executions import ExecutionService
from comfyui_sagemaker.core.identity import Owner
from comfyui_sagemaker.gateway.host import HeadlessHost
from comfyui_sagemaker.local.folder_store import FolderStore
from harness.waiting import wait_for

PROMPT = {"1": {"class_type": "EmptyImage", "inputs": {"width": 2, "height": 2, "batch_size": 1, "color": 0}},
          "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "f"}}}
RESUME = {"output": "s3://b/async/outputs/x.out", "failure": "", "until": 0}


class CountingStore(FolderStore):
    """A folder store that counts the writes of execution records (creates and compare-and-swaps)."""

    def __init__(self, root):
        super().__init__(root)
        self.record_writes: list[str] = []

    def create(self, key, data):
        if key.startswith("executions/records/"):
            self.record_writes.append("create")
        return super().create(key, data)

    def replace(self, key, data, if_match):
        if key.startswith("executions/records/"):
            self.record_writes.append("replace")
        return super().replace(key, data, if_match)


class Endpoint:
    """Says where the result lands as SageMaker's async endpoints do, then answers at once or when released."""

    kind = "fake"

    def __init__(self, held: bool):
        self.held = held
        self.resumable, self.release = threading.Event(), threading.Event()

    def check_ready(self, name):
        return {"name": name, "state": "InService"}

    def invoke(self, name, body, on_event):
        on_event({"type": "sagemaker.resumable", "data": {"resume": RESUME}})
        self.resumable.set()
        if self.held:
            self.release.wait(300)
        return {"status": "succeeded", "outputs": {}}

    def cancel(self, name, execution_id, token):
        pass


class Environments:
    def __init__(self, mode: str):
        self.mode = mode

    def get(self, name, version=None):
        return {"name": "E1", "version": 1, "custom_nodes": [], "models": [], "core_node_types": None,
                "endpoint": {"kind": "sagemaker", "instance_type": "ml.g5.xlarge", "initial_count": 1,
                             "mode": self.mode, "autoscaling": None}}


@pytest.fixture
def store(tmp_path):
    return CountingStore(tmp_path / "store")


def service(store, endpoint, mode: str = "async") -> ExecutionService:
    return ExecutionService(store, None, Environments(mode), endpoint, HeadlessHost(Path(".")), None,
                            lambda *a: None, owner=Owner("abc123def456", "box"))


def test_a_short_async_run_is_created_and_ended_in_two_writes(store):
    svc = service(store, Endpoint(held=False))
    run = svc.create(PROMPT, environment="E1")
    wait_for(lambda: not svc.live(run["id"]), 120, "the run to end")
    done = ExecutionRecords(store).read(run["id"])[0]
    assert store.record_writes == ["create", "replace"]
    assert done["state"] == "succeeded" and done["started_at"] and "resume" not in done


def test_an_async_run_that_lasts_is_written_running_with_its_resume_once_a_second_in(store):
    endpoint = Endpoint(held=True)
    svc = service(store, endpoint)
    try:
        run = svc.create(PROMPT, environment="E1")
        assert endpoint.resumable.wait(120)
        # Here it runs, as the pages and the list of running runs say; the store is told a second in.
        assert svc.get(run["id"])["state"] == "running"
        assert [r["id"] for r in svc.list(state="running")[0]] == [run["id"]]
        stored = wait_for(lambda: (r := ExecutionRecords(store).read(run["id"])[0])["state"] == "running" and r,
                          120, "the record to say it runs")
        assert stored["resume"] == RESUME and stored["started_at"]
        assert store.record_writes == ["create", "replace"]  # both in one write
        endpoint.release.set()
        wait_for(lambda: not svc.live(run["id"]), 120, "the run to end")
        assert store.record_writes == ["create", "replace", "replace"]
    finally:
        endpoint.release.set()
        svc.pool.shutdown(wait=True)


def test_a_real_time_run_says_running_at_once_and_its_resume_a_second_in(store):
    """Its follower's death then says "lost with the connection", not "never reached its endpoint"."""
    endpoint = Endpoint(held=True)
    svc = service(store, endpoint, mode="realtime")
    try:
        run = svc.create(PROMPT, environment="E1")
        assert endpoint.resumable.wait(120)
        wait_for(lambda: ExecutionRecords(store).read(run["id"])[0]["state"] == "running", 120, "running")
        stored = wait_for(lambda: (r := ExecutionRecords(store).read(run["id"])[0]).get("resume") and r, 120,
                          "the record's resume")
        assert stored["resume"] == RESUME and store.record_writes == ["create", "replace", "replace"]
    finally:
        endpoint.release.set()
        svc.pool.shutdown(wait=True)
