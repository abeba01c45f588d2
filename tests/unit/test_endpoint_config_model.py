"""The endpoint config is one pydantic model (core/endpoint_config.py): validate() checks with it, in the words
the hand-written checker used (each one below, whole), and the OpenAPI document's schema of it IS the model's.
Marked floor: tests/unit/test_boto3_floor.py runs it on the lowest pydantic allowed (2.0)."""

from __future__ import annotations

import pytest
from comfyui_sagemaker.core import endpoint_config
from comfyui_sagemaker.core.endpoint_config import EndpointConfigInvalid, validate
from comfyui_sagemaker.core.records import Autoscaling, EndpointConfig
from comfyui_sagemaker.server_routes import ROUTE_TABLES, openapi, schemas

pytestmark = pytest.mark.floor

SM = {"kind": "sagemaker"}
AT_LEAST_1 = ("endpoint.initial_count must be at least 1: SageMaker cannot create an endpoint with 0 instances "
              "(an async endpoint scales to 0 afterwards with autoscaling min 0)")
SHAPE = 'endpoint.autoscaling must be {"min": N, "max": M} or null'


@pytest.mark.parametrize("config, message", [
    ("local", 'endpoint must be an object such as {"kind": "local"}'),
    (None, 'endpoint must be an object such as {"kind": "local"}'),
    ({}, "endpoint.kind must be one of local, sagemaker, got None"),
    ({"kind": "k8s"}, "endpoint.kind must be one of local, sagemaker, got 'k8s'"),
    ({"kind": 3}, "endpoint.kind must be one of local, sagemaker, got 3"),
    ({"kind": "local", "mode": "async", "instance_type": "x"},
     "unknown endpoint fields for kind local: instance_type, mode"),
    ({**SM, "gpus": 2, "initial_count": 0}, "unknown endpoint fields for kind sagemaker: gpus"),
    ({**SM, "instance_type": "g5.xlarge"}, "endpoint.instance_type must look like ml.g5.xlarge, got 'g5.xlarge'"),
    ({**SM, "instance_type": 5}, "endpoint.instance_type must look like ml.g5.xlarge, got 5"),
    ({**SM, "instance_type": "ml.g5.xlarge\n"}, "endpoint.instance_type must look like ml.g5.xlarge, got "
                                                "'ml.g5.xlarge\\n'"),
    ({**SM, "mode": "batch"}, "endpoint.mode must be async or realtime, got 'batch'"),
    ({**SM, "mode": "batch", "initial_count": 0}, "endpoint.mode must be async or realtime, got 'batch'"),
    ({**SM, "initial_count": "1"}, "endpoint.initial_count must be a whole number, got '1'"),
    ({**SM, "initial_count": True}, "endpoint.initial_count must be a whole number, got True"),
    ({**SM, "initial_count": 1.0}, "endpoint.initial_count must be a whole number, got 1.0"),
    ({**SM, "initial_count": 0}, AT_LEAST_1),
    ({**SM, "initial_count": 9}, "endpoint.initial_count 9 is over the cap of 4 instances"),
    ({**SM, "initial_count": 9, "autoscaling": {"min": -1, "max": 2}},
     "endpoint.initial_count 9 is over the cap of 4 instances"),
    ({**SM, "autoscaling": 3}, SHAPE),
    ({**SM, "autoscaling": {"min": 0}}, SHAPE),
    ({**SM, "autoscaling": {"min": 0, "max": 1, "step": 1}}, SHAPE),
    ({**SM, "autoscaling": {"min": "1", "max": 2}}, "endpoint.autoscaling.min must be a whole number, got '1'"),
    ({**SM, "autoscaling": {"min": -1, "max": True}}, "endpoint.autoscaling.max must be a whole number, got True"),
    ({**SM, "autoscaling": {"min": -1, "max": 2}}, "endpoint.autoscaling.min must be 0 or more"),
    ({**SM, "autoscaling": {"min": 3, "max": 2}}, "endpoint.autoscaling.min (3) is over max (2)"),
    ({**SM, "autoscaling": {"min": 1, "max": 5}},
     "endpoint.autoscaling.max (5) is over the cap of 4 instances (max_instances)"),
    ({**SM, "autoscaling": {"min": 0, "max": 0}}, "endpoint.autoscaling.max must be at least 1"),
    ({**SM, "mode": "realtime", "autoscaling": {"min": 0, "max": 2}},
     "endpoint.autoscaling.min 0 is only for async endpoints; real-time needs 1"),
])
def test_each_refusal_says_what_it_said_before(config, message):
    with pytest.raises(EndpointConfigInvalid) as caught:
        validate(config, 4)
    assert caught.value.message == message
    assert caught.value.code == "invalid_endpoint_config"


def test_what_is_stored_is_the_records_shape_with_the_defaults_filled_in():
    assert validate({"kind": "local"}, 1) == {"kind": "local"}
    full = validate({**SM, "autoscaling": {"max": 2, "min": 0}}, 4)
    assert full == {"kind": "sagemaker", "instance_type": "ml.g5.xlarge", "initial_count": 1, "mode": "async",
                    "autoscaling": {"min": 0, "max": 2}}
    assert list(full) == ["kind", "instance_type", "initial_count", "mode", "autoscaling"]  # the stored order
    # The model's fields are the stored TypedDict's keys (core/records.py), so the two cannot part.
    model = {*endpoint_config.SageMakerEndpointSpec.model_fields, *endpoint_config.LocalEndpointSpec.model_fields}
    assert model == EndpointConfig.__required_keys__ | EndpointConfig.__optional_keys__
    assert set(endpoint_config.AutoscalingSpec.model_fields) == Autoscaling.__required_keys__
    assert validate({**SM, "initial_count": 100}, 100)["initial_count"] == 100  # the cap is the caller's


def test_the_documented_schema_is_the_models():
    spec = endpoint_config.SPEC.json_schema()
    defs = spec["$defs"]
    field = schemas.EnvironmentPublish.model_json_schema()["properties"]["endpoint"]
    local, sagemaker = field["oneOf"]
    assert local == defs["LocalEndpointSpec"]
    autoscaling = sagemaker["properties"]["autoscaling"]["anyOf"][0]
    assert autoscaling == defs["AutoscalingSpec"]
    assert {**sagemaker, "properties": {**sagemaker["properties"], "autoscaling": None}} == {
        **defs["SageMakerEndpointSpec"],
        "properties": {**defs["SageMakerEndpointSpec"]["properties"], "autoscaling": None}}
    assert field["discriminator"] == {"propertyName": "kind"}
    assert sagemaker["properties"]["instance_type"]["pattern"] == f"^{endpoint_config.INSTANCE_TYPE_RE.pattern}$"
    # and the document's body of POST /environments holds it as it is, no reference left dangling
    doc = openapi.document(ROUTE_TABLES)
    body = doc["components"]["schemas"]["EnvironmentPublish"]
    assert body["properties"]["endpoint"]["oneOf"] == field["oneOf"]
    assert "$ref" not in repr(body["properties"]["endpoint"])
