"""A worker runs one ComfyUI per GPU, so an endpoint's config follows the instance type's GPUs (the table in
core/instance_families.py): async endpoints take that many requests per instance at once
(AsyncInferenceConfig.ClientConfig.MaxConcurrentInvocationsPerInstance), and the autoscaling target is per
GPU. Requests checked with botocore's Stubber against the service models; the execution role may write
the workers' reports where the worker writes them."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pytest
from botocore.stub import ANY
from comfyui_sagemaker.aws import autoscaling, naming
from comfyui_sagemaker.core.instance_families import COMMON_GPU_TYPES, FAMILIES, gpu_count
from comfyui_sagemaker.worker.coldstart import REPORTS
from harness.sagemaker_stub import ENDPOINT, IMAGE, ROLE, STORE, stubbed_endpoints

ROOT = Path(__file__).resolve().parents[2]
ARN = "arn:aws:sagemaker:us-east-1:123456789012:"
DIM = {"ServiceNamespace": "sagemaker", "ResourceId": naming.resource_id(ENDPOINT),
       "ScalableDimension": "sagemaker:variant:DesiredInstanceCount"}


def manifest(instance_type: str, mode: str = "async", scaling: dict | None = None) -> dict:
    return {"name": "Portraits", "version": 1, "endpoint": {
        "kind": "sagemaker", "instance_type": instance_type, "initial_count": 1, "mode": mode, "autoscaling": scaling}}


@pytest.fixture
def stubbed(aws_env):
    with stubbed_endpoints() as cloud:
        yield cloud.endpoints, cloud.stubs


def test_the_gpu_table():
    assert gpu_count("ml.g5.xlarge") == 1 and gpu_count("ml.g5.12xlarge") == 4 and gpu_count("ml.g5.48xlarge") == 8
    assert gpu_count("ml.p4d.24xlarge") == 8 and gpu_count("ml.g4dn.12xlarge") == 4
    assert gpu_count("ml.m5.large") == 1 and gpu_count("ml.g99.huge") == 1  # not listed: 1
    assert all(gpu_count(t) >= 1 for t in COMMON_GPU_TYPES)
    assert all(isinstance(n, int) and 1 <= n <= 8 for f in FAMILIES.values() for n in f.gpus.values())


def test_targets_are_per_gpu():
    assert autoscaling.targets(1) == {"realtime": 5.0, "async": 2.0}
    assert autoscaling.targets(4) == {"realtime": 20.0, "async": 8.0}
    assert autoscaling.targets(0) == autoscaling.targets(1)


@pytest.mark.stubber
@pytest.mark.parametrize("instance_type, gpus", [("ml.g4dn.xlarge", 1), ("ml.g4dn.12xlarge", 4),
                                                 ("ml.g5.48xlarge", 8)])
def test_an_async_endpoint_takes_as_many_requests_per_instance_as_it_has_gpus(stubbed, instance_type, gpus):
    endpoints, stubs = stubbed
    sm = stubs["sagemaker"]
    sm.add_client_error("describe_endpoint", "ValidationException", f'Could not find endpoint "{ENDPOINT}".',
                        expected_params={"EndpointName": ENDPOINT})
    name = f"{ENDPOINT}-v1"
    sm.add_response("create_model", {"ModelArn": ARN + "model/m"},
                    {"ModelName": name, "ExecutionRoleArn": ROLE, "Tags": ANY, "PrimaryContainer": {
                        "Image": IMAGE, "Environment": {
                            "SAGEMAKER_MANIFEST_URI": f"{STORE}/environments/portraits/versions/v000001.json",
                            "WORKER_MODELS": "eager", "WORKER_INVOCATION_TIMEOUT": "3600", "WORKER_REPORT": "store"}}})
    sm.add_response("create_endpoint_config", {"EndpointConfigArn": ARN + "endpoint-config/c"}, {
        "EndpointConfigName": name, "Tags": ANY, "ProductionVariants": ANY,
        "AsyncInferenceConfig": {
            "OutputConfig": {"S3OutputPath": f"{STORE}/async/outputs/", "S3FailurePath": f"{STORE}/async/failures/"},
            "ClientConfig": {"MaxConcurrentInvocationsPerInstance": gpus}}})
    sm.add_response("create_endpoint", {"EndpointArn": ARN + "endpoint/e"},
                    {"EndpointName": ENDPOINT, "EndpointConfigName": name, "Tags": ANY})
    endpoints.deploy(manifest(instance_type))


def described(config: str) -> dict:
    return {"EndpointName": ENDPOINT, "EndpointArn": ARN + f"endpoint/{ENDPOINT}", "EndpointConfigName": config,
            "EndpointStatus": "InService", "CreationTime": datetime(2026, 1, 1),
            "LastModifiedTime": datetime(2026, 1, 1),
            "ProductionVariants": [{"VariantName": "AllTraffic", "CurrentInstanceCount": 1}]}


@pytest.mark.stubber
@pytest.mark.parametrize("mode, metric, target", [
    ("async", {"CustomizedMetricSpecification": {
        "MetricName": "ApproximateBacklogSizePerInstance", "Namespace": "AWS/SageMaker",
        "Dimensions": [{"Name": "EndpointName", "Value": ENDPOINT}], "Statistic": "Average"}}, 8.0),
    ("realtime", {"PredefinedMetricSpecification": {"PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"}},
     20.0),
])
def test_the_autoscaling_target_scales_with_the_gpus(stubbed, mode, metric, target):
    endpoints, stubs = stubbed
    sm, aas = stubs["sagemaker"], stubs["application-autoscaling"]
    name = f"{ENDPOINT}-v1"
    sm.add_response("describe_endpoint", described(name), {"EndpointName": ENDPOINT})
    aas.add_response("register_scalable_target", {}, {**DIM, "MinCapacity": 1, "MaxCapacity": 3})
    scale_in = {"DisableScaleIn": True} if mode == "async" else {"ScaleInCooldown": 300}
    aas.add_response("put_scaling_policy", {"PolicyARN": "arn:aws:autoscaling:us-east-1:123456789012:p"}, {
        **DIM, "PolicyName": autoscaling.TRACKING_POLICY, "PolicyType": "TargetTrackingScaling",
        "TargetTrackingScalingPolicyConfiguration": {"TargetValue": target, **scale_in,
                                                     "ScaleOutCooldown": 60, **metric}})
    if mode == "async":  # scaled in to min 1 once idle (aws/autoscaling.py; its requests: test_sagemaker_endpoints)
        aas.add_response("put_scaling_policy", {"PolicyARN": "arn:aws:autoscaling:us-east-1:123456789012:i"},
                         {**DIM, "PolicyName": autoscaling.IDLE_POLICY, "PolicyType": "StepScaling",
                          "StepScalingPolicyConfiguration": ANY})
        stubs["cloudwatch"].add_response("put_metric_alarm", {})
    sm.add_response("list_endpoint_configs", {"EndpointConfigs": []}, {"NameContains": f"{ENDPOINT}-v"})
    sm.add_response("list_models", {"Models": []}, {"NameContains": f"{ENDPOINT}-v"})
    endpoints.settle(manifest("ml.g4dn.12xlarge", mode, {"min": 1, "max": 3}), ENDPOINT)


def test_the_execution_role_may_write_the_workers_reports_and_nothing_beside():
    doc = json.loads((ROOT / "aws" / "iam" / "execution-role-policy.json").read_text())
    writes = [s for s in doc["Statement"] if "s3:PutObject" in s["Action"] and s["Effect"] == "Allow"]
    resources = {r for s in writes for r in ([s["Resource"]] if isinstance(s["Resource"], str) else s["Resource"])}
    assert f"arn:aws:s3:::STORE_BUCKET/STORE_PREFIX/{REPORTS}*" in resources
    # async/: SageMaker's answers, the worker's progress and its create-only results (test_async_results_kept.py)
    written = ("blobs/", "async/outputs/", "async/failures/", "async/progress/", "async/results/", REPORTS)
    assert resources == {f"arn:aws:s3:::STORE_BUCKET/STORE_PREFIX/{p}*" for p in written} | {
        "arn:aws:s3:::STORE_BUCKET/STORE_PREFIX/endpoints/*/stopped.json"}  # the idle stop's (worker/idle_stop.py)
