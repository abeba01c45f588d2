"""The SageMaker path end to end, once per session: moto's server (S3, SageMaker), the runtime emulator, one
ComfyUI on an S3 store there, and one worker behind every SageMaker endpoint the tests publish.

One worker serves them all: the emulator forwards each endpoint's invocations to it (in AWS each endpoint
has its own containers). That is sound here because every environment published on the rig carries the
same test pack and lora, and a worker runs what its environment's node types allow, reading inputs from and
writing outputs to the one store. A worker's own behaviour per environment is tested in test_worker*.py."""

from __future__ import annotations

from pathlib import Path

from comfyui_sagemaker.aws import naming
from comfyui_sagemaker.core.webhook_signing import new_secret

from .comfyui import ComfyUI
from .envs import unique, wait_endpoint, wait_task
from .fixtures import install_test_models, install_test_pack
from .runtime_emulator import RuntimeEmulator
from .waiting import wait_for
from .worker import WorkerProcess

BUCKET = "rig-bucket"
PREFIX = "studio"
STORE_URI = f"s3://{BUCKET}/{PREFIX}"
ROLE = "arn:aws:iam::123456789012:role/ComfySageMaker"
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/comfyui-sagemaker-worker:test"


class AwsRig:
    def __init__(self, moto, base: Path):
        self.moto, self.base = moto, base
        self.worker_manifest = ""
        self.s3, self.sagemaker = moto.client("s3"), moto.client("sagemaker")
        self.bucket, self.prefix, self.store_uri = BUCKET, PREFIX, STORE_URI
        self.emulator: RuntimeEmulator | None = None
        self.comfyui: ComfyUI | None = None
        self.worker: WorkerProcess | None = None
        self.env: dict[str, str] = {}

    def start(self) -> AwsRig:
        self.s3.create_bucket(Bucket=BUCKET)
        self.emulator = RuntimeEmulator(self.sagemaker, self.s3).start()
        install_test_pack(self.base)
        install_test_models(self.base)
        # What a designer's ComfyUI on AWS is given; webhooks may reach receivers on 127.0.0.1, signed with a
        # secret the gateway's replicas share; images the S3 nodes save are encrypted as configured.
        self.env = {**self.moto.env(), "AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME": self.emulator.url,
                    "COMFYUI_SAGEMAKER_STORE": "s3", "COMFYUI_SAGEMAKER_S3_BUCKET": BUCKET,
                    "COMFYUI_SAGEMAKER_S3_PREFIX": PREFIX, "COMFYUI_SAGEMAKER_REGION": "us-east-1",
                    "COMFYUI_SAGEMAKER_SAGEMAKER_ROLE_ARN": ROLE, "COMFYUI_SAGEMAKER_WORKER_IMAGE_URI": IMAGE,
                    "COMFYUI_SAGEMAKER_WEBHOOK_ALLOWED_HOSTS": "127.0.0.1",
                    "COMFYUI_SAGEMAKER_WEBHOOK_SECRET": new_secret(), "COMFYUI_SAGEMAKER_S3_SSE": "AES256"}
        self.comfyui = ComfyUI(self.base, env=self.env).start()
        return self

    def client(self):
        return self.comfyui.client()

    def publish(self, templates: list[str], mode: str, bind: bool = False) -> str:
        """A new environment of `templates` (each with the test pack's nodes) on a SageMaker endpoint in
        `mode` (realtime or async), in service, its invocations served by the rig's worker."""
        client = self.client()
        name = unique("E")
        r = client.post("/sagemaker/environments", json={"name": name, "templates": templates, "bind": bind,
                                                         "endpoint": {"kind": "sagemaker", "mode": mode,
                                                                      "instance_type": "ml.g4dn.xlarge",
                                                                      "initial_count": 1}})
        assert r.status_code == 202, r.text
        task = wait_task(client, r.json()["task"]["id"])
        assert task["state"] == "succeeded", task
        assert wait_endpoint(client, name, ("InService",))["state"] == "InService"
        if self.worker is None:
            self.worker_manifest = f"{STORE_URI}/environments/{name.lower()}/versions/v000001.json"
            self._start_worker()
        self.emulator.workers[self.endpoint(name)] = self.worker.url
        return name

    def _start_worker(self) -> None:
        self.worker = WorkerProcess(self.worker_manifest, self.base / unique("worker"), self.moto.env()).start()
        assert self.worker.wait_state()["state"] == "ready", self.worker.log()[-2000:]

    def take(self) -> AwsRig:
        """For a module: the rig with its worker idle. If a run is still in it after 30 s (a module that failed
        while holding one), a fresh worker replaces it behind every endpoint, so no module waits on another's
        leftovers."""
        if self.worker is not None and not self._worker_idle_within(30):
            self.worker.stop()
            self._start_worker()
            self.emulator.workers = {name: self.worker.url for name in self.emulator.workers}
        return self

    def _worker_idle_within(self, seconds: float) -> bool:
        try:
            wait_for(self._worker_idle, seconds, "the rig's worker to be idle")
            return True
        except AssertionError:
            return False

    def _worker_idle(self) -> bool:
        status = self.worker.status()
        return not status["queue"] and all(c["execution"] is None for c in status["comfyuis"])

    def endpoint(self, environment: str) -> str:
        """The SageMaker endpoint's name of an environment published on the rig."""
        return naming.endpoint_name(environment, STORE_URI)

    def wait_worker_idle(self) -> None:
        """Until the rig's worker has nothing running or queued (a prompt released by a test has ended)."""
        wait_for(self._worker_idle, what="the rig's worker to be idle")

    def stop(self) -> None:
        for process in (self.worker, self.comfyui, self.emulator):
            if process is not None:
                process.stop()

