"""What the worker does for SageMaker, where nothing but the store reaches a given instance: a cancel
marker in the store stops the run that has it (and a queued request whose marker exists never starts);
a failed start ends the process; ComfyUI's own output is in the worker's stdout (CloudWatch's stream)."""

from __future__ import annotations

import json

import pytest
from comfyui_sagemaker.core.cancel_tokens import digest_of, marker, new_token
from comfyui_sagemaker.core.executions import CANCEL_PREFIX, new_id
from comfyui_sagemaker.local.folder_store import FolderStore
from harness.waiting import wait_for
from harness.worker import WorkerProcess

pytestmark = pytest.mark.comfyui


def held(never: str) -> dict:
    return {"1": {"class_type": "EmptyImage", "inputs": {"width": 2, "height": 2, "batch_size": 1, "color": 5}},
            "2": {"class_type": "SMTestWait", "inputs": {"image": ["1", 0], "signal": never, "timeout": 600}},
            "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "held"}}}


@pytest.fixture(scope="module")
def setup(comfyui, shared_worker, tmp_path_factory):
    """The session's worker (tests/conftest.py: the test pack, cancel markers looked for every 0.1 s), its
    store, and a signal file that never comes."""
    never = str(tmp_path_factory.mktemp("signals") / "never")
    return shared_worker.take(), FolderStore(comfyui.user_dir / "__sagemaker" / "store"), never


def test_a_cancel_marker_in_the_store_stops_the_run_on_whichever_instance_has_it(setup):
    worker, store, never = setup
    execution_id, token = new_id(), new_token()
    r = worker.invoke({"execution_id": execution_id, "prompt": held(never), "cancel_sha256": digest_of(token)},
                      stream=True, timeout=300)
    result = None
    for line in r.iter_lines():
        if not line:
            continue
        event = json.loads(line)
        if event["type"] == "executing" and (event["data"] or {}).get("node") == "2":
            store.put(f"{CANCEL_PREFIX}{execution_id}", marker(token))  # what SageMakerEndpoints.cancel writes
        if event["type"] == "result":
            result = event["data"]
    assert result["status"] == "failed" and result["error"]["code"] == "interrupted", result


def test_a_queued_request_whose_marker_exists_never_starts(setup):
    worker, store, never = setup
    execution_id, token = new_id(), new_token()
    store.put(f"{CANCEL_PREFIX}{execution_id}", marker(token))
    result = worker.invoke({"execution_id": execution_id, "prompt": held(never),
                            "cancel_sha256": digest_of(token)}).json()
    assert result["status"] == "failed" and result["error"]["code"] == "cancelled", result
    assert result["outputs"] == {}


def test_comfyuis_output_is_in_the_workers_own_stdout(setup):
    worker, _, _ = setup
    assert "comfyui | " in worker.log_path.read_text(errors="replace")  # the worker's stdout, not ComfyUI's file


def test_a_failed_start_ends_the_worker_with_the_reason(tmp_path):
    store = FolderStore(tmp_path / "store")
    key = "environments/broken/versions/v000001.json"
    store.put(key, b'{"custom_nodes": [], "models": 5}')
    w = WorkerProcess(f"{store.root.resolve().as_uri()}/{key}", tmp_path / "w",
                      extra_env={"WORKER_EXIT_AFTER_FAILURE": "0.5"}).start()
    try:
        wait_for(lambda: w.proc.poll() is not None, what="the failed worker to exit")
        assert w.proc.returncode != 0 and "models must be a list" in w.log()
    finally:
        w.stop()
