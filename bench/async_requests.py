"""Requests per short async run, with SageMaker's notifications (aws/notifications.py) and with polling alone.

Two ComfyUIs side by side in this process (as ComfyUI starts the extension: harness/fake_comfy.py), each on a
store of its own on moto's server, each with an async SageMaker endpoint on moto whose invocations the runtime
emulator forwards to a worker that answers at once: one deployed with the SNS topic (its end is noticed through
this ComfyUI's SQS queue), one without (its result is polled for, the baseline). Each runs the same short prompt
N times, one run at a time; every request the ComfyUI makes during a run is counted at moto's server by the
access key that signs it (the emulator's own S3 and SNS calls, SageMaker's side, are told apart by theirs), plus
the InvokeEndpointAsync calls the emulator received. The first run of each is left out of the median: it makes
the queue (CreateQueue, Subscribe) once per process life. Printed: all the requests of a run, and those of its
async completion alone (the request, the invocation, the queue, async/ reads: what polling or notices change),
then what the last run of each asked. Target: <= 10 requests per short run with notifications.

Run: ./dev python bench/async_requests.py [runs] [seconds each run lasts in the worker]   (default 10, 0)
"""

from __future__ import annotations

import json
import logging
import os
import re
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # idle_requests' counting moto
from harness.comfyui import free_port  # noqa: E402
from idle_requests import CREDENTIAL, EMULATOR_KEY, IMAGE, PREFIX, ROLE, CountingMoto, plain  # noqa: E402

RUNS = int(sys.argv[1]) if len(sys.argv) > 1 else 10
LASTS_S = float(sys.argv[2]) if len(sys.argv) > 2 else 0.0  # how long the worker takes over each run
TARGET = 10
TOPIC_NAME = "comfy-AsyncResultsTopic-BENCH"
ENDED = ("succeeded", "failed", "cancelled")


class AnsweringWorker:
    """The container: answers each invocation with a result at once (a short run)."""

    def __init__(self, lasts: float):
        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's name)
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                time.sleep(lasts)
                body = json.dumps({"status": "succeeded", "outputs": {}}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True, name="answering-worker").start()

    def stop(self) -> None:
        self.server.shutdown()


class Counted(CountingMoto):
    """moto's server, each request noted with the access key that signed it and its service; and what each asked
    (S3: method and key, ids made generic; others: the operation)."""

    def __init__(self):
        super().__init__()
        self.asked: list[tuple[float, str, str]] = []  # (when, access key, what)

    def _counted(self, app):
        inner = super()._counted(app)

        def detailed(environ, start_response):
            found = CREDENTIAL.search(environ.get("HTTP_AUTHORIZATION", ""))
            key, service = found.groups() if found else ("", "")
            if service == "s3":
                path = re.sub(r"\d{8}T\d{12}-[0-9a-f]{8}-[0-9a-z]{12}|[0-9a-f]{32}|[0-9a-z]{12}", "<id>",
                              environ.get("PATH_INFO", "").split("/", 3)[-1])
                what = f"s3 {environ['REQUEST_METHOD']} {path}"
            else:
                operation = environ.get("HTTP_X_AMZ_TARGET", "").rpartition(".")[2]
                what = f"{service} {operation or environ.get('QUERY_STRING', '')}"
            with self._lock:
                self.asked.append((time.monotonic(), key, what))
            return inner(environ, start_response)

        return detailed

    def what(self, start: float, end: float) -> Counter:
        with self._lock:
            return Counter(w for at, key, w in self.asked if start <= at < end and key != EMULATOR_KEY)

    def ours(self, start: float, end: float) -> Counter:
        with self._lock:
            return Counter(service for at, key, service, _, _ in self.seen
                           if start <= at < end and key != EMULATOR_KEY)


def completion(what: str) -> bool:
    """A request of the async completion: the request's upload, the invocation, the queue, a read of async/
    (result, failure, progress), the endpoint's existence asked while the run waits."""
    return what.startswith(("sqs ", "sns ", "sagemaker-runtime ", "s3 PUT async/", "s3 GET async/"))


def ended(comfy, execution_id: str) -> bool:
    """From the events the ComfyUI sent its pages: no request of its own is made to look."""
    for event, data, _ in list(comfy.sent):
        if event == "sagemaker.execution" and (data or {}).get("id") == execution_id \
                and data.get("state") in ENDED:
            return not comfy.executions.live(execution_id)
    return False


def main() -> None:
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    work = Path(tempfile.mkdtemp(prefix="bench-async-requests-"))
    moto = Counted().start()
    os.environ.update({"AWS_ENDPOINT_URL": moto.url, "AWS_ACCESS_KEY_ID": "testing",
                       "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
                       "AWS_REGION": "us-east-1"})
    from comfyui_sagemaker.aws import naming
    from comfyui_sagemaker.aws.s3_store import S3Store
    from comfyui_sagemaker.aws.sagemaker_endpoints import SageMakerEndpoints
    from comfyui_sagemaker.core.environments import manifest_key
    from harness.fake_comfy import FakeComfy, publish
    from harness.runtime_emulator import RuntimeEmulator
    from harness.waiting import wait_for

    topic = moto.client("sns").create_topic(Name=TOPIC_NAME)["TopicArn"]
    emulator = RuntimeEmulator(moto.client("sagemaker", EMULATOR_KEY), moto.client("s3", EMULATOR_KEY),
                               sns=moto.client("sns", EMULATOR_KEY)).start()
    os.environ["AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME"] = emulator.url
    worker = AnsweringWorker(LASTS_S)
    figures: dict[str, dict] = {}
    comfys = []
    try:
        for label, notified in (("notices", True), ("polling", False)):
            bucket = f"bench-{label}"
            moto.client("s3").create_bucket(Bucket=bucket)
            store = S3Store(bucket, PREFIX, s3_client=moto.client("s3"))
            provider = SageMakerEndpoints(f"s3://{bucket}/{PREFIX}", ROLE, IMAGE, "us-east-1", store=store,
                                          notification_topic=topic if notified else "")
            comfy = FakeComfy(work / bucket, store, provider)
            comfys.append(comfy)
            provider.instance = comfy.owner().instance  # what services.py gives it
            manifest = publish(store, "Env1", ("T1",))
            manifest["endpoint"] = {"kind": "sagemaker", "instance_type": "ml.g4dn.xlarge", "initial_count": 1,
                                    "mode": "async", "autoscaling": None}
            store.put(manifest_key("Env1", 1), json.dumps(manifest).encode())
            comfy.services.endpoints.deploy(manifest)
            wait_for(lambda c=comfy: c.services.endpoints.get("Env1")["state"] == "InService", 120, "in service")
            emulator.workers[naming.endpoint_name("Env1", f"s3://{bucket}/{PREFIX}")] = worker.url
            comfy.template("T1", plain(0), "Env1")
            counts, times, completions = [], [], []
            for i in range(RUNS + 1):
                invoked = len(emulator.calls)
                start = time.monotonic()
                made = comfy.executions.create(plain(i + 1), template="T1")["id"]
                wait_for(lambda c=comfy, m=made: ended(c, m), 120, "the run's end")
                took = time.monotonic() - start
                time.sleep(0.5)  # what the run's end still writes
                state = comfy.executions.get(made, localise=False)["state"]
                assert state == "succeeded", f"{label} run {made}: {state}"
                seen = moto.ours(start, time.monotonic())
                seen["sagemaker-runtime"] = len(emulator.calls) - invoked
                counts.append(seen)
                times.append(took)
                asked = moto.what(start, time.monotonic())
                asked["sagemaker-runtime InvokeEndpointAsync"] = seen["sagemaker-runtime"]
                completions.append(sum(n for w, n in asked.items() if completion(w)))
            figures[label] = {"counts": counts, "times": times, "asked": asked, "completion": completions}
    finally:
        for comfy in comfys:
            comfy.services.endpoints.stop_listening()
            comfy.close()
        worker.stop()
        emulator.stop()
        moto.stop()

    print(f"requests the ComfyUI makes per short async run (median of {RUNS}, after a first run)")
    for label, f in figures.items():
        totals = [sum(c.values()) for c in f["counts"]]
        services = sorted({s for c in f["counts"] for s in c})
        per = {s: statistics.median([c.get(s, 0) for c in f["counts"][1:]]) for s in services}
        print(f"  {label:<8} {statistics.median(totals[1:]):>5.1f}  "
              + "  ".join(f"{s} {v:g}" for s, v in per.items())
              + f"  (first run {totals[0]}: {dict(f['counts'][0])});"
              f"  run time median {statistics.median(f['times'][1:]) * 1000:.0f} ms")
        print(f"  {'':<8} of which its async completion {statistics.median(f['completion'][1:]):g}"
              f" (first run {f['completion'][0]})")
    for label, f in figures.items():
        print(f"  what the last {label} run asked:")
        for what, n in sorted(f["asked"].items()):
            print(f"    {n:>3}  {what}")
    notices = statistics.median([sum(c.values()) for c in figures["notices"]["counts"][1:]])
    polling = statistics.median([sum(c.values()) for c in figures["polling"]["counts"][1:]])
    verdict = "met" if notices <= TARGET else "NOT met"
    print(f"ratio notices / polling: {notices / polling:.2f}; target <= {TARGET} with notices: {verdict}")


if __name__ == "__main__":
    main()
