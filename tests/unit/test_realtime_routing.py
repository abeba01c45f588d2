"""A real-time endpoint's variant routes by least outstanding requests (SageMaker's default is random, which
sends prompts to an instance whose ComfyUIs are all busy while another idles); async endpoints take their
requests from SageMaker's queue as the worker has room. The CreateEndpointConfig request through botocore's
Stubber, which validates it against the service model (this suite also runs on the floor botocore)."""

from __future__ import annotations

import pytest
from botocore.stub import ANY
from comfyui_sagemaker.aws.sagemaker_endpoints import STARTUP_HEALTH_CHECK_S
from harness.sagemaker_stub import ENDPOINT, stubbed_endpoints

ARN = "arn:aws:sagemaker:us-east-1:123456789012:"


def manifest(mode: str) -> dict:
    return {"name": "Portraits", "version": 1, "endpoint": {
        "kind": "sagemaker", "instance_type": "ml.g5.12xlarge", "initial_count": 1, "mode": mode,
        "autoscaling": None}}


@pytest.mark.stubber
@pytest.mark.parametrize("mode", ["realtime", "async"])
def test_a_realtime_variant_routes_to_the_least_busy_instance(aws_env, mode):
    name = f"{ENDPOINT}-v1"
    variant = {"VariantName": "AllTraffic", "ModelName": name, "InstanceType": "ml.g5.12xlarge",
               "InitialInstanceCount": 1, "ContainerStartupHealthCheckTimeoutInSeconds": STARTUP_HEALTH_CHECK_S,
               "InferenceAmiVersion": "al2-ami-sagemaker-inference-gpu-3-1"}
    if mode == "realtime":
        variant["RoutingConfig"] = {"RoutingStrategy": "LEAST_OUTSTANDING_REQUESTS"}
    config = {"EndpointConfigName": name, "Tags": ANY, "ProductionVariants": [variant]}
    if mode == "async":
        config["AsyncInferenceConfig"] = ANY
    with stubbed_endpoints() as cloud:
        stub = cloud.stubs["sagemaker"]
        stub.add_client_error("describe_endpoint", "ValidationException", f'Could not find endpoint "{ENDPOINT}".',
                              expected_params={"EndpointName": ENDPOINT})
        stub.add_response("create_model", {"ModelArn": ARN + "model/m"}, None)
        stub.add_response("create_endpoint_config", {"EndpointConfigArn": ARN + "endpoint-config/c"}, config)
        stub.add_response("create_endpoint", {"EndpointArn": ARN + "endpoint/e"},
                          {"EndpointName": ENDPOINT, "EndpointConfigName": name, "Tags": ANY})
        cloud.endpoints.deploy(manifest(mode))
