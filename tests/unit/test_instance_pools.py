"""Capacity fallback (issue 35): an endpoint config's ordered `instance_types` (core/endpoint_config.py) sent as
the variant's InstancePools (aws/instance_pools.py), held to the installed botocore's service model by its
Stubber; refused, saying so, where that botocore cannot send them (the lowest boto3 allowed); every listed
type's quota read; and the endpoint view saying which type serves, from DescribeEndpoint's pool summary."""

from __future__ import annotations

import json
import os
from datetime import datetime

import pytest
from comfyui_sagemaker.aws import instance_pools, quotas
from comfyui_sagemaker.aws.errors import QuotaExceeded
from comfyui_sagemaker.aws.sagemaker_endpoints import STARTUP_HEALTH_CHECK_S
from comfyui_sagemaker.core import config as config_mod
from comfyui_sagemaker.core.endpoint_config import EndpointConfigInvalid, validate
from comfyui_sagemaker.core.environments import manifest_key
from comfyui_sagemaker.local.folder_store import FolderStore
from harness.sagemaker_stub import ENDPOINT, stubbed_endpoints
from harness.service_quotas import listed, quota, stubbed_client

SM = {"kind": "sagemaker"}
FALLBACK = ["ml.g5.xlarge", "ml.g6.xlarge", "ml.g4dn.xlarge"]
V1 = f"{ENDPOINT}-v1"


def manifest(types, mode="async"):
    endpoint = validate({**SM, "instance_types": types, "mode": mode}, 4)
    return {"name": "Portraits", "version": 1, "custom_nodes": [], "models": [], "endpoint": endpoint}


# the config: one model, checked as instance_type is, stored as before when there is no fallback

@pytest.mark.floor
def test_a_fallback_list_is_stored_with_its_first_type_as_instance_type():
    assert validate({**SM, "instance_types": FALLBACK}, 4) == {
        "kind": "sagemaker", "instance_type": "ml.g5.xlarge", "instance_types": FALLBACK, "initial_count": 1,
        "mode": "async", "autoscaling": {"min": 0, "max": 1}}
    same = validate({**SM, "instance_type": "ml.g5.xlarge", "instance_types": FALLBACK}, 4)
    assert same["instance_types"] == FALLBACK
    # One type, however it is said, is today's config: nothing new is stored.
    one = validate({**SM, "instance_types": ["ml.g6.xlarge"]}, 4)
    assert one == validate({**SM, "instance_type": "ml.g6.xlarge"}, 4)
    assert "instance_types" not in validate({**SM, "instance_types": None}, 4)


@pytest.mark.floor
@pytest.mark.parametrize("config, said", [
    ({"instance_types": []}, "endpoint.instance_types must name at least one instance type"),
    ({"instance_types": ["ml.g5.xlarge"] * 2}, "endpoint.instance_types[1]: ml.g5.xlarge is listed twice"),
    ({"instance_types": [*FALLBACK, "ml.g6e.xlarge", "ml.g5.2xlarge", "ml.g6.2xlarge"]},
     "endpoint.instance_types names at most 5 instance types"),
    ({"instance_types": "ml.g5.xlarge"}, "endpoint.instance_types must be a list of instance types"),
    ({"instance_types": ["ml.g5.xlarge", 4]}, "endpoint.instance_types must be a list of instance types"),
    ({"instance_types": ["ml.g5.xlarge", "g6"]}, "endpoint.instance_types[1] must look like ml.g5.xlarge, got 'g6'"),
    ({"instance_types": ["ml.g5.xlarge", "ml.p2.xlarge"]}, "endpoint.instance_types[1]: ml.p2.xlarge is not supported"),
    ({"instance_types": ["ml.g5.xlarge", "ml.g7.2xlarge"]}, "endpoint.instance_types[1]: ml.g7.2xlarge is not "
                                                            "supported: NVIDIA Blackwell"),
    ({"instance_types": ["ml.g5.xlarge", "ml.m5.xlarge"]}, "endpoint.instance_types[1]: ml.m5.xlarge is not in this "
                                                           "configuration's allowed_instance_types"),
    ({"instance_type": "ml.g6.xlarge", "instance_types": FALLBACK},
     "endpoint.instance_type (ml.g6.xlarge) must be the first of endpoint.instance_types (ml.g5.xlarge)"),
    ({"instance_types": ["ml.g5.xlarge", "ml.g5.12xlarge"]},
     "endpoint.instance_types: ml.g5.12xlarge does not run the worker as ml.g5.xlarge does (4 GPUs against 1 GPU)"),
])
def test_a_bad_fallback_list_is_refused_saying_which_entry_and_why(config, said):
    with pytest.raises(EndpointConfigInvalid) as err:
        validate({**SM, **config}, 4)
    assert said in err.value.message


@pytest.mark.floor
def test_a_cpu_type_cannot_fall_back_to_a_gpu_one_nor_back():
    """One variant, one InferenceAmiVersion: SageMaker's default AMI (CPU types) and the GPU one do not mix."""
    allowed = ("ml.g5.*", "ml.m5.*", "ml.c5.*")
    with pytest.raises(EndpointConfigInvalid, match="ml.m5.xlarge does not run the worker as ml.g5.xlarge does "
                                                     r"\(no GPU against 1 GPU\)"):
        validate({**SM, "instance_types": ["ml.g5.xlarge", "ml.m5.xlarge"]}, 4, allowed)
    assert validate({**SM, "instance_types": ["ml.m5.xlarge", "ml.c5.xlarge"]}, 4, allowed)["instance_types"] == [
        "ml.m5.xlarge", "ml.c5.xlarge"]


@pytest.fixture
def app(tmp_path, monkeypatch):
    from harness.inprocess import InProcess

    for var in [v for v in os.environ if v.startswith(config_mod.ENV_PREFIX)]:
        monkeypatch.delenv(var)
    started = InProcess(tmp_path).start()
    yield started
    started.stop()


def test_the_publish_route_refuses_a_bad_fallback_list_as_a_400(app):
    r = app.request("POST", "/sagemaker/environments", json={
        "name": "Portraits", "endpoint": {**SM, "instance_types": ["ml.g5.xlarge", "ml.g5.xlarge"]}})
    assert r.status_code == 400, r.text
    assert r.json() == {"error": {"code": "invalid_endpoint_config",
                                  "message": "endpoint.instance_types[1]: ml.g5.xlarge is listed twice"}}
    documented = app.request("GET", "/sagemaker/openapi.json").json()
    body = documented["components"]["schemas"]["EnvironmentPublish"]["properties"]["endpoint"]
    fields = body["oneOf"][1]["properties"]["instance_types"]
    assert fields["anyOf"][0]["maxItems"] == 5 and "capacity fallback" in fields["description"]


# CreateEndpointConfig: InstancePools with priorities 1..n, or exactly today's InstanceType


@pytest.mark.stubber
def test_a_fallback_list_is_sent_as_instance_pools_in_its_order_where_botocore_can(aws_env):
    with stubbed_endpoints(("sagemaker",)) as cloud:
        endpoints, sm = cloud.endpoints, cloud.stubs["sagemaker"]
        if not instance_pools.supported(cloud.clients["sagemaker"]):
            # The lowest boto3 allowed has no InstancePools: refused before any request, saying what to do.
            with pytest.raises(EndpointConfigInvalid, match="cannot send SageMaker's InstancePools .* upgrade boto3"):
                endpoints.endpoint_config_request(manifest(FALLBACK))
            with pytest.raises(EndpointConfigInvalid, match="cannot send"):
                endpoints.deploy(manifest(FALLBACK))  # nothing asked of SageMaker: the Stubber has nothing queued
            return
        request = endpoints.endpoint_config_request(manifest(FALLBACK))
        variant = request["ProductionVariants"][0]
        assert "InstanceType" not in variant  # InstancePools replaces it (Developer Guide)
        assert variant["InstancePools"] == [{"InstanceType": t, "Priority": i} for i, t in enumerate(FALLBACK, 1)]
        assert variant["VariantInstanceProvisionTimeoutInSeconds"] == instance_pools.PROVISION_TIMEOUT_S == 1800
        assert variant["InferenceAmiVersion"] == "al2-ami-sagemaker-inference-gpu-3-1"
        assert variant["ContainerStartupHealthCheckTimeoutInSeconds"] == STARTUP_HEALTH_CHECK_S
        assert request["AsyncInferenceConfig"]["ClientConfig"] == {"MaxConcurrentInvocationsPerInstance": 1}
        # The service model takes it as it is: the Stubber checks the parameters before it answers.
        sm.add_response("create_endpoint_config",
                        {"EndpointConfigArn": "arn:aws:sagemaker:us-east-1:123456789012:endpoint-config/c"}, request)
        cloud.clients["sagemaker"].create_endpoint_config(**request)


@pytest.mark.stubber
def test_one_type_is_sent_as_instance_type_on_every_botocore(aws_env):
    with stubbed_endpoints(("sagemaker",)) as cloud:
        request = cloud.endpoints.endpoint_config_request(manifest(["ml.g6.xlarge"], "realtime"))
    variant = request["ProductionVariants"][0]
    assert variant["InstanceType"] == "ml.g6.xlarge"
    assert "InstancePools" not in variant and "VariantInstanceProvisionTimeoutInSeconds" not in variant


# quotas: each listed type must hold the fleet

@pytest.mark.stubber
def test_every_listed_type_needs_its_own_quota(aws_env):
    sq, stub = stubbed_client()
    listed(stub, [quota("ml.g5.xlarge", 2), quota("ml.g6.xlarge", 0, "L-G6")])
    listed(stub, [quota("ml.g5.xlarge", 2), quota("ml.g6.xlarge", 0, "L-G6")])
    with pytest.raises(QuotaExceeded) as err:
        quotas.check_each(sq, "us-east-1", ["ml.g5.xlarge", "ml.g6.xlarge"], 1, "a new fleet of 1")
    assert "'ml.g6.xlarge for endpoint usage' is 0 in us-east-1" in err.value.message
    assert "ml.g6.xlarge is fallback 2 of the endpoint's instance_types: every type listed must hold the fleet" \
        in err.value.message
    stub.assert_no_pending_responses()


@pytest.mark.stubber
def test_a_quota_that_cannot_be_read_warns_per_type_and_the_rest_are_still_checked(aws_env):
    sq, stub = stubbed_client()
    listed(stub, [quota("ml.g5.xlarge", 2)])
    listed(stub, [], defaults=[[]])  # the region lists no quota for the second type
    listed(stub, [quota("ml.g4dn.xlarge", 4)])
    warning = quotas.check_each(sq, "us-east-1", FALLBACK, 2, "a new fleet of 2")
    assert warning == ("Service Quotas lists no 'ml.g6.xlarge for endpoint usage' in us-east-1: this deploy needs "
                       "2 at once (a new fleet of 2)")
    stub.assert_no_pending_responses()


def test_a_deploy_reads_each_types_quota_before_it_creates_anything(aws_env):
    """A deploy whose second type has no quota is refused before CreateModel (nothing else is queued)."""
    with stubbed_endpoints() as cloud:
        sm, sq = cloud.stubs["sagemaker"], cloud.stubs["service-quotas"]
        sm.add_client_error("describe_endpoint", "ValidationException", f'Could not find endpoint "{ENDPOINT}".',
                            expected_params={"EndpointName": ENDPOINT})
        listed(sq, [quota("ml.g5.xlarge", 4)])
        listed(sq, [quota("ml.g6.xlarge", 0)])
        with pytest.raises(QuotaExceeded, match="ml.g6.xlarge is fallback 2"):
            cloud.endpoints.deploy(manifest(["ml.g5.xlarge", "ml.g6.xlarge"]))


# the view: which type serves, from DescribeEndpoint's ProductionVariantSummary.InstancePools

def described(pools=None, count=2):
    variant = {"VariantName": "AllTraffic", "CurrentInstanceCount": count}
    if pools is not None:
        variant["InstancePools"] = [{"InstanceType": t, "CurrentInstanceCount": n} for t, n in pools]
    return {"EndpointName": ENDPOINT, "EndpointArn": f"arn:aws:sagemaker:us-east-1:123456789012:endpoint/{ENDPOINT}",
            "EndpointConfigName": V1, "EndpointStatus": "InService", "CreationTime": datetime(2026, 1, 1),
            "LastModifiedTime": datetime(2026, 1, 1), "ProductionVariants": [variant]}


@pytest.fixture
def viewed(aws_env, tmp_path):
    store = FolderStore(tmp_path / "store")
    store.create(manifest_key("Portraits", 1), json.dumps(manifest(FALLBACK)).encode())
    with stubbed_endpoints(("sagemaker",), store=store) as cloud:
        yield cloud


def test_the_view_says_the_fallback_type_that_serves(viewed):
    sm = viewed.stubs["sagemaker"]
    sm.add_response("describe_endpoint", described([("ml.g6.xlarge", 2)]), {"EndpointName": ENDPOINT})
    view = viewed.endpoints.get("Portraits")
    assert view["instance_type"] == "ml.g6.xlarge"  # what it bills (core/costs.py prices the view's type)
    assert view["instance_pools"] == [
        {"instance_type": "ml.g5.xlarge", "priority": 1, "instances": 0},
        {"instance_type": "ml.g6.xlarge", "priority": 2, "instances": 2},
        {"instance_type": "ml.g4dn.xlarge", "priority": 3, "instances": 0}]


def test_a_mixed_fleet_shows_the_type_most_instances_run_on_and_an_idle_one_the_preferred(viewed):
    sm = viewed.stubs["sagemaker"]
    sm.add_response("describe_endpoint", described([("ml.g5.xlarge", 1), ("ml.g4dn.xlarge", 2)], 3),
                    {"EndpointName": ENDPOINT})
    sm.add_response("describe_endpoint", described([("ml.g5.xlarge", 1), ("ml.g6.xlarge", 1)]),
                    {"EndpointName": ENDPOINT})
    sm.add_response("describe_endpoint", described([("ml.g5.xlarge", 0)], 0), {"EndpointName": ENDPOINT})
    assert viewed.endpoints.get("Portraits")["instance_type"] == "ml.g4dn.xlarge"
    assert viewed.endpoints.get("Portraits")["instance_type"] == "ml.g5.xlarge"  # a tie: the preferred
    scaled_in = viewed.endpoints.get("Portraits")
    assert scaled_in["instance_type"] == "ml.g5.xlarge" and scaled_in["instances"] == 0


def test_an_endpoint_without_pools_has_no_pools_in_its_view(viewed):
    viewed.stubs["sagemaker"].add_response("describe_endpoint", described(), {"EndpointName": ENDPOINT})
    view = viewed.endpoints.get("Portraits")
    assert view["instance_type"] == "ml.g5.xlarge" and "instance_pools" not in view


def test_an_update_of_a_pooled_endpoint_on_the_same_types_keeps_its_autoscaling(aws_env):
    """DescribeEndpointConfig of a pooled variant has no InstanceType: the update compares the pools, in their
    priorities, with the new version's list; the same list is no new type (the scaling target stays; another
    list deregisters it first, as a new type does: aws/deploy_guardrails.py)."""
    types = ["ml.g5.xlarge", "ml.g6.xlarge"]
    pooled = [{"InstanceType": "ml.g6.xlarge", "Priority": 2}, {"InstanceType": "ml.g5.xlarge", "Priority": 1}]
    assert instance_pools.variant_types({"InstancePools": pooled}) == types
    with stubbed_endpoints() as cloud:
        sm, cw = cloud.stubs["sagemaker"], cloud.stubs["cloudwatch"]
        sm.add_response("describe_endpoint", described([("ml.g5.xlarge", 1)], 1), {"EndpointName": ENDPOINT})
        sm.add_response("describe_endpoint_config", {
            "EndpointConfigName": V1, "EndpointConfigArn": "arn:aws:sagemaker:us-east-1:123456789012:endpoint-config/c",
            "CreationTime": datetime(2026, 1, 1), "AsyncInferenceConfig": {"OutputConfig": {}},
            "ProductionVariants": [{"VariantName": "AllTraffic", "ModelName": V1, "InstancePools": pooled,
                                    "InitialInstanceCount": 1}]}, {"EndpointConfigName": V1})
        sm.add_response("create_model", {"ModelArn": "arn:aws:sagemaker:us-east-1:123456789012:model/m"}, None)
        sm.add_response("create_endpoint_config",
                        {"EndpointConfigArn": "arn:aws:sagemaker:us-east-1:123456789012:endpoint-config/d"}, None)
        cw.add_response("put_metric_alarm", {}, None)  # the rollback alarm; no autoscaling call before the update
        arn = f"arn:aws:sagemaker:us-east-1:123456789012:endpoint/{ENDPOINT}"
        sm.add_response("update_endpoint", {"EndpointArn": arn}, None)
        state = cloud.endpoints.deploy({**manifest(types), "version": 2})
    assert state["state"] == "Updating"


# aws doctor: each type of a pooled endpoint's config is checked

def test_aws_doctor_checks_the_quota_of_every_fallback_type(aws_env):
    from comfyui_sagemaker.aws import doctor

    target = doctor.Target("team-bucket", "comfy", "us-east-1", "")
    sq, stub = stubbed_client()
    listed(stub, [quota("ml.g5.xlarge", 2)])
    listed(stub, [quota("ml.g6.xlarge", 0)])
    lines = {x["name"]: x for x in doctor.type_lines(target, sq, ["ml.g5.xlarge", "ml.g6.xlarge"])}
    assert list(lines) == ["instance quota", "region offers the type", "instance quota, fallback ml.g6.xlarge",
                           "region offers the type, fallback ml.g6.xlarge"]
    assert lines["instance quota"]["status"] == doctor.PASS
    assert lines["instance quota, fallback ml.g6.xlarge"]["status"] == doctor.FAIL
    assert "'ml.g6.xlarge for endpoint usage' is 0" in lines["instance quota, fallback ml.g6.xlarge"]["detail"]
    stub.assert_no_pending_responses()
