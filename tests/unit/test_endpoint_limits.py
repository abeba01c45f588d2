"""The configuration's limits on what an endpoint may cost, held on the server (issue 29), not only in the
browser: max_instances and allowed_instance_types refuse an endpoint config at publish (core), and every
path that creates a SageMaker endpoint config or endpoint (deploy, a publish's deploy, start) refuses a
stored version the limits have since narrowed, before any request reaches SageMaker (botocore's Stubber
with nothing queued: a call would fail the test otherwise). A config without `autoscaling` scales to zero."""

from __future__ import annotations

import json

import pytest
from comfyui_sagemaker.aws.sagemaker_endpoints import SageMakerEndpoints
from comfyui_sagemaker.core import config as config_module
from comfyui_sagemaker.core import instance_allowlist
from comfyui_sagemaker.core.endpoint_config import EndpointConfigInvalid, validate
from comfyui_sagemaker.core.errors import ConfigInvalid
from comfyui_sagemaker.local.folder_store import FolderStore
from harness.sagemaker_stub import ENDPOINT, IMAGE, ROLE, STORE, stubbed_endpoints

SM = {"kind": "sagemaker"}


def manifest(instance_type="ml.g5.xlarge", count=1, scaling=None):
    return {"name": "Portraits", "version": 1, "custom_nodes": [], "models": [], "endpoint": {
        "kind": "sagemaker", "instance_type": instance_type, "initial_count": count, "mode": "async",
        "autoscaling": scaling}}


# --- the safe default ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("given, scaling", [
    ({}, {"min": 0, "max": 1}),
    ({"mode": "async", "initial_count": 2}, {"min": 0, "max": 2}),
    ({"mode": "realtime"}, {"min": 1, "max": 1}),  # real-time cannot scale to zero
])
def test_a_config_without_autoscaling_scales_to_zero(given, scaling):
    assert validate({**SM, **given}, 4)["autoscaling"] == scaling


def test_null_autoscaling_is_the_explicit_always_on_choice():
    assert validate({**SM, "autoscaling": None}, 4)["autoscaling"] is None


# --- allowed_instance_types -------------------------------------------------------------------------------

def test_the_default_allow_list_is_the_gpu_families_the_worker_runs_on():
    assert "ml.g5.*" in instance_allowlist.DEFAULT and "ml.p4d.*" in instance_allowlist.DEFAULT
    assert not any(e.startswith(("ml.m5.", "ml.p2.", "ml.inf2.", "ml.g7.")) for e in instance_allowlist.DEFAULT)


def test_a_type_outside_the_allow_list_is_refused_at_publish():
    with pytest.raises(EndpointConfigInvalid, match="ml.m5.xlarge is not in this configuration's "
                                                    "allowed_instance_types"):
        validate({**SM, "instance_type": "ml.m5.xlarge"}, 4)
    with pytest.raises(EndpointConfigInvalid, match="allowed_instance_types"):
        validate({**SM, "instance_type": "ml.g5.2xlarge"}, 4, ("ml.g5.xlarge", "ml.g4dn.*"))
    assert validate({**SM, "instance_type": "ml.m5.xlarge"}, 4, ("ml.m5.*",))["instance_type"] == "ml.m5.xlarge"


def test_the_allow_list_is_a_configuration_key(tmp_path):
    env = {"COMFYUI_SAGEMAKER_ALLOWED_INSTANCE_TYPES": "ml.g5.xlarge, ml.g6.*"}
    assert config_module.load(tmp_path, env).allowed_instance_types == ("ml.g5.xlarge", "ml.g6.*")
    assert config_module.load(tmp_path, {}).allowed_instance_types == instance_allowlist.DEFAULT
    for bad, why in (("g5.xlarge", "is not an instance type"), ("", "empty"), ("ml.g5.*x", "is not an instance")):
        with pytest.raises(ConfigInvalid, match=why):
            config_module.load(tmp_path, {"COMFYUI_SAGEMAKER_ALLOWED_INSTANCE_TYPES": bad})


# --- every path that creates an endpoint -----------------------------------------------------------------

@pytest.fixture
def stubbed(aws_env, tmp_path):
    store = FolderStore(tmp_path / "store")
    with stubbed_endpoints(monitor=True, store=store, max_instances=2) as cloud:
        yield cloud.endpoints, cloud.stubs["sagemaker"], store


@pytest.mark.parametrize("stored, why", [
    (manifest(count=3), "initial_count 3 is over the cap of 2"),
    (manifest(scaling={"min": 0, "max": 5}), r"autoscaling.max \(5\) is over the cap of 2"),
    (manifest("ml.m5.xlarge"), "not in this configuration's allowed_instance_types"),
])
def test_a_deploy_over_the_limits_is_refused_before_any_request(stubbed, stored, why):
    endpoints, _, _ = stubbed
    with pytest.raises(EndpointConfigInvalid, match=f"version 1 of environment Portraits: .*{why}"):
        endpoints.deploy(stored)


def test_a_start_of_a_version_the_limits_have_since_narrowed_is_refused(stubbed):
    endpoints, sm, store = stubbed
    store.put("environments/portraits/versions/v000001.json",
              json.dumps(manifest(scaling={"min": 0, "max": 4})).encode())
    store.put("endpoints/portraits/stopped.json", json.dumps({
        "environment": "Portraits", "version": 1, "endpoint_config": f"{ENDPOINT}-v1",
        "stopped_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z"}).encode())
    sm.add_client_error("describe_endpoint", "ValidationException", f'Could not find endpoint "{ENDPOINT}".',
                        expected_params={"EndpointName": ENDPOINT})
    with pytest.raises(EndpointConfigInvalid, match=r"autoscaling.max \(4\) is over the cap of 2"):
        endpoints.start("Portraits")  # no CreateEndpoint: the Stubber has none queued


def test_within_the_limits_the_request_is_made():
    endpoints = SageMakerEndpoints(STORE, ROLE, IMAGE, "us-east-1", max_instances=2)
    variant = endpoints.endpoint_config_request(manifest(scaling={"min": 0, "max": 2}))["ProductionVariants"][0]
    assert variant["InstanceType"] == "ml.g5.xlarge" and variant["InitialInstanceCount"] == 1


def test_an_endpoint_deployed_without_autoscaling_says_its_always_on_price(stubbed, caplog):
    endpoints, sm, _ = stubbed
    t0 = "2026-01-01T00:00:00Z"
    sm.add_response("describe_endpoint", {
        "EndpointName": ENDPOINT, "EndpointArn": f"arn:aws:sagemaker:us-east-1:123456789012:endpoint/{ENDPOINT}",
        "EndpointConfigName": f"{ENDPOINT}-v1", "EndpointStatus": "InService", "CreationTime": t0,
        "LastModifiedTime": t0}, {"EndpointName": ENDPOINT})
    sm.add_response("list_endpoint_configs", {"EndpointConfigs": []}, {"NameContains": f"{ENDPOINT}-v"})
    sm.add_response("list_models", {"Models": []}, {"NameContains": f"{ENDPOINT}-v"})
    endpoints.settle(manifest(count=2), ENDPOINT)  # no autoscaling request: the Stubber has none queued
    assert ("has no autoscaling (autoscaling null): keeps 2 × ml.g5.xlarge running: about $2.82/h, $2,056/month"
            in caplog.text)
