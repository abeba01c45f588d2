"""Nothing paid for is thrown away, on real processes: a ComfyUI-like client (the extension's services without a
ComfyUI process, harness.fake_comfy, in a process of its own) is killed with runs in flight on a local endpoint
(a real worker and its headless ComfyUI): one running, the others queued behind it. The worker runs them on,
writing to the connection of a client that is gone, and keeps their results (worker/results.py); the client
started again on the same folder (the same instance) finds them: every run ends succeeded with its outputs."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import requests
from comfyui_sagemaker.core import snapshot
from comfyui_sagemaker.core.environments import EnvironmentService
from comfyui_sagemaker.core.execution_records import ExecutionRecords
from comfyui_sagemaker.core.fs.hashing import HashCache
from comfyui_sagemaker.core.model_files import scan
from comfyui_sagemaker.core.tasks import TaskManager
from comfyui_sagemaker.core.templates import TemplateService
from comfyui_sagemaker.local.endpoints import LocalEndpoints, WorkerRuntime
from comfyui_sagemaker.local.folder_store import FolderStore
from harness.comfyui import ROOT, comfyui_dir
from harness.fake_comfy import FakeComfy
from harness.fixtures import FIXTURES, TEST_PACK
from harness.waiting import wait_for

pytestmark = pytest.mark.comfyui

TESTS = Path(__file__).resolve().parent.parent
RUNS = 3  # one running, two queued behind it (the endpoint runs one ComfyUI)

# The client: queues RUNS runs, the first held in SMTestWait until the test's signal file exists; says their ids
# once the first runs that node (the test then waits for the others to be queued at the worker).
CLIENT = r"""
import json, sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from comfyui_sagemaker.local.endpoints import LocalEndpoints, WorkerRuntime
from comfyui_sagemaker.local.folder_store import FolderStore
from harness.comfyui import ROOT, comfyui_dir
from harness.fake_comfy import FakeComfy

base, store_dir, state, env, hold, runs = sys.argv[2:8]
store = FolderStore(Path(store_dir))
endpoints = LocalEndpoints(Path(state), store.root.resolve().as_uri(), WorkerRuntime(comfyui_dir(), "--cpu", ROOT))
comfy = FakeComfy(Path(base), store, endpoints)

def prompt(i):
    second = {"class_type": "SMTestWait", "inputs": {"image": ["1", 0], "signal": hold, "timeout": 600}} if i == 0 \
        else {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}}
    empty = {"width": 2, "height": 2, "batch_size": 1, "color": 1000 + i}
    save = {"images": ["2", 0], "filename_prefix": f"kept{i}"}
    return {"1": {"class_type": "EmptyImage", "inputs": empty}, "2": second,
            "3": {"class_type": "SaveImage", "inputs": save}}

# The held run first, alone: runs created together reach the worker in any order (a dispatch thread each), and
# one that got there before it ran and ended (a whole run's failure: the queue never held the others).
held = comfy.executions.create(prompt(0), environment=env, client_id="page")
deadline = time.monotonic() + 300
def ready():
    return [e for e in comfy.page_events("page", held["prompt_id"])
            if e["type"] == "executing" and e["data"].get("node") == "2"]
while not ready():
    if time.monotonic() > deadline:
        raise SystemExit("the held run never reached its wait")
    time.sleep(0.05)
runs = [held] + [comfy.executions.create(prompt(i), environment=env, client_id="page") for i in range(1, int(runs))]
print(json.dumps([r["id"] for r in runs]), flush=True)
time.sleep(3600)
"""


def publish(tmp: Path, store: FolderStore, name: str) -> dict:
    """An environment with the test pack, published in-process (no ComfyUI), as the contract suite's."""
    comfy = tmp / "comfy"
    shutil.copytree(FIXTURES / TEST_PACK, comfy / "custom_nodes" / TEST_PACK,
                    ignore=shutil.ignore_patterns("__pycache__"))

    class PackHost:
        def snapshot(self):
            return snapshot.take(snapshot.SnapshotFacts("0.3.75", (str(comfy / "custom_nodes"),), {}, "/nonexistent"))

        def model_index(self):
            return scan({})

        def node_types_by_pack(self):
            return {TEST_PACK: ["SMTestScale", "SMTestFail", "SMTestWait", "SMTestPreview"]}

        def analyze(self, workflow):
            raise AssertionError("include=all never analyzes")

    environments = EnvironmentService(store, TemplateService(store, lambda n: False), PackHost(), TaskManager(),
                                      HashCache(tmp / "hash-cache.json"), 4)
    task = environments.publish(name, include="all", endpoint={"kind": "local"})
    assert environments.tasks.wait(task.id, 120).state == "succeeded", task.to_json()
    return environments.get(name)


def test_a_client_killed_with_runs_in_flight_finds_their_results_at_its_next_start(tmp_path):
    store = FolderStore(tmp_path / "store")
    name = "Kept" + uuid.uuid4().hex[:6]
    manifest = publish(tmp_path, store, name)
    state = tmp_path / "state"
    endpoints = LocalEndpoints(state, store.root.resolve().as_uri(), WorkerRuntime(comfyui_dir(), "--cpu", ROOT))
    hold = tmp_path / "hold"
    client = None
    try:
        endpoints.deploy(manifest)
        wait_for(lambda: endpoints.get(name)["state"] in ("InService", "Failed"), 300, "the endpoint in service")
        assert endpoints.get(name)["state"] == "InService", endpoints.logs(name)
        client = subprocess.Popen([sys.executable, "-P", "-c", CLIENT, str(TESTS), str(tmp_path / "box"),
                                   str(store.root), str(state), name, str(hold), str(RUNS)],
                                  stdout=subprocess.PIPE, text=True, env={**os.environ})
        line = client.stdout.readline() if client.stdout else ""
        assert line, f"the client ended without its runs (exit {client.wait(60)})"
        ids = json.loads(line)
        url, headers = endpoints.get(name)["url"], endpoints._headers(name)
        wait_for(lambda: len(requests.get(url + "/status", headers=headers, timeout=30).json()["queue"]) == RUNS - 1,
                 600, "the other runs queued at the worker")  # a busy machine: the client queues them slowly
        # Where each result will be is written a second into its run (core/executions.py: a run that ends sooner
        # never needs it); a ComfyUI killed before that has its run failed instead: test_run_first_second.py.
        wait_for(lambda: all(ExecutionRecords(store).read(i)[0].get("resume") for i in ids), 300,
                 "each run's resume location written")
        os.kill(client.pid, signal.SIGKILL)  # the ComfyUI dies with its runs in flight
        client.wait(60)
        records = ExecutionRecords(store)
        assert all(records.read(i)[0]["state"] == "running" for i in ids)
        hold.touch()  # the held run goes on, and the queued ones after it: nobody listens to them now
        after = FakeComfy(tmp_path / "box", store, endpoints)  # started again on its folder: the same instance
        try:
            assert after.executions.fail_interrupted() == RUNS
            for i, execution_id in enumerate(ids):
                done = after.wait(execution_id, timeout=300)
                assert done["state"] == "succeeded" and done["error"] is None, done
                image = done["outputs"]["3"]["images"][0]
                assert image["filename"].startswith(f"kept{i}") and store.exists(f"blobs/sha256/{image['sha256']}")
                assert (after.base / "output" / image["subfolder"] / image["filename"]).is_file()
        finally:
            after.close()
        # The worker saw its caller go (a write to the closed connection) and ran the run on.
        assert "its caller went away" in endpoints.logs(name, contains="went away")
    finally:
        hold.touch()
        if client is not None and client.poll() is None:
            client.kill()
            client.wait(60)
        endpoints.stop_all()
