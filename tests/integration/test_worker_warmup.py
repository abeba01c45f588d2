"""Warm before ready, on real processes (issue 28 point 8, issue 35 point 3): an environment published from
the session's ComfyUI with a warm-up (a template's prompt: EmptyImage -> the test pack's SMTestWait ->
SaveImage, no model files), served by a real worker with two ComfyUIs. The warm-up is held in SMTestWait
until the test writes its signal file, so the order is seen, never timed: /ping answers 503 while both
ComfyUIs warm, 200 only once each ComfyUI ran the warm-up to its end; its output files are gone."""

from __future__ import annotations

import pytest
from harness.envs import manifest_uri, unique, wait_task
from harness.waiting import wait_for
from harness.worker import WorkerProcess

pytestmark = pytest.mark.comfyui


def warm_prompt(signal: str) -> dict:
    return {"1": {"class_type": "EmptyImage", "inputs": {"width": 2, "height": 2, "batch_size": 1, "color": 3}},
            "2": {"class_type": "SMTestWait", "inputs": {"image": ["1", 0], "signal": signal, "timeout": 600}},
            "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "warmup"}}}


def test_each_comfyui_runs_the_warm_up_before_ping_answers_200(comfyui, tmp_path):
    client = comfyui.client()
    signal = tmp_path / "warm-up may end"
    template, env = unique("W"), unique("E")
    prompt = warm_prompt(str(signal))
    r = client.post("/sagemaker/templates", json={"name": template, "workflow": prompt, "prompt": prompt})
    assert r.status_code == 201, r.text
    r = client.post("/sagemaker/environments", json={"name": env, "templates": [template], "warmup": template})
    assert r.status_code == 202, r.text
    task = wait_task(client, r.json()["task"]["id"])
    assert task["state"] == "succeeded", task
    assert client.get(f"/sagemaker/environments/{env}").json()["warmup"]["template"] == template

    worker = WorkerProcess(manifest_uri(comfyui, env, task["result"]["version"]), tmp_path / "worker",
                           extra_env={"WORKER_COMFYUI_COUNT": "2"}).start()
    try:
        status = wait_for(lambda: (s := _status(worker)) and [c["state"] for c in s["comfyuis"]] == ["warming"] * 2
                          and s, 300, "both ComfyUIs warming")
        assert worker.ping() == 503 and status["state"] == "starting"  # answered while the warm-ups are held
        running = [p for p in status["phases"] if p["name"] == "warmup"]
        assert sorted(p["comfyui"] for p in running) == [0, 1] and {p["state"] for p in running} == {"running"}
        signal.write_text("go")
        status = worker.wait_state()
        assert status["state"] == "ready", worker.log()[-3000:]
        assert worker.ping() == 200
        warmups = [p for p in status["phases"] if p["name"] == "warmup"]
        assert sorted(p["comfyui"] for p in warmups) == [0, 1], status["phases"]
        assert all(p["state"] == "done" and p["template"] == template for p in warmups), warmups
        base = worker.root / "base"
        for i, log in enumerate(("comfyui.log", "comfyui-1.log")):
            assert "Prompt executed" in (base / log).read_text(errors="replace"), f"ComfyUI {i} never ran it"
            assert not list((base / "comfyui" / str(i) / "output").glob("warmup*")), "its outputs were kept"
    finally:
        worker.stop()


def _status(worker: WorkerProcess) -> dict | None:
    try:
        return worker.status()
    except Exception:  # not listening yet
        return None
