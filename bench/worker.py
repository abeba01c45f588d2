"""The worker against plain ComfyUI on this machine.

Prints: worker start to /ping 200 with a warm cache vs a plain ComfyUI start
to /system_stats (ratio; target <= 1.3), and the per-invocation overhead:
the same prompt through /invocations vs posted straight to that worker's
ComfyUI (median ms over 30; target < 50 ms).
Run: ./dev python bench/worker.py
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psutil
import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from comfyui_sagemaker.core.worker_contract import INNER_SECRET_ENV, INNER_SECRET_HEADER  # noqa: E402
from harness.comfyui import Client, ComfyUI  # noqa: E402
from harness.envs import publish_environment  # noqa: E402
from harness.fixtures import install_test_models, install_test_pack  # noqa: E402
from harness.reaper import reaping  # noqa: E402
from harness.worker import WorkerProcess  # noqa: E402


def prompt(i: int) -> dict:
    return {"1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": i}},
            "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
            "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "bench"}}}


def timed_start(start) -> float:
    t0 = time.perf_counter()
    start()
    return time.perf_counter() - t0


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="bench-worker-"))
    install_test_pack(work / "designer")
    install_test_models(work / "designer")
    started: list = []  # every ComfyUI and worker, stopped in `finally` whatever happens

    def track(process):
        started.append(process)
        return process

    designer = track(ComfyUI(work / "designer")).start()
    try:
        _, env, job = publish_environment(designer.client(), {
            "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
            "2": {"class_type": "SMTestScale", "inputs": {"image": ["1", 0], "lora_name": "style.safetensors",
                                                            "factor": 0.5}}})
        store = (designer.user_dir / "__sagemaker" / "store").resolve().as_uri()
        uri = f"{store}/environments/{env.lower()}/versions/v{job['result']['version']:06d}.json"

        warm = track(WorkerProcess(uri, work / "w")).start()
        warm.wait_state()  # fills the cache
        warm.stop()
        worker_starts, plain_starts = [], []
        for i in range(3):
            w = track(WorkerProcess(uri, work / "w"))

            def start_worker(w=w) -> None:
                w.start()
                while True:
                    try:
                        if w.ping() == 200:
                            return
                    except requests.RequestException:
                        pass
                    time.sleep(0.05)

            worker_starts.append(timed_start(start_worker))
            if i < 2:
                w.stop()
            plain = track(ComfyUI(work / f"plain{i}"))
            plain_starts.append(timed_start(plain.start))
            plain.stop()
        a, b = statistics.median(worker_starts), statistics.median(plain_starts)
        print(f"start to ready, warm cache: worker {a:.2f} s vs plain ComfyUI {b:.2f} s, ratio {a / b:.2f} "
              "(target <= 1.3)")

        # Straight to the worker's ComfyUI, with the secret its worker gave it (readable by the same user).
        child = next(c for c in psutil.Process(w.proc.pid).children() if "main.py" in " ".join(c.cmdline()))
        cmd = child.cmdline()
        direct = Client(f"http://127.0.0.1:{cmd[cmd.index('--port') + 1]}",
                        headers={INNER_SECRET_HEADER: child.environ()[INNER_SECRET_ENV]})
        via, straight = [], []
        for i in range(30):
            t0 = time.perf_counter()
            r = w.invoke({"execution_id": uuid.uuid4().hex, "prompt": prompt(1000 + i)})
            assert r.json()["status"] == "succeeded", r.text
            via.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            direct.run(prompt(5000 + i))
            straight.append(time.perf_counter() - t0)
        mv, ms = statistics.median(via) * 1000, statistics.median(straight) * 1000
        print(f"per invocation: /invocations median {mv:.1f} ms vs straight to ComfyUI {ms:.1f} ms, "
              f"overhead {mv - ms:+.1f} ms (target < 50 ms)")
    finally:
        for process in reversed(started):
            process.stop()


if __name__ == "__main__":
    with reaping("bench/worker.py"):
        main()
