"""Async SageMaker runs watched by one loop per process (aws/async_watch.py): one DescribeEndpoint poller per
endpoint however many runs wait on it, and each run gets its own events and answer. On a fake clock."""

from __future__ import annotations

import json
import threading

import pytest
from comfyui_sagemaker.aws.async_watch import DESCRIBE_EVERY_S, LONGEST_S, AsyncWatch
from comfyui_sagemaker.core.endpoints import InvocationFailed
from comfyui_sagemaker.core.worker_contract import PROGRESS_PREFIX
from comfyui_sagemaker.local.folder_store import FolderStore
from harness.async_results import Results, resume
from harness.fake_clock import FakeClock
from harness.waiting import wait_for


@pytest.fixture
def watch(tmp_path):
    clock = FakeClock(loops=1)
    asked: list[str] = []
    gone: set[str] = set()
    s3 = Results()
    store = FolderStore(tmp_path / "store")
    w = AsyncWatch(s3, store, lambda endpoint: asked.append(endpoint) or endpoint not in gone, clock.time, clock.wait)
    return w, clock, asked, gone, s3, store


def follow_in_threads(w: AsyncWatch, runs: dict[str, str]) -> tuple[dict, dict]:
    """Each run followed from a thread of its own, as each run's executor thread does."""
    answers: dict[str, object] = {}
    events: dict[str, list] = {run: [] for run in runs}

    def one(run: str, endpoint: str) -> None:
        try:
            answers[run] = w.follow(endpoint, run, resume(run), events[run].append)
        except InvocationFailed as err:
            answers[run] = err

    for run, endpoint in runs.items():
        threading.Thread(target=one, args=(run, endpoint), daemon=True).start()
    return answers, events


def test_one_describe_poller_per_endpoint_however_many_runs_and_one_loop(watch):
    w, clock, asked, _, s3, store = watch
    runs = {f"a{i}": "ep-a" for i in range(6)} | {"b0": "ep-b"}
    answers, events = follow_in_threads(w, runs)
    wait_for(lambda: w.watching == len(runs) and clock.settled(), 60, "every run to wait on the loop")
    for _ in range(int(60 / LONGEST_S)):  # a minute
        clock.advance(LONGEST_S)
    minute = int(60 / DESCRIBE_EVERY_S) + 1  # the first look asks at once
    assert asked.count("ep-a") <= minute and asked.count("ep-b") <= minute
    assert [t.name for t in threading.enumerate()].count("sagemaker-async-watch") == 1
    # Each run gets its own progress and result.
    store.put(f"{PROGRESS_PREFIX}a3.json", json.dumps({"events": [{"type": "execution_start", "data": {}}]}).encode())
    for run in runs:
        s3.objects[("bkt", f"out/{run}.out")] = json.dumps({"status": "succeeded", "outputs": {"run": run}}).encode()
    clock.advance(LONGEST_S, settle=False)  # every run ends: so does the loop
    wait_for(lambda: len(answers) == len(runs), 60, "every run's answer")
    assert all(answers[run] == {"status": "succeeded", "outputs": {"run": run}} for run in runs), answers
    assert events["a3"] == [{"type": "execution_start", "data": {}}] and not any(events[r] for r in runs if r != "a3")
    assert w.watching == 0


def test_a_failure_and_a_deleted_endpoint_are_each_runs_own_answer(watch):
    w, clock, _, gone, s3, _ = watch
    answers, _ = follow_in_threads(w, {"a0": "ep-a", "a1": "ep-a", "b0": "ep-b"})
    wait_for(lambda: w.watching == 3 and clock.settled(), 60, "every run to wait on the loop")
    s3.objects[("bkt", "fail/a1.out")] = b"worker died"
    gone.add("ep-b")
    clock.advance(DESCRIBE_EVERY_S)
    wait_for(lambda: {"a1", "b0"} <= set(answers), 60, "the failed and the orphaned runs' answers")
    assert "worker died" in str(answers["a1"]) and "ep-b was deleted" in str(answers["b0"])
    assert "a0" not in answers and w.watching == 1
    s3.objects[("bkt", "out/a0.out")] = b'{"status": "succeeded"}'
    clock.advance(LONGEST_S, settle=False)
    wait_for(lambda: "a0" in answers, 60, "the last run's answer")
    assert answers["a0"] == {"status": "succeeded"}
