"""What a run needs of its SageMaker endpoint (its view: state, served version, instances; its endpoint config) is
read once per endpoint and version and shared by the runs of a process (Endpoints.known), not read per run; and
it never makes a run on an endpoint stopped elsewhere look like anything else: a change here or noticed from
elsewhere drops it, and an invocation SageMaker refuses is checked against a fresh DescribeEndpoint.
On moto in-process; the runtime's refusal comes through botocore's Stubber (InvokeEndpointAsync's model)."""

from __future__ import annotations

import json

import boto3
import pytest
from botocore.stub import Stubber
from comfyui_sagemaker.aws.s3_store import S3Store
from comfyui_sagemaker.aws.sagemaker_endpoints import SageMakerEndpoints
from comfyui_sagemaker.core.endpoints import EndpointNotReady
from harness.sagemaker_stub import ENDPOINT, IMAGE, ROLE, STORE
from harness.service_quotas import answering
from moto import mock_aws

MANIFEST = {"name": "Portraits", "version": 1, "custom_nodes": [], "models": [],
            "endpoint": {"kind": "sagemaker", "instance_type": "ml.g4dn.xlarge", "initial_count": 1, "mode": "async",
                         "autoscaling": None}}


def provider(s3, store) -> tuple[SageMakerEndpoints, list[str]]:
    """A process's provider on moto, each SageMaker control-plane call it makes noted."""
    asked: list[str] = []
    endpoints = SageMakerEndpoints(STORE, ROLE, IMAGE, "us-east-1", poll_interval=0, store=store,
                                   clients={"service-quotas": answering("ml.g4dn.xlarge")})
    endpoints.monitor = lambda m, e, recreate=False: None
    endpoints.sm.meta.events.register("before-call.sagemaker.*", lambda model, **kw: asked.append(model.name))
    return endpoints, asked


@pytest.fixture
def moto(aws_env):
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="team-bucket")
        store = S3Store("team-bucket", "comfy", s3_client=s3)
        store.put("environments/portraits/versions/v000001.json", json.dumps(MANIFEST).encode())
        yield s3, store


def test_runs_share_one_description_until_the_endpoint_changes_here_or_elsewhere(moto):
    endpoints, asked = provider(*moto)
    endpoints.deploy(MANIFEST)
    asked.clear()
    for _ in range(3):
        assert endpoints.check_ready("Portraits")["version"] == 1
    assert asked.count("DescribeEndpoint") == 1, asked
    endpoints.forget()  # another ComfyUI's notice that the endpoints changed
    endpoints.check_ready("Portraits")
    assert asked.count("DescribeEndpoint") == 2, asked
    endpoints.on_change({"name": "Portraits"})  # a change made here (a deploy's progress, a stop, a delete)
    endpoints.check_ready("Portraits")
    assert asked.count("DescribeEndpoint") == 3, asked


def test_the_async_watch_drops_the_view_when_sagemaker_says_otherwise(moto):
    endpoints, asked = provider(*moto)
    endpoints.deploy(MANIFEST)
    endpoints.check_ready("Portraits")
    endpoints._views[ENDPOINT] = (0.0, endpoints._views[ENDPOINT][1])  # kept long ago: a run would describe it
    assert endpoints.watch._there(ENDPOINT)  # the watch's DescribeEndpoint: as kept, kept anew
    asked.clear()
    endpoints.check_ready("Portraits")
    assert asked.count("DescribeEndpoint") == 0, asked
    endpoints.sm.delete_endpoint(EndpointName=ENDPOINT)  # outside this process
    assert not endpoints.watch._there(ENDPOINT)
    with pytest.raises(Exception, match="no SageMaker endpoint"):
        endpoints.check_ready("Portraits")


def test_a_run_on_an_endpoint_stopped_elsewhere_fails_saying_it_is_stopped(moto):
    s3, store = moto
    here, asked = provider(s3, store)
    here.deploy(MANIFEST)
    here.check_ready("Portraits")  # kept: InService
    elsewhere, _ = provider(s3, store)
    elsewhere.stop("Portraits")  # another ComfyUI: this process is not told
    runtime = boto3.client("sagemaker-runtime", region_name="us-east-1")
    here._clients["sagemaker-runtime"] = runtime
    with Stubber(runtime) as stub:
        stub.add_client_error("invoke_endpoint_async", "ValidationException",
                              f"Endpoint {ENDPOINT} of account 123456789012 not found.", 400)
        with pytest.raises(EndpointNotReady, match="is stopped: start it to run prompts"):
            here.invoke("Portraits", {"execution_id": "x", "prompt": {}}, lambda event: None)
    asked.clear()
    with pytest.raises(EndpointNotReady, match="is stopped"):  # and the next run is refused before invoking
        here.check_ready("Portraits")
    assert asked == ["DescribeEndpoint"]
