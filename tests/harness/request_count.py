"""Requests counted at moto's server by the access key that signs them, and one short async SageMaker run
counted request by request: bench/idle_requests.py and bench/async_requests.py measure with these, and
tests/unit/test_requests_per_run.py holds a run to its ceiling.

`AsyncRig`: moto's server counting every request, the runtime emulator (its own S3 and SNS calls, SageMaker's
side, signed with EMULATOR_KEY and told apart), a worker that answers each invocation at once, and ComfyUIs as
ComfyUI starts the extension (harness/fake_comfy.py), each on a store of its own with an async endpoint deployed
on moto, with SageMaker's notices (SNS to this ComfyUI's SQS queue) or without (polled for).
"""

from __future__ import annotations

import io
import json
import os
import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from .comfyui import free_port

EMULATOR_KEY = "emulator"
CREDENTIAL = re.compile(r"Credential=([^/]+)/[^/]+/[^/]+/([^/]+)/")
PREFIX = "studio"
ROLE = "arn:aws:iam::123456789012:role/ComfySageMaker"
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/comfyui-sagemaker-worker:test"
TOPIC_NAME = "comfy-AsyncResultsTopic-BENCH"
ENDED = ("succeeded", "failed", "cancelled")


class CountingMoto:
    """moto's server with every request noted: (when, access key, service, bucket or endpoint, operation)."""

    def __init__(self):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.seen: list[tuple[float, str, str, str, str]] = []
        self._lock = threading.Lock()
        self._server = None

    def _counted(self, app):
        def counted(environ, start_response):
            found = CREDENTIAL.search(environ.get("HTTP_AUTHORIZATION", ""))
            key, service = found.groups() if found else ("", "")
            target = environ.get("HTTP_X_AMZ_TARGET", "")
            if service == "s3":
                where, what = environ.get("PATH_INFO", "").lstrip("/").split("/", 1)[0], environ["REQUEST_METHOD"]
            else:
                body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
                environ["wsgi.input"] = io.BytesIO(body)
                try:
                    where = str(json.loads(body or b"{}").get("EndpointName", ""))
                except ValueError:
                    where = ""
                what = target.rpartition(".")[2]
            with self._lock:
                self.seen.append((time.monotonic(), key, service, where, what))
            return app(environ, start_response)

        return counted

    def start(self) -> CountingMoto:
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
        from werkzeug.serving import make_server

        self._server = make_server("127.0.0.1", self.port, self._counted(DomainDispatcherApplication(
            create_backend_app)), True, request_handler=MotoRequestHandler)
        threading.Thread(target=self._server.serve_forever, daemon=True, name="counting-moto").start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()

    def client(self, service: str, key: str = "testing"):
        import boto3

        return boto3.client(service, endpoint_url=self.url, region_name="us-east-1", aws_access_key_id=key,
                            aws_secret_access_key="testing")

    def between(self, start: float, end: float, where: str, service: str = "s3") -> int:
        with self._lock:
            return sum(1 for at, key, s, w, _ in self.seen
                       if start <= at < end and key != EMULATOR_KEY and s == service and w == where)


class AnsweringWorker:
    """The container: answers each invocation with a result at once (a short run), and keeps it first, as the
    worker does (worker/outputs.py keep_result): `keep(execution id, result)`."""

    def __init__(self, lasts: float, keep: Callable[[str, dict], None] = lambda execution_id, result: None):
        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's name)
                request = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                time.sleep(lasts)
                result = {"status": "succeeded", "outputs": {}}
                keep(str(request.get("execution_id") or ""), result)
                body = json.dumps(result).encode()
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


def plain(color: int) -> dict:
    """A short prompt (no model): what each counted run runs."""
    return {"1": {"class_type": "EmptyImage", "inputs": {"width": 4, "height": 2, "batch_size": 1, "color": color}},
            "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
            "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "bench"}}}


@dataclass
class Ran:
    """One run's requests: by service (`seen`, the invocation counted at the emulator as sagemaker-runtime), by
    what was asked (`asked`), and the run's time from its creation to its end event."""

    seen: Counter
    asked: Counter
    took: float
    state: str

    @property
    def total(self) -> int:
        return sum(self.seen.values())


class AsyncRig:
    """`setenv(name, value)`: how the AWS environment is set (a test's monkeypatch.setenv; os.environ by default)."""

    def __init__(self, work: Path, lasts: float = 0.0,
                 setenv: Callable[[str, str], None] = lambda name, value: os.environ.__setitem__(name, value)):
        from comfyui_sagemaker.aws import clients

        from .runtime_emulator import RuntimeEmulator

        self.work = work
        self.moto = Counted().start()
        for name, value in {"AWS_ENDPOINT_URL": self.moto.url, "AWS_ACCESS_KEY_ID": "testing",
                            "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
                            "AWS_REGION": "us-east-1"}.items():
            setenv(name, value)
        self.topic = self.moto.client("sns").create_topic(Name=TOPIC_NAME)["TopicArn"]
        self.emulator = RuntimeEmulator(self.moto.client("sagemaker", EMULATOR_KEY),
                                        self.moto.client("s3", EMULATOR_KEY),
                                        sns=self.moto.client("sns", EMULATOR_KEY)).start()
        setenv("AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME", self.emulator.url)
        clients.reset()  # the process's clients are made anew, on this moto (another test's may be kept)
        self.worker = AnsweringWorker(lasts, self._keep)
        self.comfys: list = []
        self._buckets: dict[str, str] = {}  # instance id -> its ComfyUI's bucket (a run's id ends with its instance)

    def _keep(self, execution_id: str, result: dict) -> None:
        """The worker's kept result, in the store of the ComfyUI whose run it is (signed as SageMaker's side)."""
        from comfyui_sagemaker.core.worker_contract import RESULTS_PREFIX

        bucket = self._buckets.get(execution_id[31:])
        if bucket:
            self.moto.client("s3", EMULATOR_KEY).put_object(
                Bucket=bucket, Key=f"{PREFIX}/{RESULTS_PREFIX}{execution_id}.json", Body=json.dumps(result).encode())

    def comfy(self, bucket: str, notified: bool):
        """A ComfyUI on its own store with template T1 on an async endpoint of environment Env1, InService."""
        from comfyui_sagemaker.aws import naming
        from comfyui_sagemaker.aws.s3_store import S3Store
        from comfyui_sagemaker.aws.sagemaker_endpoints import SageMakerEndpoints
        from comfyui_sagemaker.core.environments import manifest_key

        from .fake_comfy import FakeComfy, publish
        from .waiting import wait_for

        self.moto.client("s3").create_bucket(Bucket=bucket)
        store = S3Store(bucket, PREFIX, s3_client=self.moto.client("s3"))
        provider = SageMakerEndpoints(f"s3://{bucket}/{PREFIX}", ROLE, IMAGE, "us-east-1", store=store,
                                      notification_topic=self.topic if notified else "")
        comfy = FakeComfy(self.work / bucket, store, provider)
        self.comfys.append(comfy)
        provider.instance = comfy.owner().instance  # what services.py gives it
        self._buckets[comfy.owner().instance] = bucket
        manifest = publish(store, "Env1", ("T1",))
        manifest["endpoint"] = {"kind": "sagemaker", "instance_type": "ml.g4dn.xlarge", "initial_count": 1,
                                "mode": "async", "autoscaling": None}
        store.put(manifest_key("Env1", 1), json.dumps(manifest).encode())
        comfy.services.endpoints.deploy(manifest)
        wait_for(lambda: comfy.services.endpoints.get("Env1")["state"] == "InService", 120, "in service")
        self.emulator.workers[naming.endpoint_name("Env1", f"s3://{bucket}/{PREFIX}")] = self.worker.url
        comfy.template("T1", plain(0), "Env1")
        return comfy

    def run(self, comfy, color: int, settle: float = 0.0) -> Ran:
        """One short run of T1, from its creation to its end (its record no longer live here) and the change
        notice it leaves pending written; every request the ComfyUI made meanwhile counted. `settle`: seconds more
        to count (a bench's, for what comes after: the queue's DeleteMessage); a test counts to the end event."""
        from .waiting import wait_for

        invoked = len(self.emulator.calls)
        start = time.monotonic()
        made = comfy.executions.create(plain(color), template="T1")["id"]
        wait_for(lambda: ended(comfy, made), 120, "the run's end")
        took = time.monotonic() - start
        comfy.services.changes.flush()  # the notice of the run's changes, written now instead of within 0.5 s
        time.sleep(settle)
        end = time.monotonic()
        seen = self.moto.ours(start, end)
        seen["sagemaker-runtime"] = len(self.emulator.calls) - invoked
        asked = self.moto.what(start, end)
        asked["sagemaker-runtime InvokeEndpointAsync"] = seen["sagemaker-runtime"]
        state = comfy.executions.get(made, localise=False)["state"]  # after the count: the rig's own read
        return Ran(seen, asked, took, state)

    def close(self) -> None:
        from comfyui_sagemaker.aws import clients

        for comfy in self.comfys:
            comfy.services.endpoints.stop_listening()
            comfy.close()
        self.worker.stop()
        self.emulator.stop()
        self.moto.stop()
        clients.reset()
