"""Time from an input file's close to its blob being readable in the store (target: p95 < 1 s).

The real watcher (watchdog) and sync on a temp input folder; 200 files one after
another, on the folder store and on moto's S3 server. The baseline is the same
blob written straight to the store by the same code path, without the watcher.
Run: ./dev python bench/input_sync.py
"""

from __future__ import annotations

import hashlib
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from comfyui_sagemaker.core.fs.hashing import HashCache  # noqa: E402
from comfyui_sagemaker.core.input_sync import InputSync  # noqa: E402
from comfyui_sagemaker.core.inputs import put_inputs  # noqa: E402
from comfyui_sagemaker.local.folder_store import FolderStore  # noqa: E402
from comfyui_sagemaker.local.input_watcher import InputWatcher  # noqa: E402
from harness.moto import MotoServer  # noqa: E402
from harness.reaper import reaping  # noqa: E402

N = 200


def stats(samples: list[float]) -> str:
    s = sorted(samples)
    return f"median {statistics.median(s) * 1000:6.1f} ms  p95 {s[int(len(s) * 0.95) - 1] * 1000:6.1f} ms"


def run(label: str, store, work: Path) -> None:
    folder = work / f"input-{label.replace('/', '-')}"
    folder.mkdir()
    sync = InputSync(store, folder, HashCache(work / f"hc-{label.replace('/', '-')}.json"),
                     work / f"index-{label.replace('/', '-')}.json")
    watcher = InputWatcher(sync)
    watcher.start()
    latencies = []
    try:
        for i in range(N):
            data = f"{label} file {i} ".encode() * 2000
            key = f"blobs/sha256/{hashlib.sha256(data).hexdigest()}"
            with open(folder / f"f{i:03d}.png", "wb") as f:
                f.write(data)
            t0 = time.perf_counter()  # the close happens as the block ends, right before this
            while store.size(key) != len(data):
                time.sleep(0.002)
                if time.perf_counter() - t0 > 30:
                    raise SystemExit(f"{label}: file {i} never reached the store")
            latencies.append(time.perf_counter() - t0)
    finally:
        watcher.stop()
        sync.close()
    direct = []
    cache = HashCache(work / "direct.json")
    for i in range(50):
        data = f"{label} direct {i} ".encode() * 2000
        (folder / f"d{i}.bin").write_bytes(data)
        t0 = time.perf_counter()
        put_inputs(store, folder, [f"d{i}.bin"], cache)
        direct.append(time.perf_counter() - t0)
    print(f"{label:10s} close -> blob readable: {stats(latencies)} over {N} files (target p95 < 1000 ms)")
    print(f"{label:10s} baseline put_inputs:   {stats(direct)}")


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="bench-inputs-"))
    run("folder", FolderStore(work / "store"), work)
    moto = MotoServer().start()
    try:
        from comfyui_sagemaker.aws.s3_store import S3Store

        s3 = moto.client("s3")
        s3.create_bucket(Bucket="bench")
        run("s3/moto", S3Store("bench", "p", s3_client=s3), work)
    finally:
        moto.stop()


if __name__ == "__main__":
    with reaping("bench/input_sync.py"):
        main()
