"""The Comfy API v2's view of a run (core/v2/job_view.py) checked against comfy-sdk's own models (the protocol's
published schema), progress folded from ComfyUI's events, and the Range header of asset downloads."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import make_mocked_request
from comfy_low.models import Job
from comfyui_sagemaker.core.v2.job_view import Mount, ProgressTracker, job_json
from comfyui_sagemaker.server_routes.v2 import byte_range

SHA = "ab" * 32
RECORD = {"id": "20260101T000000000000-0123abcd", "state": "succeeded", "created_at": "2026-01-01T00:00:00Z",
          "started_at": "2026-01-01T00:00:01Z", "finished_at": "2026-01-01T00:00:03Z", "environment": "Portraits",
          "labels": {"order": "7"}, "v2": {"nodes": 3}, "error": None,
          "outputs": {"9": {"images": [{"filename": "out_00001_.png", "subfolder": "s", "type": "output",
                                        "sha256": SHA, "size": 120}]}}}
MOUNT = Mount("http://127.0.0.1:8189", "/sagemaker/v2/Portraits")


def test_a_record_is_a_job_the_sdk_reads():
    raw = job_json(RECORD, MOUNT, 30)
    job = Job.model_validate(raw)
    assert job.status.value == "succeeded" and job.progress.value == 1.0
    (output,) = job.outputs
    assert output.node_id == "9" and output.type.value == "image" and output.size_bytes == 120
    assert str(output.url) == f"{MOUNT.url('/assets')}/out-{RECORD['id']}-{SHA[:24]}/content"
    assert job.metrics["execution_ms"] == 2000 and raw["metadata"] == {"order": "7"}  # the labels, beside
    failed = {**RECORD, "state": "failed", "outputs": {},
              "error": {"code": "node_error", "message": "boom", "node_id": 3, "node_type": "KSampler"}}
    job = Job.model_validate(job_json(failed, MOUNT, 30))
    assert job.error.code == "node_execution_error" and job.error.node_id == "3"
    assert job.error.class_type == "KSampler"
    assert Job.model_validate(job_json({**RECORD, "state": "cancelled"}, MOUNT, 30)).status.value == "canceled"


def test_progress_counts_nodes_and_sampler_steps():
    tracker = ProgressTracker({"1": "LoadImage", "2": "KSampler", "3": "SaveImage"})
    assert tracker.snapshot() is None
    tracker.add("execution_cached", {"nodes": ["1"]})
    tracker.add("executing", {"node": "2"})
    tracker.add("progress", {"node": "2", "value": 5, "max": 10})
    snap = tracker.snapshot()
    assert snap["value"] == pytest.approx(0.5) and snap["current_node_class"] == "KSampler"
    assert snap["message"] == "KSampler 5/10"
    assert not tracker.add("status", {})  # not a progress event
    tracker.add("executed", {"node": "2"})
    tracker.add("execution_success", {})
    assert tracker.snapshot()["value"] == 1.0 and tracker.snapshot()["current_node"] is None


def asking(header: str | None):
    return make_mocked_request("GET", "/content", headers={"Range": header} if header is not None else {})


@pytest.mark.parametrize("header, size, expected", [
    (None, 10, None), ("bytes=0-3", 10, (0, 3)), ("bytes=5-", 10, (5, 9)), ("bytes=-4", 10, (6, 9)),
    ("bytes=2-99", 10, (2, 9)), ("bytes=0-1,4-5", 10, None), ("items=0-1", 10, None),
    ("bytes=5-5", 10, (5, 5)), ("bytes=-20", 10, (0, 9)), ("bytes=-", 10, None), ("bytes=x-1", 10, None)])
def test_ranges_served(header, size, expected):
    assert byte_range(asking(header), size) == expected


@pytest.mark.parametrize("header, size", [("bytes=10-", 10), ("bytes=5-2", 10), ("bytes=-0", 10), ("bytes=-4", 0)])
def test_ranges_that_cannot_be_satisfied(header, size):
    with pytest.raises(ValueError):
        byte_range(asking(header), size)
