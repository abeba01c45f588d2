"""The gateway's cost and throughput.

(a) a prompt through the extension's executions route (POST /sagemaker/executions, its end seen on ComfyUI's
websocket) vs (b) the same prompt as a Comfy API v2 job through the gateway (POST /jobs, its end seen on the
job's event stream), on one local endpoint: median of 20 each, and the gateway's added time.
(c) requests per second of GET /jobs/{id} on one gateway process (8 clients, 5 s), against GET /health of
the same process (no store read) as the baseline.
Run: ./dev python bench/gateway.py
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from harness.comfyui import ComfyUI  # noqa: E402
from harness.envs import publish_environment  # noqa: E402
from harness.fixtures import install_test_pack  # noqa: E402
from harness.gateway import Gateway  # noqa: E402
from harness.reaper import reaping  # noqa: E402

N = 20
CLIENTS = 8
SECONDS = 5.0


def prompt(i: int) -> dict:
    return {"1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": i}},
            "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
            "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "bench"}}}


def ms(samples: list[float]) -> str:
    s = sorted(samples)
    return f"median {statistics.median(s) * 1000:7.1f} ms  p95 {s[int(len(s) * 0.95) - 1] * 1000:7.1f} ms"


def via_extension(client, environment: str, i: int) -> float:
    client_id = uuid.uuid4().hex
    ws = client.websocket(client_id)
    try:
        t0 = time.perf_counter()
        r = client.post("/sagemaker/executions", json={"prompt": prompt(i), "environment": environment,
                                                       "client_id": client_id})
        execution_id = r.json()["execution_id"]
        while True:
            event = json.loads(ws.recv())
            if event["type"] == "sagemaker.execution" and event["data"]["id"] == execution_id \
                    and event["data"]["state"] in ("succeeded", "failed", "cancelled"):
                if event["data"]["state"] != "succeeded":
                    raise SystemExit(f"run failed: {event['data']['error']}")
                return time.perf_counter() - t0
    finally:
        ws.close()


def via_gateway(gateway: Gateway, environment: str, i: int) -> float:
    base = f"{gateway.url}/sagemaker/v2/{environment}/api/v2"
    t0 = time.perf_counter()
    job = gateway.post(base[len(gateway.url):] + "/jobs", json={"workflow": prompt(i)}).json()
    with requests.get(f"{base}/jobs/{job['id']}/events", headers=gateway.headers(), stream=True, timeout=60) as r:
        last = None
        for line in r.iter_lines(decode_unicode=True):
            if line.startswith("data: "):
                last = json.loads(line[6:])
    if not last or last.get("status") != "succeeded":
        raise SystemExit(f"job failed: {gateway.get(base[len(gateway.url):] + '/jobs/' + job['id']).text}")
    return time.perf_counter() - t0


def rate(url: str, headers: dict) -> float:
    """Requests per second of GET `url` from CLIENTS threads for SECONDS."""
    counts = [0] * CLIENTS
    stop = time.perf_counter() + SECONDS

    def hammer(k: int) -> None:
        with requests.Session() as session:
            while time.perf_counter() < stop:
                r = session.get(url, headers=headers, timeout=30)
                if r.status_code != 200:
                    raise SystemExit(f"GET {url}: {r.status_code} {r.text[:200]}")
                counts[k] += 1

    threads = [threading.Thread(target=hammer, args=(k,)) for k in range(CLIENTS)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(counts) / (time.perf_counter() - t0)


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="bench-gateway-"))
    install_test_pack(work / "base")
    server = ComfyUI(work / "base").start()
    gateway = None
    try:
        client = server.client()
        _, env, _ = publish_environment(client, prompt(0), endpoint={"kind": "local"})
        while client.get(f"/sagemaker/endpoints/{env}").json().get("state") != "InService":
            time.sleep(0.1)
        gateway = Gateway(work, config_dir=server.user_dir / "__sagemaker").start()
        via_extension(client, env, 1)  # warm both paths
        via_gateway(gateway, env, 2)
        extension, through = [], []
        for i in range(N):  # interleaved: both see the same machine load
            extension.append(via_extension(client, env, 100 + i))
            through.append(via_gateway(gateway, env, 200 + i))
        added = (statistics.median(through) - statistics.median(extension)) * 1000
        print(f"(a) extension executions route: {ms(extension)}")
        print(f"(b) v2 job through the gateway:  {ms(through)}")
        print(f"    gateway added: median {added:+.1f} ms "
              f"(ratio {statistics.median(through) / statistics.median(extension):.2f})")
        job = gateway.post(f"/sagemaker/v2/{env}/api/v2/jobs", json={"workflow": prompt(3)}).json()
        job_url = f"{gateway.url}/sagemaker/v2/{env}/api/v2/jobs/{job['id']}"
        health = rate(f"{gateway.url}/health", {})
        jobs = rate(job_url, gateway.headers())
        print(f"(c) GET /jobs/{{id}} on one gateway: {jobs:7.0f} req/s ({CLIENTS} clients); "
              f"GET /health baseline {health:7.0f} req/s; ratio {jobs / health:.2f}")
        client.delete(f"/sagemaker/endpoints/{env}")
    finally:
        if gateway is not None:
            gateway.stop()
        server.stop()


if __name__ == "__main__":
    with reaping("bench/gateway.py"):
        main()
