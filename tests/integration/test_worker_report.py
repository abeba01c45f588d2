"""A worker's cold start reaches the endpoint the sidebar shows. A SageMaker endpoint, whose container the
extension cannot reach, reads the report the worker writes to the S3 store (moto's server here), started
with exactly the environment the deploy gives the container. (A local endpoint copies the worker's /status:
tests/integration/test_endpoint_stop_start.py, on the endpoint that module takes through its life.)"""

from __future__ import annotations

import json
import uuid

import boto3
import pytest
from comfyui_sagemaker.aws import naming
from comfyui_sagemaker.aws.s3_store import S3Store
from comfyui_sagemaker.aws.sagemaker_endpoints import SageMakerEndpoints
from comfyui_sagemaker.local.folder_store import FolderStore
from harness.envs import publish_environment
from harness.waiting import wait_for
from harness.worker import WorkerProcess

pytestmark = pytest.mark.comfyui

PROMPT = {"1": {"class_type": "EmptyImage", "inputs": {"width": 4, "height": 4, "batch_size": 1, "color": 9}},
          "2": {"class_type": "SMTestScale", "inputs": {"image": ["1", 0], "lora_name": "style.safetensors",
                                                          "factor": 0.5}},
          "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "report"}}}
START = ["manifest", "packs", "models", "python_packages", "comfyui_start"]


@pytest.fixture
def s3_copy(comfyui, client, moto_server):
    """An environment published on the session's folder store, copied into an S3 store on moto."""
    _, env, task = publish_environment(client, PROMPT)
    folder = FolderStore(comfyui.user_dir / "__sagemaker" / "store")
    key = f"environments/{env.lower()}/versions/v{task['result']['version']:06d}.json"
    manifest = json.loads(folder.get(key).data)
    bucket = f"report-{uuid.uuid4().hex[:8]}"
    s3 = moto_server.client("s3")
    s3.create_bucket(Bucket=bucket)
    digests = [p["archive"]["sha256"] for p in manifest["custom_nodes"]] + [m["sha256"] for m in manifest["models"]]
    for digest in digests:
        s3.put_object(Bucket=bucket, Key=f"team/blobs/sha256/{digest}", Body=folder.get(f"blobs/sha256/{digest}").data)
    s3.put_object(Bucket=bucket, Key=f"team/{key}", Body=json.dumps(manifest).encode())
    return manifest, f"s3://{bucket}/team", s3


def test_a_sagemaker_endpoint_shows_the_report_its_worker_wrote_to_the_store(s3_copy, moto_server, tmp_path,
                                                                           monkeypatch):
    manifest, store_uri, s3 = s3_copy
    manifest = {**manifest, "endpoint": {"kind": "sagemaker", "instance_type": "ml.g4dn.12xlarge",
                                         "initial_count": 1, "mode": "async", "autoscaling": None}}
    for name, value in moto_server.env().items():
        monkeypatch.setenv(name, value)
    clients = {s: boto3.client(s, region_name="us-east-1") for s in ("sagemaker", "application-autoscaling",
                                                                      "cloudwatch")}
    store = S3Store(store_uri[5:].split("/")[0], "team", "us-east-1", s3_client=s3)
    endpoints = SageMakerEndpoints(store_uri, "arn:aws:iam::123456789012:role/R", "image:1", "us-east-1",
                                   clients=clients, poll_interval=0, store=store)
    endpoints.monitor = lambda m, e, recreate=False: endpoints.settle(m, e, recreate=recreate)
    endpoints.deploy(manifest)
    container = clients["sagemaker"].describe_model(
        ModelName=naming.versioned_name(manifest["name"], manifest["version"], store_uri))["PrimaryContainer"]
    worker = WorkerProcess(container["Environment"]["SAGEMAKER_MANIFEST_URI"], tmp_path / "w",
                           {**moto_server.env(), **container["Environment"]}).start()
    try:
        assert worker.wait_state()["state"] == "ready", worker.log()[-3000:]
        shown = wait_for(lambda: (e := endpoints.get(manifest["name"]))["worker"] and
                         e["worker"]["state"] == "ready" and e, what="the ready report in the store")
        assert [p["name"] for p in shown["phases"]] == START and shown["activity"] is None
        assert shown["worker"]["version"] == manifest["version"] and shown["comfyuis"][0]["state"] == "ready"
        models = next(p for p in shown["phases"] if p["name"] == "models")
        assert models["bytes"] == len(b"lora bytes") and "ranged GETs" in models["detail"]
        config = clients["sagemaker"].describe_endpoint_config(EndpointConfigName=shown["endpoint_config"])
        assert config["AsyncInferenceConfig"]["ClientConfig"]["MaxConcurrentInvocationsPerInstance"] == 4
    finally:
        worker.stop()
        clients["sagemaker"].delete_endpoint(EndpointName=naming.endpoint_name(manifest["name"], store_uri))
