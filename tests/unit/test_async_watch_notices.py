"""A run whose end is notified (aws/async_watch.py with aws/notifications.py's Notices): its looks in between read
only its progress, its result is looked for when its notice comes, and without one every NOTICE_FALLBACK_S s
(a lost notice is still found). On a fake clock: every request is counted, none is waited for."""

from __future__ import annotations

import json
import threading

from comfyui_sagemaker.aws.async_watch import LONGEST_S, NOTICE_FALLBACK_S, AsyncWatch
from comfyui_sagemaker.local.folder_store import FolderStore
from harness.async_results import Results, resume
from harness.fake_clock import CountingStore, FakeClock
from harness.waiting import wait_for


class Wanted:
    def __init__(self):
        self.wanted: list[str] = []
        self.done: list[str] = []

    def want(self, inference_id: str) -> None:
        self.wanted.append(inference_id)

    def done_with(self, inference_id: str) -> None:
        self.done.append(inference_id)


def watched(tmp_path):
    clock = FakeClock(loops=1)
    s3 = Results()
    store = CountingStore(FolderStore(tmp_path / "store"))
    w = AsyncWatch(s3, store, lambda endpoint: True, clock.time, clock.wait)
    notices = Wanted()
    w.notices = type("N", (), {"want": notices.want, "done": notices.done_with})()
    return w, clock, s3, store, notices


def follow(w: AsyncWatch, run: str, notified: bool) -> dict:
    answers: dict = {}
    threading.Thread(target=lambda: answers.setdefault(run, w.follow("ep", run, resume(run), lambda e: None,
                                                                     notified=notified)), daemon=True).start()
    return answers


def test_a_notified_run_reads_its_result_only_when_its_notice_comes(tmp_path):
    w, clock, s3, store, notices = watched(tmp_path)
    answers = follow(w, "r1", notified=True)
    wait_for(lambda: w.watching == 1 and clock.settled(), 60, "the run on the loop")
    assert notices.wanted == ["r1"]
    for _ in range(int(30 / LONGEST_S)):  # half a minute of looks: progress only, never the result
        clock.advance(LONGEST_S)
    assert s3.gets == 0 and len(store.times) >= 5
    s3.objects[("bkt", "out/r1.out")] = json.dumps({"status": "succeeded", "outputs": {}}).encode()
    w.nudge("r1")  # its notice: looked at now, the clock does not move
    wait_for(lambda: "r1" in answers, 60, "the notified run's answer")
    assert answers["r1"] == {"status": "succeeded", "outputs": {}} and s3.gets == 1
    assert notices.done == ["r1"]


def test_a_lost_notice_is_found_by_the_fallback_look_and_said(tmp_path, caplog):
    w, clock, s3, _, _ = watched(tmp_path)
    answers = follow(w, "r2", notified=True)
    wait_for(lambda: w.watching == 1 and clock.settled(), 60, "the run on the loop")
    s3.objects[("bkt", "out/r2.out")] = json.dumps({"status": "succeeded", "outputs": {}}).encode()
    clock.advance(NOTICE_FALLBACK_S - LONGEST_S)
    assert "r2" not in answers and s3.gets == 0
    clock.advance(2 * LONGEST_S, settle=False)
    wait_for(lambda: "r2" in answers, 60, "the run's answer without its notice")
    assert "ended without SageMaker's notice" in caplog.text and "sns:Publish" in caplog.text


def test_a_run_not_notified_is_polled_for_as_before(tmp_path):
    w, clock, s3, _, notices = watched(tmp_path)
    answers = follow(w, "r3", notified=False)  # a run another process invoked, taken over here
    wait_for(lambda: w.watching == 1 and clock.settled(), 60, "the run on the loop")
    assert notices.wanted == [] and s3.gets >= 1  # its result looked for at the first look
    s3.objects[("bkt", "out/r3.out")] = json.dumps({"status": "succeeded", "outputs": {}}).encode()
    clock.advance(LONGEST_S, settle=False)
    wait_for(lambda: "r3" in answers, 60, "the polled run's answer")


def test_runs_are_polled_for_once_the_notices_stop(tmp_path):
    """The services close (a configuration change): the queue goes, the runs in flight finish by polling."""
    w, clock, s3, _, _ = watched(tmp_path)
    answers = follow(w, "r4", notified=True)
    wait_for(lambda: w.watching == 1 and clock.settled(), 60, "the run on the loop")
    s3.objects[("bkt", "out/r4.out")] = json.dumps({"status": "succeeded", "outputs": {}}).encode()
    w.poll_all()
    wait_for(lambda: "r4" in answers, 60, "the run's answer by polling")
