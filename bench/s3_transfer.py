"""The S3 store's transfers against moto's S3 server.

Prints: upload of 1 GB of blobs through the store (parallel multipart, checksums)
vs one boto3 `upload_file` per file with default settings (ratio of throughput;
target >= 1.0), and the number of blob PUT requests when an unchanged
environment is published again (target 0).
Run: ./dev python bench/s3_transfer.py [total_mb]
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from harness.reaper import reaping  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from comfyui_sagemaker.aws.s3_store import S3Store  # noqa: E402
from comfyui_sagemaker.core.environments import EnvironmentService  # noqa: E402
from comfyui_sagemaker.core.fs.hashing import HashCache  # noqa: E402
from comfyui_sagemaker.core.tasks import TaskManager  # noqa: E402
from comfyui_sagemaker.core.templates import TemplateService  # noqa: E402
from environments import Host  # noqa: E402
from harness.moto import MotoServer  # noqa: E402


def main() -> None:
    total_mb = int(sys.argv[1]) if len(sys.argv) > 1 else 1024
    work = Path(tempfile.mkdtemp(prefix="bench-s3-"))
    models = work / "comfy" / "models" / "checkpoints"
    models.mkdir(parents=True)
    (work / "comfy" / "custom_nodes").mkdir()
    files = []
    for i in range(8):
        path = models / f"m{i}.safetensors"
        with open(path, "wb") as f:
            for _ in range(total_mb // 8):
                f.write(os.urandom(1 << 20))
        files.append(path)
    moto = MotoServer().start()
    try:
        s3 = moto.client("s3")
        s3.create_bucket(Bucket="bench")
        t0 = time.perf_counter()
        for path in files:
            s3.upload_file(str(path), "bench", f"baseline/{path.name}")
        baseline = time.perf_counter() - t0
        store = S3Store("bench", "store", s3_client=s3)
        t0 = time.perf_counter()
        for path in files:
            store.put_file(f"blobs/sha256/{path.name}", str(path))
        ours = time.perf_counter() - t0
        print(f"upload {total_mb} MB in 8 files: store {ours:.2f} s vs upload_file defaults {baseline:.2f} s, "
              f"throughput ratio {baseline / ours:.2f} (target >= 1.0)")

        puts = []
        for op in ("PutObject", "UploadPart", "CreateMultipartUpload"):
            s3.meta.events.register(f"before-parameter-build.s3.{op}", lambda params, op=op, **kw: puts.append(
                (op, params.get("Key", ""))))
        svc = EnvironmentService(store, TemplateService(store, lambda n: False), Host(work / "comfy"), TaskManager(),
                                 HashCache(work / "hc.json"), 4)
        for attempt in ("first", "again"):
            puts.clear()
            task = svc.tasks.wait(svc.publish("Bench", include="all").id, 3600)
            assert task.state == "succeeded", task.error
            blob_puts = [p for p in puts if "/blobs/" in p[1]]
            print(f"publish ({attempt}): {len(blob_puts)} blob PUT requests, {len(puts) - len(blob_puts)} other "
                  f"(target for the re-publish: 0 blob PUTs)")
    finally:
        moto.stop()


if __name__ == "__main__":
    with reaping("bench/s3_transfer.py"):
        main()
