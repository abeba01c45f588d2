"""Added time of Prompt on AWS.

(a) a no-model workflow run locally in ComfyUI vs (b) the same through Prompt on
AWS on a local endpoint (median and p95 of 20; target: median added < 150 ms);
then (c) through the SageMaker runtime emulator, real-time and async (the
emulator's async polling), vs (b), median of 20.
Run: ./dev python bench/prompt_on_aws.py [--record]   (--record: the medians and their
ratios to the baseline of the same run to bench/figures.json, where bench/guard.py holds
later runs to them)
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.append(str(Path(__file__).resolve().parent))  # figures.py, when imported by guard.py
from comfyui_sagemaker.aws import naming  # noqa: E402
from figures import Figure, record  # noqa: E402
from harness.comfyui import ComfyUI  # noqa: E402
from harness.envs import publish_environment, unique, wait_task  # noqa: E402
from harness.fixtures import install_test_models, install_test_pack  # noqa: E402
from harness.moto import MotoServer  # noqa: E402
from harness.reaper import reaping  # noqa: E402
from harness.runtime_emulator import RuntimeEmulator  # noqa: E402
from harness.worker import WorkerProcess  # noqa: E402

N = 20
QUICK_N = 5
# The guard's margin on each ratio (bench/guard.py, the CLI only). These ratios are not steady on 2 cores: the
# baseline is a run of 7 to 30 ms on a quiet machine, mostly scheduling, and the phases are minutes apart.
# Measured here: the local endpoint's 1.75 to 4.52, real-time's 2.27 to 5.26, async's 4.3 to 19.7 (its time is
# mostly the watch's polls, the clock's time and not the machine's). They fall as the load rises (a busy check
# passes, a busy recording fails a quiet check: record them on a quiet machine), and the margins are the spread:
# they catch a path that doubles (the real-time regression was 2.3x its added time), not less.
MARGIN = 1.0
MARGINS = {"async": 1.5}
SPREADS = {"local_endpoint": "1.75 to 4.52", "realtime": "2.27 to 5.26", "async": "4.3 to 19.7"}


def prompt(i: int) -> dict:
    return {"1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": i}},
            "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
            "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "bench"}}}


def stats(samples: list[float]) -> str:
    s = sorted(samples)
    return f"median {statistics.median(s) * 1000:7.1f} ms  p95 {s[int(len(s) * 0.95) - 1] * 1000:7.1f} ms"


def remote(client, environment: str, i: int) -> float:
    client_id = uuid.uuid4().hex
    ws = client.websocket(client_id)
    try:
        t0 = time.perf_counter()
        r = client.post("/sagemaker/executions", json={"prompt": prompt(i), "environment": environment,
                                                       "client_id": client_id})
        prompt_id = r.json()["prompt_id"]
        while True:
            event = json.loads(ws.recv())
            if event["type"] == "execution_success" and event["data"].get("prompt_id") == prompt_id:
                return time.perf_counter() - t0
            if event["type"] == "sagemaker.execution" and event["data"]["id"] == r.json()["execution_id"] \
                    and event["data"]["state"] == "failed":
                raise SystemExit(f"remote run failed: {event['data']['error']}")
    finally:
        ws.close()


def wait_in_service(client, env: str) -> None:
    while client.get(f"/sagemaker/endpoints/{env}").json().get("state") != "InService":
        time.sleep(0.1)


PATHS = {"local_endpoint": "Prompt on AWS, local endpoint", "realtime": "SageMaker real-time (emulator)",
         "async": "SageMaker async (emulator)"}


def ratio(path: str, samples: list[float], baseline: list[float], against: str) -> dict[str, Figure]:
    median, base = statistics.median(samples), statistics.median(baseline)
    why = SPREADS[path] + " in five runs at load 1 to 12; falls as the load rises: record it on a quiet machine"
    return {f"{path}.ratio": Figure(round(median / base, 3), "ratio", "x", f"{PATHS[path]}: run time, median",
                                    baseline=against, margin=MARGINS.get(path, MARGIN), why=why),
            f"{path}.added_ms": Figure(round((median - base) * 1000, 1), "shown", "ms",
                                       f"{PATHS[path]}: added time", baseline=against,
                                       why="absolute: not compared")}


def local_endpoint_part(work: Path, n: int, figures: dict[str, Figure]) -> list[float]:
    install_test_pack(work / "base")
    server = ComfyUI(work / "base").start()
    try:
        client = server.client()
        _, env, _ = publish_environment(client, prompt(0), endpoint={"kind": "local"})
        wait_in_service(client, env)
        remote(client, env, 1)  # warm both ComfyUIs
        client.run(prompt(2))
        local, via = [], []
        for i in range(n):
            t0 = time.perf_counter()
            client.run(prompt(100 + i))
            local.append(time.perf_counter() - t0)
            via.append(remote(client, env, 200 + i))
        print(f"(a) local ComfyUI:              {stats(local)}")
        print(f"(b) Prompt on AWS, local endpoint: {stats(via)}")
        print(f"    added: median {(statistics.median(via) - statistics.median(local)) * 1000:+.1f} ms "
              "(target < 150 ms)")
        figures.update(ratio("local_endpoint", via, local, "the same workflow run locally in ComfyUI"))
        client.delete(f"/sagemaker/endpoints/{env}")
        return via
    finally:
        server.stop()


def emulator_part(work: Path, baseline: list[float], n: int, figures: dict[str, Figure]) -> None:
    moto = MotoServer().start()
    s3, sm = moto.client("s3"), moto.client("sagemaker")
    s3.create_bucket(Bucket="bench")
    emulator = RuntimeEmulator(sm, s3).start()
    install_test_pack(work / "s3base")
    install_test_models(work / "s3base")
    env_vars = {**moto.env(), "AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME": emulator.url,
                "COMFYUI_SAGEMAKER_STORE": "s3", "COMFYUI_SAGEMAKER_S3_BUCKET": "bench",
                "COMFYUI_SAGEMAKER_S3_PREFIX": "p", "COMFYUI_SAGEMAKER_REGION": "us-east-1",
                "COMFYUI_SAGEMAKER_SAGEMAKER_ROLE_ARN": "arn:aws:iam::123456789012:role/Bench",
                "COMFYUI_SAGEMAKER_WORKER_IMAGE_URI": "123456789012.dkr.ecr.us-east-1.amazonaws.com/w:1"}
    server = ComfyUI(work / "s3base", env=env_vars).start()
    workers = []
    try:
        client = server.client()
        t = unique("T")
        client.post("/sagemaker/templates", json={"name": t, "workflow": prompt(0), "prompt": prompt(0)})
        for mode in ("realtime", "async"):
            env = unique("E")
            r = client.post("/sagemaker/environments", json={"name": env, "templates": [t], "endpoint": {
                "kind": "sagemaker", "instance_type": "ml.g4dn.xlarge", "initial_count": 1, "mode": mode}})
            wait_task(client, r.json()["task"]["id"])
            wait_in_service(client, env)
            worker = WorkerProcess(f"s3://bench/p/environments/{env.lower()}/versions/v000001.json",
                                   work / f"w-{mode}", moto.env()).start()
            workers.append(worker)
            worker.wait_state()
            emulator.workers[naming.endpoint_name(env, "s3://bench/p")] = worker.url
            remote(client, env, 1)
            samples = [remote(client, env, 300 + i) for i in range(n)]
            added = (statistics.median(samples) - statistics.median(baseline)) * 1000
            print(f"(c) SageMaker {mode:8s} via emulator: {stats(samples)}; vs local endpoint {added:+.1f} ms")
            figures.update(ratio(mode, samples, baseline, "the same workflow on a local endpoint"))
    finally:
        for w in workers:
            w.stop()
        server.stop()
        emulator.stop()
        moto.stop()


def measure(quick: bool) -> dict[str, Figure]:
    """Median of 20 runs per path (quick: of 5); each path's ratio to its baseline in this run."""
    n = QUICK_N if quick else N
    work = Path(tempfile.mkdtemp(prefix="bench-poa-"))
    figures: dict[str, Figure] = {}
    baseline = local_endpoint_part(work, n, figures)
    emulator_part(work, baseline, n, figures)
    return figures


def main() -> None:
    figures = measure(quick=False)
    if "--record" in sys.argv:
        record("prompt_on_aws", figures)


if __name__ == "__main__":
    with reaping("bench/prompt_on_aws.py"):
        main()
