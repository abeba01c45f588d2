"""Who may cancel a run at the worker (issue 25, point 6): anyone who could invoke the endpoint cancelled
any execution id, queued or running, even before it arrived, and the worker kept every id it was sent
(20 cancels with 5 MiB ids: +112 MiB). Now a cancel must carry the run's own cancel token (its invoker's:
the invocation carries only its sha256), in a cancel invocation or in the store's cancel marker, and the
worker forgets cancels with their run; cancels for ids it does not have are few and expire.

Runs are held open by the test pack's SMTestWait until a signal file exists: every assertion is an
ordering or a count, never a timing."""

from __future__ import annotations

import json
import threading

import pytest
from comfyui_sagemaker.core.cancel_tokens import digest_of, marker, new_token
from comfyui_sagemaker.core.executions import CANCEL_PREFIX, new_id
from comfyui_sagemaker.local.folder_store import FolderStore
from comfyui_sagemaker.worker.cancels import MAX_EARLY, CancelBook
from harness.waiting import wait_for
from harness.worker import SharedWorker, WorkerProcess

HOLD = SharedWorker.CANCEL_HOLD  # seconds a cancel for an unknown id is kept, on the session's worker


def held(signal: str, color: int = 5) -> dict:
    return {"1": {"class_type": "EmptyImage", "inputs": {"width": 2, "height": 2, "batch_size": 1, "color": color}},
            "2": {"class_type": "SMTestWait", "inputs": {"image": ["1", 0], "signal": signal, "timeout": 600}},
            "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "cancels"}}}


@pytest.fixture(scope="module")
def rig(comfyui, shared_worker, tmp_path_factory):
    """The session's worker (tests/conftest.py: a secret, the test pack, cancel markers looked for every
    0.1 s, early cancels kept HOLD s), its store, and a folder for signal files."""
    return (shared_worker.take(), FolderStore(comfyui.user_dir / "__sagemaker" / "store"),
            tmp_path_factory.mktemp("cancel-signals"))


class Run:
    """One streamed invocation in a thread, as an invoker sends it: with its cancel token's sha256."""

    def __init__(self, worker: WorkerProcess, signal: str, with_token: bool = True):
        self.worker, self.id, self.token = worker, new_id(), new_token()
        self.body = {"execution_id": self.id, "prompt": held(signal)}
        if with_token:
            self.body["cancel_sha256"] = digest_of(self.token)
        self.events: list[dict] = []
        self.result: dict | None = None
        self.thread = threading.Thread(target=self._go, daemon=True)
        self.thread.start()

    def _go(self) -> None:
        for line in self.worker.invoke(self.body, stream=True, timeout=300).iter_lines():
            if line:
                event = json.loads(line)
                if event["type"] == "result":
                    self.result = event["data"]
                else:
                    self.events.append(event)

    def holding(self) -> bool:
        return any(e["type"] == "executing" and (e["data"] or {}).get("node") == "2" for e in self.events)

    def done(self, timeout: float = 300) -> dict:
        self.thread.join(timeout)
        assert self.result is not None, f"run {self.id} gave no result"
        return self.result


def cancel(worker: WorkerProcess, execution_id: str, token: object = None):
    body = {"action": "cancel", "execution_id": execution_id}
    if token is not None:
        body["cancel_token"] = token
    return worker.invoke(body)


def refused(r) -> bool:
    return r.status_code == 403 and r.json()["error"]["code"] == "cancel_refused"


@pytest.mark.comfyui
def test_a_cancel_without_the_runs_token_is_refused_and_the_run_completes(rig):
    worker, store, signals = rig
    a = Run(worker, str(signals / "a"))
    wait_for(a.holding, what="the run held")
    b = Run(worker, str(signals / "b"))  # queued behind it
    wait_for(lambda: worker.status()["queue"] == [b.id], timeout=120, what="the second run queued")
    other = new_token()
    for run in (a, b):
        for token in (None, "", other, run.token + "x", digest_of(run.token), 5, "é" * 10):
            assert refused(cancel(worker, run.id, token)), (run.id, token)
    # A cancel marker in the store without the token, or with another one, is no cancel either.
    store.put(f"{CANCEL_PREFIX}{a.id}", b"{}")
    store.put(f"{CANCEL_PREFIX}{b.id}", marker(other))
    (signals / "a").write_text("go")
    assert a.done()["status"] == "succeeded"
    wait_for(b.holding, what="the queued run to start, never cancelled")
    (signals / "b").write_text("go")
    assert b.done()["status"] == "succeeded"
    assert worker.status()["cancels"] == {"runs": 0, "early_cancels": 0}


@pytest.mark.comfyui
def test_a_run_invoked_without_a_token_cannot_be_cancelled_by_anyone(rig):
    worker, _, signals = rig
    old = Run(worker, str(signals / "old"), with_token=False)  # an older caller's invocation
    wait_for(old.holding, what="the run held")
    assert refused(cancel(worker, old.id, old.token)) and refused(cancel(worker, old.id, new_token()))
    (signals / "old").write_text("go")
    assert old.done()["status"] == "succeeded"


@pytest.mark.comfyui
def test_the_runs_own_token_cancels_it_queued_running_or_by_marker(rig):
    worker, store, signals = rig
    a = Run(worker, str(signals / "never"))
    wait_for(a.holding, what="the run held")
    b = Run(worker, str(signals / "never"))
    wait_for(lambda: worker.status()["queue"] == [b.id], what="a run queued")
    c = Run(worker, str(signals / "never"))  # sent once b is queued: two requests in flight at once race
    wait_for(lambda: worker.status()["queue"] == [b.id, c.id], what="two runs queued")
    assert cancel(worker, b.id, b.token).json() == {"cancelled": True, "state": "queued"}
    assert b.done()["error"]["code"] == "cancelled" and not b.holding()
    r = cancel(worker, a.id, a.token).json()
    assert r["cancelled"] is True and r["state"] == "running"
    assert a.done()["error"]["code"] == "interrupted"
    wait_for(c.holding, what="the third run to start")
    store.put(f"{CANCEL_PREFIX}{c.id}", marker(c.token))  # what SageMakerEndpoints.cancel writes
    assert c.done()["error"]["code"] == "interrupted"
    # A cancel that overtakes its invocation, with the run's token, cancels it when it arrives.
    d_id, d_token = new_id(), new_token()
    assert cancel(worker, d_id, d_token).json()["state"] == "unknown"
    early = worker.invoke({"execution_id": d_id, "prompt": held(str(signals / "never")),
                           "cancel_sha256": digest_of(d_token)}).json()
    assert early["status"] == "failed" and early["error"]["code"] == "cancelled"
    assert worker.status()["cancels"]["runs"] == 0


@pytest.mark.comfyui
def test_cancels_for_ids_it_does_not_have_are_bounded_and_expire(rig):
    worker, _, signals = rig
    r = cancel(worker, "x" * (5 * 1024 * 1024 // 8), new_token())  # the ids were 5 MiB
    assert r.status_code == 400 and r.json()["error"]["code"] == "bad_request"
    r = worker.invoke({"execution_id": "x" * 129, "prompt": held(str(signals / "never"))})
    assert r.status_code == 400 and r.json()["error"]["code"] == "bad_request"
    for i in range(MAX_EARLY + 200):
        assert cancel(worker, f"{i:0128d}", new_token()).status_code == 200
    assert worker.status()["cancels"]["early_cancels"] <= MAX_EARLY
    wait_for(lambda: worker.status()["cancels"]["early_cancels"] == 0, timeout=180,
             what=f"cancels for unknown ids forgotten after {HOLD} s")


def test_the_cancel_book_keeps_a_bounded_number_of_early_cancels_for_a_while():
    now = [0.0]
    book = CancelBook(max_early=3, early_ttl=10, clock=lambda: now[0])
    tokens = {f"id{i}": new_token() for i in range(5)}
    for execution_id, token in tokens.items():
        assert book.cancel(execution_id, token) is None
    assert book.size() == {"runs": 0, "early_cancels": 3}  # the oldest went first
    assert not book.begin("id0", digest_of(tokens["id0"])).cancelled  # evicted: forgotten
    assert not book.begin("id3", digest_of(new_token())).cancelled  # another token: not its cancel
    assert book.begin("id4", digest_of(tokens["id4"])).cancelled
    now[0] = 10.0
    assert book.size()["early_cancels"] == 0  # id2 expired
    execution = book.begin("r", digest_of(tokens["id1"]))
    assert book.cancel("r", new_token()) == [] and not execution.cancelled
    assert book.cancel("r", tokens["id1"]) == [execution] and execution.cancelled
    book.end(execution)  # forgotten with its execution
    assert "r" not in book.executions and execution.ended
