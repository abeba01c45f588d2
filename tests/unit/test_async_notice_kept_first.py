"""A run whose notice came reads the result its worker kept (worker/outputs.py keep_result) first: that is the
answer (what SageMaker's copy would be replaced by, aws/async_watch.py kept_result), so SageMaker's copy is not read
at all, one GET a run fewer. A worker that keeps none (an older one) is answered from SageMaker's copy, read once.
On a fake clock: every request counted, none waited for."""

from __future__ import annotations

import json
import threading
import time

from comfyui_sagemaker.aws.async_watch import AsyncWatch
from comfyui_sagemaker.core.worker_contract import RESULTS_PREFIX
from comfyui_sagemaker.local.folder_store import FolderStore
from harness.async_results import Results
from harness.fake_clock import CountingStore, FakeClock
from harness.waiting import wait_for

KEPT = {"status": "succeeded", "outputs": {"3": {"images": []}}}


def watched(tmp_path):
    clock = FakeClock(loops=1)
    s3 = Results()
    store = CountingStore(FolderStore(tmp_path / "store"))
    w = AsyncWatch(s3, store, lambda endpoint: True, clock.time, clock.wait)
    w.notices = type("N", (), {"want": lambda self, i: None, "done": lambda self, i: None})()
    return w, clock, s3, store, None


def follow(w: AsyncWatch, run: str, notified: bool) -> dict:
    answers: dict = {}
    where = {"output": f"s3://bkt/out/{run}.out", "failure": f"s3://bkt/fail/{run}.out", "until": time.time() + 3600}
    threading.Thread(target=lambda: answers.setdefault(run, w.follow("ep", run, where, lambda e: None,
                                                                     notified=notified)), daemon=True).start()
    return answers


def test_a_noticed_run_is_answered_by_its_kept_result_without_reading_sagemakers_copy(tmp_path):
    w, clock, s3, store, _ = watched(tmp_path)
    answers = follow(w, "r1", notified=True)
    wait_for(lambda: w.watching == 1 and clock.settled(), 60, "the run on the loop")
    s3.objects[("bkt", "out/r1.out")] = json.dumps({"status": "succeeded", "outputs": {}}).encode()
    store.inner.put(f"{RESULTS_PREFIX}r1.json", json.dumps(KEPT).encode())
    store.taken()
    w.nudge("r1")
    wait_for(lambda: "r1" in answers, 60, "the noticed run's answer")
    assert answers["r1"] == KEPT and s3.gets == 0
    assert store.taken() == ["get", "get"]  # its kept result, then its progress: nothing else


def test_a_noticed_run_whose_worker_keeps_no_result_is_answered_from_sagemakers_copy_read_once(tmp_path):
    w, clock, s3, store, _ = watched(tmp_path)
    answers = follow(w, "r1", notified=True)
    wait_for(lambda: w.watching == 1 and clock.settled(), 60, "the run on the loop")
    s3.objects[("bkt", "out/r1.out")] = json.dumps({"status": "succeeded", "outputs": {}}).encode()
    store.taken()
    w.nudge("r1")
    wait_for(lambda: "r1" in answers, 60, "the noticed run's answer")
    assert answers["r1"] == {"status": "succeeded", "outputs": {}} and s3.gets == 1
    assert store.taken() == ["get", "get"]  # its kept result looked for once, its progress
