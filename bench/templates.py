"""Template publish and list latency on the folder store and on moto's S3 server.

Prints median and p95 over 200 publishes (target: folder median < 50 ms), the
same for a plain write of the same bytes (the baseline), and list latency with
1,000 templates. Run: ./dev python bench/templates.py
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from comfyui_sagemaker.core.templates import TemplateService  # noqa: E402
from harness.comfyui import free_port  # noqa: E402
from harness.reaper import reaping  # noqa: E402

N = 200
WORKFLOW = {"nodes": [{"id": i, "type": "EmptyImage", "widgets_values": [512, 512, 1, 0]} for i in range(30)]}
PROMPT = {str(i): {"class_type": "EmptyImage", "inputs": {"width": 512, "height": 512}} for i in range(30)}


def stats(samples: list[float]) -> str:
    s = sorted(samples)
    return f"median {statistics.median(s) * 1000:7.2f} ms  p95 {s[int(len(s) * 0.95) - 1] * 1000:7.2f} ms"


def timed(fn, n: int) -> list[float]:
    out = []
    for i in range(n):
        t0 = time.perf_counter()
        fn(i)
        out.append(time.perf_counter() - t0)
    return out


def bench(label: str, store, raw_write) -> None:
    svc = TemplateService(store, lambda name: False)
    run = uuid.uuid4().hex[:6]
    body = json.dumps({"workflow": WORKFLOW, "prompt": PROMPT}).encode()
    base = timed(lambda i: raw_write(f"raw/{run}{i}.json", body), N)
    pub = timed(lambda i: svc.create(f"P{run}{i}", WORKFLOW, PROMPT), N)
    print(f"{label:7s} publish       {stats(pub)}")
    ratio = statistics.median(pub) / statistics.median(base)
    print(f"{label:7s} plain write   {stats(base)}   ratio of medians {ratio:.2f}")
    for i in range(N, 1000):
        svc.create(f"P{run}{i}", WORKFLOW, PROMPT)
    cold = TemplateService(store, lambda name: False)  # a fresh process: nothing cached
    t0 = time.perf_counter()
    count = len(cold.list())
    print(f"{label:7s} list of {count} templates, first (reads all): {(time.perf_counter() - t0) * 1000:.0f} ms")
    lst = timed(lambda i: cold.list(), 20)
    print(f"{label:7s} list of {count} templates, later:  {stats(lst)}")


def main() -> None:
    from comfyui_sagemaker.local.folder_store import FolderStore

    root = Path(tempfile.mkdtemp(prefix="bench-templates-"))
    folder = FolderStore(root)

    def plain_write(key: str, data: bytes) -> None:
        path = root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())

    bench("folder", folder, plain_write)

    import logging

    import boto3
    from comfyui_sagemaker.aws.s3_store import S3Store
    from moto.server import ThreadedMotoServer

    port = free_port()
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        s3 = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
                          aws_access_key_id="bench", aws_secret_access_key="bench")
        s3.create_bucket(Bucket="bench")
        store = S3Store("bench", "p", s3_client=s3)
        bench("s3/moto", store, lambda key, data: s3.put_object(Bucket="bench", Key="p/" + key, Body=data))
    finally:
        server.stop()


if __name__ == "__main__":
    with reaping("bench/templates.py"):
        main()
