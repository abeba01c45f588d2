"""Analysis time of a 2,000-node workflow on a real ComfyUI (the test pack and models installed).

Prints the median of 20 POST /sagemaker/analyze calls, next to the median of
ComfyUI's own GET /object_info on the same server as a baseline.
Run: ./dev python bench/analysis.py
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from harness.comfyui import ComfyUI  # noqa: E402
from harness.fixtures import install_test_models, install_test_pack  # noqa: E402
from harness.reaper import reaping  # noqa: E402


def median_ms(fn, n: int = 20) -> float:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000


def main() -> None:
    base = Path(tempfile.mkdtemp(prefix="bench-analysis-"))
    install_test_pack(base)
    install_test_models(base)
    server = ComfyUI(base).start()
    try:
        client = server.client()
        types = ["SMTestScale", "ImageInvert", "LoadImage", "CheckpointLoaderSimple", "KSampler", "NotInstalled"]
        values = {"SMTestScale": ["style.safetensors", 0.5], "LoadImage": ["x.png", "image"],
                  "CheckpointLoaderSimple": ["tiny.safetensors"], "KSampler": [1, "fixed", 20, 8, "euler", "normal", 1],
                  "NotInstalled": ["shared.safetensors"], "ImageInvert": []}
        nodes = [{"id": i, "type": types[i % len(types)], "widgets_values": values[types[i % len(types)]]}
                 for i in range(2000)]
        body = {"workflow": {"nodes": nodes, "links": []}}
        assert client.post("/sagemaker/analyze", json=body).ok
        analysis = median_ms(lambda: client.post("/sagemaker/analyze", json=body).raise_for_status())
        object_info = median_ms(lambda: client.get("/object_info").raise_for_status())
        print(f"analyze 2,000-node workflow: median {analysis:.1f} ms over 20 calls")
        print(f"baseline GET /object_info:   median {object_info:.1f} ms  (ratio {analysis / object_info:.2f})")
    finally:
        server.stop()


if __name__ == "__main__":
    with reaping("bench/analysis.py"):
        main()
