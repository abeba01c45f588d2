"""The worker using the whole instance, and its cold start step by step.

Prints, each measured in this run against a baseline measured in the same run:
1. Model fetch: one blob from moto's S3 server (its own process) with the worker's ranged parallel GETs
   (16 MiB parts, 4 per vCPU), against plain boto3 `download_file` with its default settings, on the
   same bytes: median MB/s over 3 alternating runs, ratio (target >= 1.0). The worker's fetch also
   computes the blob's sha256 as it goes; `download_file` does not (its figure with a separate sha256
   pass, what the worker did before, is printed too). moto reads the whole object for every ranged GET,
   so fewer, larger ranges help there more than on S3: the worker's fetch with download_file's own 8 MiB
   parts is printed as well, the fair comparison of the client side.
2. Cold start, step by step: a worker with a cold cache on that S3 store (a pack, the model), each phase
   from its /status, and the first prompt's model load.
3. Throughput of N concurrent short prompts on N ComfyUIs against one ComfyUI (ratio; target
   >= 0.8 x min(N, cores)); N = the number of cores unless given. Each prompt is a chain of small image
   nodes: ComfyUI's own per-node work, one core's worth per ComfyUI, as a GPU's work would be.
Run: ./dev python bench/worker_pool.py [model_mb] [N]
"""

from __future__ import annotations

import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from comfyui_sagemaker.core.packing import make_archive  # noqa: E402
from comfyui_sagemaker.local.folder_store import FolderStore  # noqa: E402
from comfyui_sagemaker.worker.coldstart import describe  # noqa: E402
from comfyui_sagemaker.worker.fetch import DEFAULT_PART, MIB, RangedFetch, concurrency_for  # noqa: E402
from harness.comfyui import free_port  # noqa: E402
from harness.fixtures import FIXTURES, TEST_PACK  # noqa: E402
from harness.reaper import reaping  # noqa: E402
from harness.worker import WorkerProcess  # noqa: E402

BUCKET = "bench-bucket"
PREFIX = "store"
CHAIN = 60  # nodes per prompt


class MotoProcess:
    """moto's S3 server in a process of its own: its Python work does not share the client's GIL."""

    def __init__(self):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> MotoProcess:
        self.proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                requests.get(self.url + "/moto-api/", timeout=1)
                return self
            except requests.RequestException:
                time.sleep(0.1)
        raise RuntimeError("moto did not start")

    def env(self) -> dict[str, str]:
        return {"AWS_ENDPOINT_URL": self.url, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1"}

    def client(self, **config):
        import boto3
        from botocore.config import Config

        return boto3.client("s3", endpoint_url=self.url, region_name="us-east-1", aws_access_key_id="testing",
                            aws_secret_access_key="testing", config=Config(**config) if config else None)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


def put_blob(s3, path: Path) -> tuple[str, int]:
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    s3.upload_file(str(path), BUCKET, f"{PREFIX}/blobs/sha256/{digest}")
    return digest, path.stat().st_size


def median_rate(samples: list[float], size: int) -> float:
    return size / statistics.median(samples) / 1e6


def fetch_bench(moto: MotoProcess, work: Path, key: str, size: int) -> None:
    from boto3.s3.transfer import TransferConfig

    concurrency = concurrency_for()
    s3 = moto.client(max_pool_connections=concurrency + 2)
    plain = moto.client()  # download_file as most code calls it: a default client, default TransferConfig
    same = TransferConfig(multipart_chunksize=DEFAULT_PART, max_concurrency=concurrency)

    def download(client, dest: Path, config=None, sha: bool = False) -> None:
        client.download_file(BUCKET, key, str(dest), Config=config)
        if sha:
            hashlib.sha256(dest.read_bytes())

    ways = {"download_file (defaults)": lambda dest: download(plain, dest),
            "download_file + sha256": lambda dest: download(plain, dest, sha=True),
            "download_file, same sizes": lambda dest: download(s3, dest, same),
            "worker (sha256 included)": lambda dest: RangedFetch(s3, BUCKET, key, dest, DEFAULT_PART,
                                                                 concurrency).run()}
    runs: dict[str, list[float]] = {name: [] for name in ways}
    for _ in range(3):
        for name, way in ways.items():
            dest = work / f"fetch-{uuid.uuid4().hex}"
            t0 = time.perf_counter()
            way(dest)
            runs[name].append(time.perf_counter() - t0)
            assert dest.stat().st_size == size
            dest.unlink()
    rates = {name: median_rate(samples, size) for name, samples in runs.items()}
    print(f"model fetch, {size / 1e6:.0f} MB from moto's S3 server (median of 3 alternating runs):")
    for name, rate in rates.items():
        print(f"  {name:32s} {rate:8.1f} MB/s")
    worker = rates["worker (sha256 included)"]
    print(f"  worker ({concurrency} parallel ranged GETs of {DEFAULT_PART // MIB} MiB) vs download_file defaults "
          f"(8 MiB, 10 threads): ratio {worker / rates['download_file (defaults)']:.2f} (target >= 1.0); vs "
          f"download_file with the same sizes: {worker / rates['download_file, same sizes']:.2f} (moto reads the "
          "whole object for each range: there the part size decides, on S3 the parallelism does)")


def cold_start_bench(moto: MotoProcess, work: Path, uri: str) -> None:
    w = WorkerProcess(uri, work / "cold", {**moto.env(), "WORKER_REPORT": "store"}).start()
    try:
        status = w.wait_state(timeout=600)
        assert status["state"] == "ready", w.log()[-3000:]
        prompt = {"1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 1}},
                  "2": {"class_type": "SMTestScale", "inputs": {"image": ["1", 0], "lora_name": "big.safetensors",
                                                                  "factor": 0.5}},
                  "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "cold"}}}
        r = w.invoke({"execution_id": uuid.uuid4().hex, "prompt": prompt}).json()
        assert r["status"] == "succeeded", r
        status = w.status()
        print(f"cold start, step by step (worker ready after {status['ready_after_s']:.2f} s, S3 store on moto):")
        for phase in status["phases"]:
            print(f"  {phase['start_s']:7.2f} s  {describe(phase)}")
        s3 = moto.client()
        reports = s3.list_objects_v2(Bucket=BUCKET, Prefix=f"{PREFIX}/workers/")["KeyCount"]
        print(f"  (the same report is in the store for the sidebar: {reports} object under {PREFIX}/workers/)")
    finally:
        w.stop()


def chain_prompt(seed: int) -> dict:
    prompt = {"0": {"class_type": "EmptyImage", "inputs": {"width": 16, "height": 16, "batch_size": 1,
                                                           "color": seed % 0xFFFFFF}}}
    for i in range(1, CHAIN + 1):
        prompt[str(i)] = {"class_type": "ImageInvert", "inputs": {"image": [str(i - 1), 0]}}
    prompt["out"] = {"class_type": "PreviewImage", "inputs": {"images": [str(CHAIN), 0]}}
    return prompt


def throughput(w: WorkerProcess, clients: int, per_client: int, seed: int) -> float:
    errors: list[str] = []

    def client(c: int) -> None:
        for i in range(per_client):
            r = w.invoke({"execution_id": uuid.uuid4().hex, "prompt": chain_prompt(seed + c * 1000 + i)}).json()
            if r.get("status") != "succeeded":
                errors.append(json.dumps(r)[:300])

    threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    assert not errors, errors[:3]
    return clients * per_client / elapsed


def pool_bench(work: Path, n: int) -> None:
    """Both workers run side by side and are measured in alternating rounds: a machine that is busy with
    something else (other tests) slows both alike."""
    store = FolderStore(work / "local-store")
    key = "environments/bench/versions/v000001.json"
    store.put(key, json.dumps({"name": "bench", "version": 1, "custom_nodes": [], "models": [],
                               "python_packages": []}).encode())
    uri = f"{store.root.resolve().as_uri()}/{key}"
    cores = os.cpu_count() or 1
    workers = {count: WorkerProcess(uri, work / f"pool{count}", {"WORKER_COMFYUI_COUNT": str(count)}).start()
               for count in (1, n)}
    try:
        for w in workers.values():
            assert w.wait_state(timeout=300)["state"] == "ready", w.log()[-3000:]
            deadline = time.monotonic() + 300
            while not all(c["state"] == "ready" for c in w.status()["comfyuis"]):
                assert time.monotonic() < deadline, "ComfyUIs not ready"
                time.sleep(0.2)
            throughput(w, n, 2, seed=7)  # warm-up: every ComfyUI's first prompt
        samples: dict[int, list[float]] = {1: [], n: []}
        for k in range(5):
            for count, w in workers.items():
                samples[count].append(throughput(w, n, 6, seed=1000 * (k + 1) + count))
        rates = {count: statistics.median(values) for count, values in samples.items()}
    finally:
        for w in workers.values():
            w.stop()
    target = 0.8 * min(n, cores)
    load = os.getloadavg()[0]
    print(f"{n} concurrent short prompts ({CHAIN + 2} nodes each, async-style with progress to the store), {cores} "
          f"cores (load average {load:.1f} at the end): 1 ComfyUI {rates[1]:.2f} prompts/s, {n} ComfyUIs "
          f"{rates[n]:.2f} prompts/s (medians of 5 alternating rounds), ratio {rates[n] / rates[1]:.2f} "
          f"(target >= 0.8 x min({n}, {cores}) = {target:.1f})")


def main() -> None:
    model_mb = int(sys.argv[1]) if len(sys.argv) > 1 else 256
    n = int(sys.argv[2]) if len(sys.argv) > 2 else (os.cpu_count() or 1)
    work = Path(tempfile.mkdtemp(prefix="bench-pool-"))
    moto = MotoProcess().start()
    try:
        s3 = moto.client()
        s3.create_bucket(Bucket=BUCKET)
        model = work / "big.safetensors"
        with open(model, "wb") as f:
            for _ in range(model_mb):
                f.write(os.urandom(MIB))
        model_sha, model_size = put_blob(s3, model)
        (work / "archive").mkdir()
        archive, pack_sha, pack_size = make_archive(str(FIXTURES / TEST_PACK), str(work / "archive"))
        s3.upload_file(archive, BUCKET, f"{PREFIX}/blobs/sha256/{pack_sha}")
        manifest = {"name": "bench", "version": 1, "python_packages": [],
                    "custom_nodes": [{"folder": TEST_PACK, "archive": {"sha256": pack_sha, "size": pack_size}}],
                    "models": [{"folder": "loras", "name": "big.safetensors", "size": model_size,
                                "sha256": model_sha}]}
        key = f"{PREFIX}/environments/bench/versions/v000001.json"
        s3.put_object(Bucket=BUCKET, Key=key, Body=json.dumps(manifest).encode())
        model.unlink()

        fetch_bench(moto, work, f"{PREFIX}/blobs/sha256/{model_sha}", model_size)
        cold_start_bench(moto, work, f"s3://{BUCKET}/{key}")
    finally:
        moto.stop()
    pool_bench(work, n)


if __name__ == "__main__":
    with reaping("bench/worker_pool.py"):
        main()
