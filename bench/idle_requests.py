"""Store requests per minute of a ComfyUI nobody looks at, of one a page looks at, and per async run in flight.

Several ComfyUIs run side by side in this process over the same minutes, each as ComfyUI starts the extension
(its Extension's start-up work and loops, its routes; harness/fake_comfy.py, no ComfyUI process), each on a
store of its own:
- S3: moto's server, every request counted at the server (a WSGI wrapper) by the bucket it names, SageMaker's
  by the endpoint; the runtime emulator's own S3 reads (SageMaker's, not the ComfyUI's) are told apart by
  their access key. A 304 is a request (S3 bills it as a GET).
- folder: the folder store, every call of its interface counted (what would be a request on S3).
Scenarios: no page open; one page open (it subscribes every minute as web/js/sagemaker.js does: the
baseline, which is also what every ComfyUI did before, page or not); 1 and 4 async runs in flight on a
SageMaker async endpoint (moto's control plane, the runtime emulator, a worker that holds every run), no page
open. Prints the median requests per minute of each and the ratio to the baseline; the target is <= 1 per
minute with no page open. A designer's hourly maintenance (template index, idempotency keys) is counted once
at the end, apart.

Run: ./dev python bench/idle_requests.py [minutes] [--record]   (default 4 minutes measured, after 20 s to settle)
--record writes the figures to bench/figures.json, where bench/guard.py holds later runs to them.
"""

from __future__ import annotations

import json
import logging
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.append(str(Path(__file__).resolve().parent))  # figures.py, when imported by guard.py
from figures import Figure, record  # noqa: E402
from harness.comfyui import free_port  # noqa: E402
from harness.fake_clock import CountingStore  # noqa: E402
from harness.request_count import EMULATOR_KEY, IMAGE, PREFIX, ROLE, CountingMoto, plain  # noqa: E402

MINUTES = 4
SETTLE_S = 20.0
TARGET = 1.0
RENEW_S = 60.0  # what a visible page does (web/js/sagemaker.js)
# The guard's allowances (requests a minute, only a rise fails): the idle LIST is once a minute, so a minute's
# window holds one or two; a page's 4 GETs every 1.5 s and a run's reads are paced by the clock, and a change
# that adds a request to each look adds about 40 a minute.
IDLE_ALLOWANCE = 1
PAGE_ALLOWANCE = 8
RUN_ALLOWANCE = 6
ENDED = ("succeeded", "failed", "cancelled")


class HeldWorker:
    """A worker that takes every invocation and answers none until stopped: runs stay in flight."""

    def __init__(self):
        release = self.release = threading.Event()

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's name)
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                release.wait()
                self.send_response(503)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True, name="held-worker").start()

    def stop(self) -> None:
        self.release.set()
        self.server.shutdown()


class Scenario:
    """One ComfyUI and what it is given: a page that looks, async runs in flight."""

    def __init__(self, label: str, comfy, count: Callable[[float, float], int],
                 describes: Callable[[float, float], int] | None = None):
        self.label, self.comfy, self.count, self.describes = label, comfy, count, describes
        self.runs: list[str] = []
        self.page: threading.Thread | None = None
        self._stop = threading.Event()

    def open_page(self) -> None:
        def look() -> None:
            while True:
                r = self.comfy.post("/sagemaker/events/subscribe", json={"client_id": f"page-{self.label}"})
                r.raise_for_status()
                if self._stop.wait(RENEW_S):
                    return

        self.page = threading.Thread(target=look, daemon=True, name=f"page-{self.label}")
        self.page.start()

    def close(self) -> None:
        self._stop.set()
        self.comfy.close()


def async_runs(comfy, emulator, worker: HeldWorker, bucket: str, runs: int) -> list[str]:
    """An async SageMaker endpoint for Env1 (deployed on moto, its invocations held by `worker`) and `runs` runs
    of T1 on it, each in flight once this returns."""
    from comfyui_sagemaker.aws import naming
    from comfyui_sagemaker.core.environments import manifest_key
    from harness.fake_comfy import publish
    from harness.waiting import wait_for

    store = comfy.services.store
    manifest = publish(store, "Env1", ("T1",))
    manifest["endpoint"] = {"kind": "sagemaker", "instance_type": "ml.g4dn.xlarge", "initial_count": 1,
                            "mode": "async", "autoscaling": None}
    store.put(manifest_key("Env1", 1), json.dumps(manifest).encode())
    endpoints = comfy.services.endpoints
    endpoints.deploy(manifest)
    wait_for(lambda: endpoints.get("Env1")["state"] == "InService", 120, "the async endpoint in service")
    emulator.workers[naming.endpoint_name("Env1", f"s3://{bucket}/{PREFIX}")] = worker.url
    comfy.template("T1", plain(0), "Env1")
    made = [comfy.executions.create(plain(i + 1), template="T1")["id"] for i in range(runs)]
    wait_for(lambda: all(comfy.executions.get(i, localise=False)["state"] == "running" for i in made), 120,
             "the runs in flight")
    return made


def per_minute(count, start: float, minutes: int) -> list[int]:
    return [count(start + 60 * m, start + 60 * (m + 1)) for m in range(minutes)]


def run(minutes: int) -> dict[str, Figure]:
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    work = Path(tempfile.mkdtemp(prefix="bench-idle-"))
    moto = CountingMoto().start()
    emulator_s3 = moto.client("s3", EMULATOR_KEY)
    os.environ.update({"AWS_ENDPOINT_URL": moto.url, "AWS_ACCESS_KEY_ID": "testing",
                       "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
                       "AWS_REGION": "us-east-1"})
    from comfyui_sagemaker.aws import clients, naming
    from comfyui_sagemaker.aws.s3_store import S3Store
    from comfyui_sagemaker.aws.sagemaker_endpoints import SageMakerEndpoints
    from comfyui_sagemaker.local.folder_store import FolderStore
    from harness.fake_comfy import FakeComfy
    from harness.fake_endpoints import FakeEndpoints
    from harness.runtime_emulator import RuntimeEmulator
    from harness.waiting import wait_for

    emulator = RuntimeEmulator(moto.client("sagemaker", EMULATOR_KEY), emulator_s3).start()
    os.environ["AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME"] = emulator.url
    clients.reset()  # the process's clients are made anew, on this moto (bench/guard.py ran others before)
    worker = HeldWorker()
    scenarios: list[Scenario] = []
    fakes: list = []
    try:
        def on_s3(label: str, runs: int = 0) -> Scenario:
            bucket = label.replace(" ", "-")
            moto.client("s3").create_bucket(Bucket=bucket)
            store = S3Store(bucket, PREFIX, s3_client=moto.client("s3"))
            if runs:
                provider = SageMakerEndpoints(f"s3://{bucket}/{PREFIX}", ROLE, IMAGE, "us-east-1", store=store)
            else:
                provider = FakeEndpoints(store)
            fakes.append(provider)
            comfy = FakeComfy(work / bucket, store, provider)
            if not runs:
                return Scenario(label, comfy, lambda a, b: moto.between(a, b, bucket))
            made = async_runs(comfy, emulator, worker, bucket, runs)
            s = Scenario(label, comfy, lambda a, b: moto.between(a, b, bucket),
                         lambda a, b: moto.between(a, b, naming.endpoint_name("Env1", f"s3://{bucket}/{PREFIX}"),
                                                   "sagemaker"))
            s.runs = made
            return s

        def on_folder(label: str, runs: int = 0) -> Scenario:
            store = FolderStore(work / label.replace(" ", "-") / "store")
            fake = FakeEndpoints(store)
            fakes.append(fake)
            comfy = FakeComfy(work / label.replace(" ", "-"), store, fake)
            counting = CountingStore(store)
            comfy.services.store = counting  # the services' store, each call counted
            return Scenario(label, comfy, lambda a, b: sum(1 for at in list(counting.times) if a <= at < b))

        made = ((on_s3, "s3 idle", 0), (on_s3, "s3 page", 0), (on_s3, "s3 1 run", 1), (on_s3, "s3 4 runs", 4),
                (on_folder, "folder idle", 0), (on_folder, "folder page", 0))
        for make, label, runs in made:
            scenarios.append(make(label, runs))
        for s in scenarios:
            s.comfy.background()  # the start-up work and loops of a ComfyUI
            if s.label.endswith("page"):
                s.open_page()
        print(f"{len(scenarios)} ComfyUIs started; settling {SETTLE_S:.0f} s, then {minutes} minutes measured",
              flush=True)
        time.sleep(SETTLE_S)
        start = time.monotonic()
        time.sleep(60 * minutes)
        counts = {s.label: per_minute(s.count, start, minutes) for s in scenarios}
        describes = {s.label: per_minute(s.describes, start, minutes) for s in scenarios if s.describes is not None}

        # A designer's hourly maintenance, once, on the idle S3 ComfyUI (10 templates)
        idle = scenarios[0]
        for i in range(10):
            idle.comfy.template(f"T{i}", plain(i))
        before = time.monotonic()
        idle.comfy.services.templates.reconcile()
        idle.comfy.services.idempotency.remove_expired()
        maintenance = moto.between(before, time.monotonic() + 1, "s3-idle")
    finally:
        worker.stop()  # the held runs end (failed), written to the store while it is still there
        for s in scenarios:
            wait_for(lambda s=s: all(s.comfy.executions.get(i, localise=False)["state"] in ENDED
                                     and not s.comfy.executions.live(i) for i in s.runs), 120, "the runs' end")
            s.close()
        emulator.stop()
        moto.stop()
        for fake in fakes:
            getattr(fake, "close", lambda: None)()
        clients.reset()

    median = {label: statistics.median(c) for label, c in counts.items()}
    figures: dict[str, Figure] = {}
    print(f"\nstore requests per minute (median of {minutes} minutes; each minute's count in brackets)")
    for store in ("s3", "folder"):
        base = median[f"{store} page"] or 1
        for label in (f"{store} idle", f"{store} page"):
            print(f"  {label:<14} {median[label]:>6.1f}  {counts[label]}  ratio to one page {median[label] / base:.3f}")
        figures[f"{store}.idle"] = Figure(median[f"{store} idle"], "rate", "requests/min",
                                          f"{store} store, a ComfyUI with no page open", allowance=IDLE_ALLOWANCE,
                                          why="one LIST a minute; a minute's window may hold two")
        figures[f"{store}.page"] = Figure(median[f"{store} page"], "rate", "requests/min",
                                          f"{store} store, a ComfyUI with a page open", allowance=PAGE_ALLOWANCE,
                                          why="looks paced by the clock: a busy machine makes fewer")
        figures[f"{store}.idle_to_page"] = Figure(round(median[f"{store} idle"] / base, 4), "shown", "x",
                                                  f"{store} store, no page open", baseline="a page open",
                                                  why="both sides guarded above")
    for label, runs in (("s3 1 run", 1), ("s3 4 runs", 4)):
        extra = (median[label] - median["s3 idle"]) / runs
        print(f"  {label:<14} {median[label]:>6.1f}  {counts[label]}  per run in flight {extra:.1f}; "
              f"(SageMaker: {statistics.median(describes[label]):.0f}/min for the endpoint {describes[label]})")
        key = label.replace("s3 ", "").replace(" ", "_")
        figures[f"{key}.per_run"] = Figure(extra, "rate", "requests/min", f"each async run in flight ({label})",
                                           allowance=RUN_ALLOWANCE, why="a record and progress read paced by the "
                                           "clock; a busy machine makes fewer")
        figures[f"{key}.describes"] = Figure(statistics.median(describes[label]), "rate", "requests/min",
                                             f"DescribeEndpoint of the endpoint ({label})", allowance=2,
                                             why="one every 5 s, however many runs")
    print(f"  hourly maintenance of a designer (10 templates): {maintenance} requests once an hour")
    figures["maintenance"] = Figure(maintenance, "count", "requests", "a designer's hourly maintenance, 10 templates",
                                    allowance=1, why="the same each time, but for the idle LIST of a minute that may "
                                    "fall in its count")
    verdict = "met" if max(median["s3 idle"], median["folder idle"]) <= TARGET else "NOT met"
    print(f"target <= {TARGET:.0f} request a minute with no page open: {verdict}")
    return figures


def measure(quick: bool) -> dict[str, Figure]:
    """Quick: one minute measured (after the 20 s to settle), else four."""
    return run(1 if quick else MINUTES)


def main() -> None:
    args = [a for a in sys.argv[1:] if a != "--record"]
    figures = run(int(args[0]) if args else MINUTES)
    if "--record" in sys.argv:
        record("idle_requests", figures)


if __name__ == "__main__":
    main()
