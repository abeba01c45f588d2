"""A team's store grown large: start-up, the template list and the execution lists (target: <= 2x).

One moto S3 server, two buckets: a small store (10 templates, 20 executions) and a large one
(1,000 templates, 10,010 executions, ~1% still running), filled through the services' own code
without ComfyUI. A real ComfyUI on each measures start-up to /system_stats (median of 3 starts,
small and large alternating) and the median of 20 calls of each list; the small store is the
baseline of the large one's ratio. moto's own LIST of 10 keys in each bucket is printed beside
them: moto scans a whole bucket to list a prefix (real S3 does not), so that part of a ratio is
moto's; the last column takes it out (the calls' LIST requests times moto's extra per LIST), and
the verdict is on it. Run: ./dev python bench/team.py
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from comfyui_sagemaker.aws.s3_store import S3Store  # noqa: E402
from comfyui_sagemaker.core.execution_records import ExecutionRecords  # noqa: E402
from comfyui_sagemaker.core.executions import new_id  # noqa: E402
from comfyui_sagemaker.core.identity import Owner  # noqa: E402
from comfyui_sagemaker.core.templates import TemplateService  # noqa: E402
from harness.comfyui import ComfyUI  # noqa: E402
from harness.moto import MotoServer  # noqa: E402
from harness.reaper import reaping  # noqa: E402

STARTS = 3
CALLS = 20
TARGET = 2.0
PREFIX = "team"
SIZES = {"small": (10, 10), "large": (1000, 10_000)}  # templates, executions
OWNERS = [Owner(c * 12, f"box {c}") for c in "abcd"]  # other ComfyUIs: never this one's runs to fail
WORKFLOW = {"nodes": [{"id": 1, "type": "EmptyImage", "widgets_values": [512, 512, 1, 0]}]}
PROMPT = {"1": {"class_type": "EmptyImage", "inputs": {"width": 512, "height": 512, "batch_size": 1, "color": 0}}}
CALLS_MEASURED = {
    "GET /templates": "/sagemaker/templates",
    "GET /executions?state=running": "/sagemaker/executions?state=running&owner=all",
    "GET /executions?limit=10": "/sagemaker/executions?owner=all&limit=10",
    # one owner's runs in one state: its own state folder (the owner is one of the other ComfyUIs, as cheap
    # as this one's own)
    "GET /executions?state=succeeded&owner=": f"/sagemaker/executions?state=succeeded&owner={OWNERS[0].key}",
}


# LIST requests each call makes (the templates list reads one index object).
LISTS = {"GET /templates": 0, "GET /executions?state=running": 1, "GET /executions?limit=10": 1,
         "GET /executions?state=succeeded&owner=": 1}


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def fill(store: S3Store, templates: int, executions: int) -> int:
    """Templates one by one (each updates the shared index by compare-and-swap); executions from a
    pool. Returns how many are left running."""
    svc = TemplateService(store, lambda name: False)
    for i in range(templates):
        svc.create(f"T{i:04d}", WORKFLOW, PROMPT)
    records = ExecutionRecords(store)
    records.index_by_owner()  # a new store: nothing to index, so owner-state lists are complete from the start
    # ~1% in flight, and at least 10 (a full page of running runs in the small store too: equal pages)
    running_every = max(1, executions // max(10, executions // 100))

    def one(i: int) -> bool:
        owner = OWNERS[i % len(OWNERS)] if i < executions else OWNERS[0]
        running = i < executions and i % running_every == running_every - 1
        state = "running" if running else ("failed" if i < executions and i % 7 == 0 else "succeeded")
        record = {"id": new_id(owner.instance), "prompt_id": f"p{i}", "template": f"T{i % templates:04d}",
                  "environment": "E1", "endpoint": "E1", "owner": owner.to_json(), "client_id": None,
                  "state": state, "created_at": "x", "outputs": {}, "error": None}
        records.create(record)
        if not running:
            records.ended(record)
        return running

    # and 10 more that succeeded, of one owner: a full page of one owner's succeeded runs in the small store too
    with ThreadPoolExecutor(max_workers=8) as pool:
        return sum(pool.map(one, range(executions + 10)))


def moto_list(s3, bucket: str) -> list[float]:
    out = []
    for _ in range(CALLS):
        t0 = time.perf_counter()
        s3.list_objects_v2(Bucket=bucket, Prefix=f"{PREFIX}/executions/index/all/", Delimiter="/", MaxKeys=10)
        out.append(time.perf_counter() - t0)
    return out


def start(base: Path, env: dict[str, str], bucket: str) -> tuple[ComfyUI, float]:
    server = ComfyUI(base, env=env)
    t0 = time.perf_counter()
    server.start()
    took = time.perf_counter() - t0
    store = server.client().get("/sagemaker/health").json().get("store")
    if store != {"kind": "s3", "bucket": bucket, "prefix": PREFIX}:
        server.stop()
        raise SystemExit(f"the extension is not on the S3 store ({store}); see {server.log_path}")
    return server, took


def calls(server: ComfyUI, templates: int, running: int) -> dict[str, list[float]]:
    client = server.client()
    expected = {"GET /templates": ("templates", templates), "GET /executions?state=running": ("executions",
                min(10, running)), "GET /executions?limit=10": ("executions", 10),
                "GET /executions?state=succeeded&owner=": ("executions", 10)}
    out: dict[str, list[float]] = {}
    for label, path in CALLS_MEASURED.items():
        field, count = expected[label]
        got = client.get(path)  # once unmeasured: the first call builds the services
        if not got.ok or len(got.json()[field]) != count:
            raise SystemExit(f"{label}: {got.status_code}, expected {count} {field}: {got.text[:300]}")
        out[label] = []
        for _ in range(CALLS):
            t0 = time.perf_counter()
            client.get(path).raise_for_status()
            out[label].append(time.perf_counter() - t0)
    return out


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="bench-team-"))
    moto = MotoServer().start()
    servers: list[ComfyUI] = []
    try:
        s3 = moto.client("s3")
        running: dict[str, int] = {}
        for size, (templates, executions) in SIZES.items():
            s3.create_bucket(Bucket=size)
            t0 = time.perf_counter()
            running[size] = fill(S3Store(size, PREFIX, s3_client=s3), templates, executions)
            print(f"{size}: filled {templates} templates, {executions} executions ({running[size]} running) "
                  f"in {time.perf_counter() - t0:.1f} s", flush=True)
        moto_lists = {size: moto_list(s3, size) for size in SIZES}

        starts: dict[str, list[float]] = {size: [] for size in SIZES}
        measured: dict[str, dict[str, list[float]]] = {}
        for n in range(STARTS):
            for size, (templates, _) in SIZES.items():
                env = {**moto.env(), "COMFYUI_SAGEMAKER_STORE": "s3", "COMFYUI_SAGEMAKER_S3_BUCKET": size,
                       "COMFYUI_SAGEMAKER_S3_PREFIX": PREFIX, "COMFYUI_SAGEMAKER_REGION": "us-east-1"}
                server, took = start(work / size, env, size)
                servers.append(server)
                starts[size].append(took)
                if n == STARTS - 1:
                    measured[size] = calls(server, templates, running[size])
                server.stop()
                servers.remove(server)

        # What moto adds to one LIST in the large bucket (it scans the whole bucket; S3 does not).
        moto_extra = statistics.median(moto_lists["large"]) - statistics.median(moto_lists["small"])
        print(f"\n{'':46s} {'small':>9s} {'large':>9s}  ratio  without moto's scan (target <= {TARGET:.0f}x)")
        rows = [(f"start-up, median of {STARTS}", starts["small"], starts["large"], 0)]
        rows += [(f"{label}, median of {CALLS}", measured["small"][label], measured["large"][label],
                  LISTS[label]) for label in CALLS_MEASURED]
        for label, small, large, lists in rows:
            ratio = statistics.median(large) / statistics.median(small)
            adjusted = (statistics.median(large) - lists * moto_extra) / statistics.median(small)
            verdict = "ok" if adjusted <= TARGET else "MISSES"
            print(f"{label:46s} {median_ms(small):7.1f}ms {median_ms(large):7.1f}ms  {ratio:5.2f}x  "
                  f"{adjusted:5.2f}x {verdict}")
        small, large = moto_lists["small"], moto_lists["large"]
        print(f"{'moto LIST of 10 keys (baseline)':46s} {median_ms(small):7.1f}ms {median_ms(large):7.1f}ms  "
              f"{statistics.median(large) / statistics.median(small):5.2f}x (moto's own scan of the bucket)")
    finally:
        for server in servers:
            server.stop()
        moto.stop()


if __name__ == "__main__":
    with reaping("bench/team.py"):
        main()
