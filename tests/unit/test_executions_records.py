"""Execution records survive a restart: runs left in flight are failed with the reason."""

import json

from comfyui_sagemaker.core.executions import ExecutionService, new_id
from comfyui_sagemaker.local.folder_store import FolderStore


def test_runs_in_flight_at_a_restart_are_failed_with_the_reason(tmp_path):
    store = FolderStore(tmp_path)
    ids = {}
    for state in ("queued", "running", "succeeded"):
        ids[state] = new_id()
        store.put(f"executions/{ids[state]}.json", json.dumps({"id": ids[state], "state": state}).encode())
    svc = ExecutionService(store, None, None, None, None, None, lambda *a: None)
    assert svc.fail_interrupted() == 2
    for state, execution_id in ids.items():
        record = svc.get(execution_id)
        if state == "succeeded":
            assert record["state"] == "succeeded"
        else:
            assert record["state"] == "failed" and "restarted" in record["error"]["message"]


def test_ids_sort_by_time():
    first, second = new_id(), new_id()
    assert first < second
