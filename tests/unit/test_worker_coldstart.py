"""The cold start report (worker/coldstart.py): phases timed with their bytes, a failed phase kept with its
reason, the activity line with byte progress, report keys that sort newest first, the first prompt's
model load read from ComfyUI's events, and the report written to the store and read back by the
SageMaker endpoint (the container is out of the extension's reach)."""

from __future__ import annotations

import json
import time

import pytest
from comfyui_sagemaker.local.folder_store import FolderStore
from comfyui_sagemaker.worker.coldstart import (
    REPORTS,
    ColdStart,
    FirstPromptTimer,
    StoreReport,
    describe,
    progress_text,
    report_folder,
    report_key,
)


def test_phases_are_timed_with_their_bytes_and_a_failed_one_keeps_its_reason():
    cold = ColdStart()
    with cold.phase("models", "models fetched", count=2) as phase:
        phase["bytes"] = 7_600_000_000
    with pytest.raises(RuntimeError), cold.phase("python_packages", "Python packages"):
        raise RuntimeError("pip: no network")
    models, packages = cold.to_json()
    assert models["state"] == "done" and models["seconds"] >= 0 and models["count"] == 2
    assert models["bytes_per_s"] > 0
    assert packages["state"] == "failed" and packages["error"] == "pip: no network"
    assert describe(models).startswith("models fetched: 7.6 GB in ") and "GB/s" in describe(models)


def test_activity_counts_bytes_in_the_unit_of_the_total():
    assert progress_text("models", 2_100_000_000, 7_600_000_000) == "models 2.1 of 7.6 GB"
    assert progress_text("packs", 1_500_000, 12_000_000) == "packs 1.5 of 12.0 MB"
    cold = ColdStart()
    on_bytes = cold.progress("models", 3_000_000_000)
    on_bytes(1_000_000_000)
    on_bytes(500_000_000)
    assert cold.activity == "models 1.5 of 3.0 GB"


def test_report_keys_sort_newest_first_under_their_environment():
    older = report_key("Portraits", 1_700_000_000.0, "ip-10-0-0-1.ec2.internal")
    newer = report_key("Portraits", 1_700_000_060.0, "host with spaces/and slashes")
    assert older.startswith(REPORTS + "portraits/") and newer.startswith(report_folder("PORTRAITS"))
    assert sorted([older, newer]) == [newer, older]
    assert "/" not in newer[len(report_folder("portraits")):] and " " not in newer


class Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_the_first_prompts_model_load_is_start_to_first_sampler_step():
    prompt = {"4": {"class_type": "CheckpointLoaderSimple"}, "3": {"class_type": "KSampler"},
              "9": {"class_type": "SaveImage"}}
    clock = Clock()
    timer = FirstPromptTimer(prompt, clock)
    timer.feed({"type": "execution_start", "data": {}})
    timer.feed({"type": "executing", "data": {"node": "4"}})
    clock.t += 2.0  # the checkpoint read from disk
    timer.feed({"type": "executing", "data": {"node": "3"}})
    clock.t += 1.5  # moved to the GPU by the sampler
    timer.feed({"type": "progress", "data": {"value": 1, "max": 20, "node": "3"}})
    clock.t += 6.0  # the other steps: not model load
    timer.feed({"type": "progress", "data": {"value": 20, "max": 20, "node": "3"}})
    seconds, how = timer.finish()
    assert seconds == 3.5 and how.startswith("start to first sampler step") and "ran 9.50 s" in how
    # No sampler: the time in loader nodes.
    clock = Clock()
    timer = FirstPromptTimer({"1": {"class_type": "UpscaleModelLoader"}, "2": {"class_type": "SaveImage"}}, clock)
    timer.feed({"type": "execution_start", "data": {}})
    clock.t += 0.5
    timer.feed({"type": "executing", "data": {"node": "1"}})
    clock.t += 2.0
    timer.feed({"type": "executing", "data": {"node": "2"}})
    clock.t += 0.25
    seconds, how = timer.finish()
    assert seconds == 2.0 and "UpscaleModelLoader" in how


def test_the_report_reaches_the_store_and_the_newest_is_read_back(tmp_path, aws_env):
    from comfyui_sagemaker.aws.sagemaker_endpoints import SageMakerEndpoints

    store = FolderStore(tmp_path / "store")
    cold = ColdStart()
    old = StoreReport(store, report_key("Portraits", time.time() - 600, "old-host"),
                      lambda: {"state": "ready", "phases": [], "environment": {"version": 1}}, interval=0.05)
    old.close()
    report = StoreReport(store, report_key("Portraits", time.time(), "new-host"),
                         lambda: {"state": "starting", "phases": cold.to_json(), "activity": cold.activity,
                                  "instance": "new-host", "environment": {"name": "Portraits", "version": 2}},
                         interval=0.05).start()
    cold.on_change = report.poke
    with cold.phase("manifest", "manifest read"):
        pass
    cold.progress("models", 4_000_000_000)(1_000_000_000)
    report.close()
    endpoints = SageMakerEndpoints("s3://b/p", "arn:aws:iam::123456789012:role/R", "image", "us-east-1",
                                   store=store)
    read = endpoints.worker_report("Portraits")
    assert read["instance"] == "new-host" and read["activity"] == "models 1.0 of 4.0 GB"
    assert [p["name"] for p in read["phases"]] == ["manifest"] and read["updated_at"]
    assert endpoints.worker_report("Nobody") is None
    assert len(store.list(report_folder("Portraits"))) == 2
    endpoints._delete_reports("Portraits")
    assert store.list(report_folder("Portraits")) == []
    body = json.loads(json.dumps(read))
    assert body == read  # plain JSON, as the sidebar gets it
