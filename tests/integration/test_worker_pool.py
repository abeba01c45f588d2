"""One worker, three ComfyUIs (three CPU "devices"): prompts held open at once run at once, the rest queue
in arrival order, a cancel reaches the ComfyUI that runs the execution, a ComfyUI killed is restarted
while the others serve. Each ComfyUI has its own input/output/temp folders; models and custom nodes are
materialised once. Runs are held open by the test pack's SMTestWait until a signal file exists, so every
assertion is an ordering, never a timing."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import threading
import uuid

import pytest
from comfyui_sagemaker.local.folder_store import FolderStore
from harness.envs import publish_environment
from harness.images import pixels, png
from harness.waiting import wait_for
from harness.worker import WorkerProcess

pytestmark = pytest.mark.comfyui

N = 3


def held(signal_file: str, image: str | None = None, color: int = 5) -> dict:
    """(LoadImage `image` | EmptyImage) -> SMTestWait(signal) -> SaveImage; node "2" holds the run."""
    source = {"class_type": "LoadImage", "inputs": {"image": image}} if image else \
        {"class_type": "EmptyImage", "inputs": {"width": 2, "height": 2, "batch_size": 1, "color": color}}
    return {"1": source,
            "2": {"class_type": "SMTestWait", "inputs": {"image": ["1", 0], "signal": signal_file, "timeout": 600}},
            "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "pool"}}}


class Run:
    """One streamed invocation in a thread: its events as they come, then its result."""

    def __init__(self, worker: WorkerProcess, prompt: dict, inputs: dict | None = None):
        self.worker, self.id, self.token = worker, uuid.uuid4().hex, uuid.uuid4().hex
        self.body = {"execution_id": self.id, "prompt": prompt, "inputs": inputs or {},
                     "cancel_sha256": hashlib.sha256(self.token.encode()).hexdigest()}
        self.events: list[dict] = []
        self.result: dict | None = None
        self.thread = threading.Thread(target=self._go, daemon=True)
        self.thread.start()

    def cancel(self) -> dict:
        """Cancel it as its invoker does (with its cancel token)."""
        return self.worker.invoke({"action": "cancel", "execution_id": self.id, "cancel_token": self.token}).json()

    def _go(self) -> None:
        r = self.worker.invoke(self.body, stream=True, timeout=300)
        for line in r.iter_lines():
            if line:
                event = json.loads(line)
                if event["type"] == "result":
                    self.result = event["data"]
                else:
                    self.events.append(event)

    def holding(self) -> bool:
        """Its ComfyUI is inside the wait node."""
        return any(e["type"] == "executing" and (e["data"] or {}).get("node") == "2" for e in self.events)

    def done(self, timeout: float = 300) -> dict:
        self.thread.join(timeout)
        assert self.result is not None, f"run {self.id} gave no result; events: {[e['type'] for e in self.events]}"
        return self.result


@pytest.fixture(scope="module")
def pool(comfyui, tmp_path_factory):
    signals = tmp_path_factory.mktemp("pool-signals")
    published = held(str(signals / "never"))  # with SMTestScale, which names a lora: the environment has a model
    published["4"] = {"class_type": "SMTestScale", "inputs": {"image": ["2", 0], "lora_name": "style.safetensors",
                                                              "factor": 0.5}}
    _, env, task = publish_environment(comfyui.client(), published)
    store_dir = comfyui.user_dir / "__sagemaker" / "store"
    uri = f"{store_dir.resolve().as_uri()}/environments/{env.lower()}/versions/v{task['result']['version']:06d}.json"
    worker = WorkerProcess(uri, tmp_path_factory.mktemp("pool-worker"),
                           extra_env={"WORKER_COMFYUI_COUNT": str(N), "WORKER_CANCEL_POLL": "0.1",
                                      "WORKER_RESTART_BACKOFF": "1"})
    worker.start()
    try:
        status = worker.wait_state()
        assert status["state"] == "ready", worker.log()[-3000:]
        wait_for(lambda: all(c["state"] == "ready" for c in worker.status()["comfyuis"]), timeout=120,
                 what="every ComfyUI ready")
        yield worker, FolderStore(store_dir), signals
    finally:
        worker.stop()


def release(signals, name: str) -> None:
    (signals / name).write_text("go")


def slot_of(worker, execution_id: str) -> dict:
    return next(c for c in worker.status()["comfyuis"] if c["execution"] == execution_id)


def put_input(store, data: bytes) -> str:
    digest = hashlib.sha256(data).hexdigest()
    store.put(f"blobs/sha256/{digest}", data)
    return digest


def test_one_comfyui_per_device_sharing_models_and_custom_nodes_once(pool):
    worker, _, _ = pool
    status = worker.status()
    assert [c["device"] for c in status["comfyuis"]] == ["cpu"] * N and status["activity"] is None
    base = worker.root / "base"
    assert (base / "models" / "loras" / "style.safetensors").read_bytes() == b"lora bytes"
    assert (base / "custom_nodes" / "sm_test_pack" / "__init__.py").exists()
    assert status["materialise"]["downloaded_blobs"] == 2  # the pack and the lora, once for all three
    for i in range(N):
        assert {p.name for p in (base / "comfyui" / str(i)).iterdir()} >= {"input", "output", "temp", "user"}
        assert not (base / "comfyui" / str(i) / "models").exists()
    phases = status["phases"]
    assert [p["name"] for p in phases[:4]] == ["manifest", "packs", "models", "python_packages"]
    starts = [p for p in phases if p["name"] == "comfyui_start"]
    assert sorted(p["comfyui"] for p in starts) == list(range(N)) and all(p["seconds"] > 0 for p in starts)
    models = phases[2]
    assert models["state"] == "done" and models["bytes"] == len(b"lora bytes") and models["bytes_per_s"] > 0
    assert "cold start: models fetched" in worker.log_path.read_text()


def test_three_at_once_the_rest_in_arrival_order_and_a_cancel_reaches_its_comfyui(pool):
    worker, store, signals = pool
    # The same input name with different bytes on each run: each ComfyUI has its own input folder.
    colors = [(200, 0, 0), (0, 200, 0), (0, 0, 200)]
    digests = [put_input(store, png(2, 2, c)) for c in colors]
    a, b, c = (Run(worker, held(str(signals / f"abc{i}"), "same.png"), {"same.png": d})
               for i, d in enumerate(digests))
    wait_for(lambda: a.holding() and b.holding() and c.holding(), what="three runs held at once")
    busy = {s["execution"]: s["index"] for s in worker.status()["comfyuis"]}
    assert set(busy) == {a.id, b.id, c.id}  # three ComfyUIs, one run each
    for run, digest in zip((a, b, c), digests, strict=True):
        placed = worker.root / "base" / "comfyui" / str(busy[run.id]) / "input" / "same.png"
        assert hashlib.sha256(placed.read_bytes()).hexdigest() == digest

    d = Run(worker, held(str(signals / "d")))
    wait_for(lambda: worker.status()["queue"] == [d.id], what="the fourth queued")
    e = Run(worker, held(str(signals / "e")))
    wait_for(lambda: worker.status()["queue"] == [d.id, e.id], what="the fifth queued after it")
    f = Run(worker, held(str(signals / "f")))
    wait_for(lambda: worker.status()["queue"] == [d.id, e.id, f.id], what="a sixth queued")
    r = f.cancel()
    assert r == {"cancelled": True, "state": "queued"}
    assert f.done()["error"]["code"] == "cancelled" and not f.holding()  # left the queue, never ran
    assert worker.status()["queue"] == [d.id, e.id] and not d.events and not e.events

    r = b.cancel()
    assert r["state"] == "running" and r["comfyui"] == busy[b.id]
    result_b = b.done()
    assert result_b["status"] == "failed" and result_b["error"]["code"] == "interrupted"
    # B's ComfyUI went to the first in line; A and C run on, E still waits.
    wait_for(d.holding, what="the fourth to start on the freed ComfyUI")
    assert slot_of(worker, d.id)["index"] == busy[b.id]
    assert worker.status()["queue"] == [e.id] and a.result is None and c.result is None
    assert {slot_of(worker, x.id)["index"] for x in (a, c)} == {busy[a.id], busy[c.id]}

    release(signals, "abc0")
    result_a = a.done()
    assert result_a["status"] == "succeeded" and result_a["comfyui"] == busy[a.id]
    wait_for(e.holding, what="the fifth to start once a ComfyUI is free")
    assert slot_of(worker, e.id)["index"] == busy[a.id]
    for name in ("abc2", "d", "e"):
        release(signals, name)
    for run in (c, d, e):
        assert run.done()["status"] == "succeeded"
    # Each run's output is made from its own input, though all three named it same.png.
    for run, color in ((a, colors[0]), (c, colors[2])):
        item = run.result["outputs"]["3"]["images"][0]
        assert set(pixels(store.get(f"blobs/sha256/{item['sha256']}").data)) == {color}
    assert worker.status()["queue"] == []


def test_a_killed_comfyui_is_restarted_while_the_others_serve(pool):
    worker, store, signals = pool
    x, y = Run(worker, held(str(signals / "x"), color=11)), Run(worker, held(str(signals / "y"), color=12))
    wait_for(lambda: x.holding() and y.holding(), what="two runs held")
    victim = slot_of(worker, x.id)
    restarts = victim["restarts"]
    os.kill(victim["pid"], signal.SIGKILL)
    result_x = x.done()
    assert result_x["status"] == "failed" and result_x["error"]["code"] == "comfyui_died"
    assert f"ComfyUI {victim['index']} (cpu) exited" in result_x["error"]["message"]
    states = {c["index"]: c["state"] for c in worker.status()["comfyuis"]}
    assert states[victim["index"]] in ("restarting", "ready")
    # The others serve meanwhile: the held run goes on, a new prompt runs on the free ComfyUI.
    quick = worker.invoke({"execution_id": uuid.uuid4().hex, "prompt": held("", color=13)}).json()
    assert quick["status"] == "succeeded" and quick["comfyui"] != victim["index"]
    assert y.result is None and worker.ping() == 200
    wait_for(lambda: next(c for c in worker.status()["comfyuis"] if c["index"] == victim["index"])["state"] == "ready",
             timeout=120, what="the killed ComfyUI restarted")
    again = next(c for c in worker.status()["comfyuis"] if c["index"] == victim["index"])
    assert again["restarts"] == restarts + 1 and again["pid"] != victim["pid"]
    release(signals, "y")
    assert y.done()["status"] == "succeeded"
    # And it serves again: three held at once, one on each ComfyUI.
    runs = [Run(worker, held(str(signals / f"after{i}"), color=20 + i)) for i in range(N)]
    wait_for(lambda: all(r.holding() for r in runs), what="three held after the restart")
    assert {slot_of(worker, r.id)["index"] for r in runs} == set(range(N))
    for i in range(N):
        release(signals, f"after{i}")
    assert all(r.done()["status"] == "succeeded" for r in runs)


def test_the_first_prompt_of_each_comfyui_reports_its_model_load(pool):
    worker, _, _ = pool
    loads = [p for p in worker.status()["phases"] if p["name"] == "first_prompt_model_load"]
    assert {p["comfyui"] for p in loads} == set(range(N)) and len(loads) == N  # once per ComfyUI, not per prompt
    assert all(p["seconds"] >= 0 and "loader" in p["detail"] for p in loads)
