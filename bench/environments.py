"""Environment publish on the folder store, against `cp -r --reflink=never` of the same files.

Prints: first publish of 2 GB of model files vs the copy (ratio; target <= 1.5),
re-publish with nothing changed (target < 2 s, 0 blob bytes written), and a
publish after changing one 100 MB file (about 100 MB written).
Run: ./dev python bench/environments.py [total_mb]
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from comfyui_sagemaker.core import model_files, snapshot
from comfyui_sagemaker.core.environments import EnvironmentService
from comfyui_sagemaker.core.fs.hashing import HashCache
from comfyui_sagemaker.core.tasks import TaskManager
from comfyui_sagemaker.core.templates import TemplateService
from comfyui_sagemaker.local.folder_store import FolderStore


class Host:
    def __init__(self, root: Path):
        self.root = root

    def folders(self) -> dict:
        return {"checkpoints": ([str(self.root / "models" / "checkpoints")], [".safetensors"])}

    def snapshot(self) -> dict:
        return snapshot.take(snapshot.SnapshotFacts("bench", (str(self.root / "custom_nodes"),), self.folders(), ""))

    def model_index(self):
        return model_files.scan(self.folders())

    def node_types_by_pack(self):
        return {"pack_a": ["PackANode"]}

    def analyze(self, workflow):
        raise AssertionError("the bench publishes with include=all: nothing is analyzed")


def publish(svc: EnvironmentService) -> tuple[float, dict]:
    t0 = time.perf_counter()
    task = svc.publish("Bench", include="all", endpoint={"kind": "local"})
    task = svc.tasks.wait(task.id, 3600)
    if task.state != "succeeded":
        raise SystemExit(f"publish {task.state}: {task.error}")
    return time.perf_counter() - t0, task.result


def main() -> None:
    total_mb = int(sys.argv[1]) if len(sys.argv) > 1 else 2048
    work = Path(tempfile.mkdtemp(prefix="bench-env-"))
    models = work / "comfy" / "models" / "checkpoints"
    models.mkdir(parents=True)
    (work / "comfy" / "custom_nodes").mkdir()
    per_file = 100
    for i in range(total_mb // per_file):
        with open(models / f"m{i:02d}.safetensors", "wb") as f:
            for _ in range(per_file):
                f.write(os.urandom(1 << 20))
    subprocess.run(["sync"], check=True)
    try:
        t0 = time.perf_counter()
        subprocess.run(["cp", "-r", "--reflink=never", str(models), str(work / "copy")], check=True)
        copy_s = time.perf_counter() - t0
        shutil.rmtree(work / "copy")

        store = FolderStore(work / "store")
        svc = EnvironmentService(store, TemplateService(store, lambda n: False), Host(work / "comfy"), TaskManager(),
                                 HashCache(work / "hash-cache.json"), 4)
        first_s, first = publish(svc)
        print(f"first publish of {total_mb} MB: {first_s:.2f} s; cp -r --reflink=never: {copy_s:.2f} s; "
              f"ratio {first_s / copy_s:.2f} (target <= 1.5)")
        again_s, again = publish(svc)
        print(f"re-publish, nothing changed: {again_s:.3f} s (target < 2 s), "
              f"{again['bytes_written']} blob bytes written (target 0)")
        with open(models / "m00.safetensors", "r+b") as f:
            f.write(os.urandom(1 << 20))
        changed_s, changed = publish(svc)
        print(f"publish after changing one {per_file} MB file: {changed_s:.2f} s, "
              f"{changed['bytes_written'] / 1e6:.1f} MB written (expected about {per_file * 1.048576:.0f} MB)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
