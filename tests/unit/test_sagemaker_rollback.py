"""A SageMaker rollback's exact requests (botocore's Stubber, shapes checked against the service model): a kept
version is one UpdateEndpoint to its EndpointConfig; a version whose config is gone gets its model and config made
again from its manifest (the manifest's S3 URI: nothing uploaded); once a version serves, the KEPT_VERSIONS newest
others stay for the next rollback and the older ones go."""

from __future__ import annotations

from datetime import datetime

import pytest
from botocore.stub import ANY
from comfyui_sagemaker.aws.sagemaker_endpoints import KEPT_VERSIONS
from harness.sagemaker_stub import ENDPOINT, SERVICES, STORE, stubbed_endpoints

ARN = "arn:aws:sagemaker:us-east-1:123456789012:"
WHEN = datetime(2026, 1, 1)
pytestmark = pytest.mark.stubber


def v(n: int) -> str:
    return f"{ENDPOINT}-v{n}"


def manifest(version: int) -> dict:
    return {"name": "Portraits", "version": version, "custom_nodes": [], "models": [],
            "endpoint": {"kind": "sagemaker", "instance_type": "ml.g4dn.xlarge", "initial_count": 1, "mode": "async",
                         "autoscaling": None}}


@pytest.fixture
def stubbed(aws_env):
    # Quotas unanswered (a warning, aws/quotas.py); the update's rollback alarm put on CloudWatch (its request
    # is held by tests/unit/test_deploy_guardrails.py); the test drives settle() itself.
    with stubbed_endpoints(SERVICES + ("logs",)) as cloud:
        stub = cloud.stubs["sagemaker"]
        stub.alarms = cloud.stubs["cloudwatch"]
        yield cloud.endpoints, stub, cloud.events


def updated_to(stub, version: int) -> None:
    """The update in place to `version`'s config: its rollback alarm, then UpdateEndpoint with the guardrails
    (tests/unit/test_deploy_guardrails.py holds their exact shape; here the config it names)."""
    stub.alarms.add_response("put_metric_alarm", {}, None)
    stub.add_response("update_endpoint", {"EndpointArn": ARN + "endpoint/e"},
                      {"EndpointName": ENDPOINT, "EndpointConfigName": v(version), "RetainAllVariantProperties": True,
                       "ExcludeRetainedVariantProperties": ANY, "DeploymentConfig": ANY})


def described(config: str, status: str = "InService") -> dict:
    return {"EndpointName": ENDPOINT, "EndpointArn": ARN + f"endpoint/{ENDPOINT}", "EndpointConfigName": config,
            "EndpointStatus": status, "CreationTime": WHEN, "LastModifiedTime": WHEN,
            "ProductionVariants": [{"VariantName": "AllTraffic", "CurrentInstanceCount": 1}]}


def config(name: str) -> dict:
    return {"EndpointConfigName": name, "EndpointConfigArn": ARN + f"endpoint-config/{name}", "CreationTime": WHEN,
            "ProductionVariants": [{"VariantName": "AllTraffic", "ModelName": name, "InstanceType": "ml.g4dn.xlarge",
                                    "InitialInstanceCount": 1}],
            "AsyncInferenceConfig": {"OutputConfig": {"S3OutputPath": f"{STORE}/async/outputs/"}}}


def serving_v3(stub) -> None:
    """The endpoint serves version 3, async on the same instance type: an update in place."""
    stub.add_response("describe_endpoint", described(v(3)), {"EndpointName": ENDPOINT})
    stub.add_response("describe_endpoint_config", config(v(3)), {"EndpointConfigName": v(3)})


def versions(stub, *ns: int) -> None:
    """The endpoint's versions SageMaker lists, each a config and a model."""
    names = [v(n) for n in ns]
    stub.add_response("list_endpoint_configs", {"EndpointConfigs": [
        {"EndpointConfigName": n, "EndpointConfigArn": ARN + f"endpoint-config/{n}", "CreationTime": WHEN}
        for n in names]}, {"NameContains": f"{ENDPOINT}-v"})
    stub.add_response("list_models", {"Models": [
        {"ModelName": n, "ModelArn": ARN + f"model/{n}", "CreationTime": WHEN} for n in names]},
        {"NameContains": f"{ENDPOINT}-v"})


def test_a_kept_version_is_one_update_endpoint_to_its_config_and_nothing_is_created(stubbed):
    endpoints, stub, events = stubbed
    stub.add_response("describe_endpoint_config", config(v(2)), {"EndpointConfigName": v(2)})  # kept
    serving_v3(stub)
    updated_to(stub, 2)
    view = endpoints.rollback(manifest(2))
    assert view["state"] == "Updating" and view["version"] == 2 and events[-1]["version"] == 2


def test_a_version_whose_config_is_gone_is_made_again_from_its_manifest(stubbed):
    endpoints, stub, events = stubbed
    stub.add_client_error("describe_endpoint_config", "ValidationException",
                          f'Could not find endpoint configuration "{ARN}endpoint-config/{v(1)}".',
                          expected_params={"EndpointConfigName": v(1)})
    serving_v3(stub)
    model = endpoints.model_request(manifest(1))
    # the worker reads version 1's manifest from the store, where it and its blobs are: no upload
    assert model["PrimaryContainer"]["Environment"]["SAGEMAKER_MANIFEST_URI"] == \
        f"{STORE}/environments/portraits/versions/v000001.json"
    stub.add_response("create_model", {"ModelArn": ARN + "model/m"}, model)
    stub.add_response("create_endpoint_config", {"EndpointConfigArn": ARN + "endpoint-config/c"},
                      endpoints.endpoint_config_request(manifest(1)))
    updated_to(stub, 1)
    assert endpoints.rollback(manifest(1))["version"] == 1


def test_once_a_version_serves_the_newest_others_are_kept_and_older_ones_removed(stubbed):
    endpoints, stub, events = stubbed
    assert KEPT_VERSIONS == 2
    stub.add_response("describe_endpoint", described(v(5)), {"EndpointName": ENDPOINT})
    versions(stub, *range(1, 6))
    for gone in (v(1), v(2)):  # versions 3 and 4 stay: a rollback to them is one UpdateEndpoint
        stub.add_response("delete_endpoint_config", {}, {"EndpointConfigName": gone})
        stub.add_response("delete_model", {}, {"ModelName": gone})
    assert endpoints.settle(manifest(5), ENDPOINT)["EndpointStatus"] == "InService"
    assert [e["state"] for e in events] == ["InService"]


def test_after_a_rollback_the_version_rolled_back_from_is_kept(stubbed):
    endpoints, stub, events = stubbed
    stub.add_response("describe_endpoint", described(v(4)), {"EndpointName": ENDPOINT})  # rolled back from 5
    versions(stub, 2, 3, 4, 5)
    stub.add_response("delete_endpoint_config", {}, {"EndpointConfigName": v(2)})
    stub.add_response("delete_model", {}, {"ModelName": v(2)})
    # settle reports a failed step on the endpoint rather than raising: none may have failed
    assert endpoints.settle(manifest(4), ENDPOINT)["EndpointStatus"] == "InService"
    assert [e["state"] for e in events] == ["InService"]
