"""Cancel frees the compute (issue 32, point 2) on a real worker and ComfyUI: a cancelled run stuck in a node that
never checks ComfyUI's interrupt flag (the test pack's SMTestStuck, like ImageMorphology dilate 61 on 1536²) kept
the ComfyUI computing and the next run waiting until the node ended. Now the worker restarts that ComfyUI once
WORKER_CANCEL_GRACE_S has passed since the cancel, the run ends cancelled and says why, and the run queued behind
it runs on the restarted ComfyUI. Every wait is on an event (a run's end, a status change), never on a timing."""

from __future__ import annotations

import json
import threading
import uuid

import pytest
from comfyui_sagemaker.core.cancel_tokens import digest_of, new_token
from harness.waiting import wait_for
from harness.worker import WorkerProcess

pytestmark = pytest.mark.comfyui

STUCK_S = 120  # the node's own end: far past the grace plus a restart, and bounded (the pack caps it at 300)


def stuck() -> dict:
    return {"1": {"class_type": "EmptyImage", "inputs": {"width": 2, "height": 2, "batch_size": 1, "color": 3}},
            "2": {"class_type": "SMTestStuck", "inputs": {"image": ["1", 0], "seconds": STUCK_S}},
            "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "stuck"}}}


def quick() -> dict:
    return {"1": {"class_type": "EmptyImage", "inputs": {"width": 2, "height": 2, "batch_size": 1, "color": 4}},
            "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "after"}}}


class Run:
    """One streamed invocation in a thread, with its cancel token, as its invoker sends it."""

    def __init__(self, worker: WorkerProcess, prompt: dict):
        self.worker, self.id, self.token = worker, uuid.uuid4().hex, new_token()
        self.body = {"execution_id": self.id, "prompt": prompt, "cancel_sha256": digest_of(self.token)}
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

    def in_node(self, node: str) -> bool:
        return any(e["type"] == "executing" and (e["data"] or {}).get("node") == node for e in self.events)

    def cancel(self) -> dict:
        return self.worker.invoke({"action": "cancel", "execution_id": self.id, "cancel_token": self.token}).json()

    def done(self, timeout: float = 300) -> dict:
        self.thread.join(timeout)
        assert self.result is not None, f"run {self.id} gave no result; events: {[e['type'] for e in self.events]}"
        return self.result


@pytest.fixture(scope="module")
def worker(worker_environment, tmp_path_factory):
    """A worker of its own with one ComfyUI (the case where a stuck run blocks everything) and a 2 s grace."""
    process = WorkerProcess(worker_environment[1], tmp_path_factory.mktemp("cancel-restart-worker"),
                            extra_env={"WORKER_COMFYUI_COUNT": "1", "WORKER_CANCEL_GRACE_S": "2",
                                       "WORKER_RESTART_BACKOFF": "0.2"}, token=uuid.uuid4().hex)
    process.start()
    try:
        status = process.wait_state()
        assert status["state"] == "ready", process.log()[-3000:]
        yield process
    finally:
        process.stop()


def test_a_cancelled_run_stuck_in_a_node_that_ignores_interrupts_frees_its_comfyui(worker):
    before = worker.status()["comfyuis"][0]
    a = Run(worker, stuck())
    wait_for(lambda: a.in_node("2"), timeout=120, what="the run stuck in SMTestStuck")
    assert worker.status()["comfyuis"][0]["execution"] == a.id  # /status says which run the ComfyUI is busy with
    b = Run(worker, quick())
    wait_for(lambda: worker.status()["queue"] == [b.id], what="the next run queued behind it")

    answer = a.cancel()
    assert answer["cancelled"] is True and answer["state"] == "running"
    result = a.done()
    assert result["status"] == "failed"
    assert result["error"] == {"code": "cancelled", "message": "cancelled (ComfyUI restarted to stop node SMTestStuck)"}

    # The run behind it is not blocked until the node would have ended: it runs on the restarted ComfyUI.
    after = b.done()
    assert after["status"] == "succeeded", after
    comfyui = worker.status()["comfyuis"][0]
    assert comfyui["restarts"] == before["restarts"] + 1 and comfyui["pid"] != before["pid"]
    assert comfyui["state"] == "ready" and comfyui["execution"] is None
    log = worker.log_path.read_text(errors="replace")
    assert f"a cancelled run ({a.id}) did not stop in node SMTestStuck within 2 s; restarting ComfyUI 0" in log
