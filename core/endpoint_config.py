"""The endpoint config an environment is published with, validated in one place.

`{"kind": "local"}` or
`{"kind": "sagemaker", "instance_type": "ml.g5.xlarge", "initial_count": 1,
  "mode": "async" | "realtime", "autoscaling": {"min": 0, "max": 2} | null}`.
SageMaker cannot create an endpoint with 0 instances, so `initial_count` is
at least 1; an async endpoint may scale in to 0 afterwards (autoscaling min 0),
a real-time one may not.
"""

from __future__ import annotations

import re

from . import instance_families
from .errors import BadRequest
from .records import Autoscaling, EndpointConfig

INSTANCE_TYPE_RE = re.compile(r"ml\.[a-z0-9-]+\.[a-z0-9]+")  # ml.p6-b200.48xlarge has a hyphen
MODES = ("async", "realtime")
KIND_FIELDS = {
    "local": {"kind"},
    "sagemaker": {"kind", "instance_type", "initial_count", "mode", "autoscaling"},
}


class EndpointConfigInvalid(BadRequest):
    """The endpoint config is out of range or malformed."""

    code = "invalid_endpoint_config"


def _int(value: object, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise EndpointConfigInvalid(f"endpoint.{field} must be a whole number, got {value!r}")
    return value


def validate(config: object, max_instances: int) -> EndpointConfig:
    """The normalised config, or EndpointConfigInvalid saying which field is wrong and why."""
    if not isinstance(config, dict):
        raise EndpointConfigInvalid('endpoint must be an object such as {"kind": "local"}')
    kind = config.get("kind")
    if kind not in KIND_FIELDS:
        raise EndpointConfigInvalid(f"endpoint.kind must be one of {', '.join(KIND_FIELDS)}, got {kind!r}")
    unknown = sorted(set(config) - KIND_FIELDS[kind])
    if unknown:
        raise EndpointConfigInvalid(f"unknown endpoint fields for kind {kind}: {', '.join(unknown)}")
    if kind == "local":
        return {"kind": "local"}
    instance_type = config.get("instance_type", "ml.g5.xlarge")
    if not isinstance(instance_type, str) or not INSTANCE_TYPE_RE.fullmatch(instance_type):
        raise EndpointConfigInvalid(f"endpoint.instance_type must look like ml.g5.xlarge, got {instance_type!r}")
    refused = instance_families.refusal(instance_type)
    if refused:
        raise EndpointConfigInvalid(f"endpoint.instance_type: {refused}")
    mode = config.get("mode", "async")
    if mode not in MODES:
        raise EndpointConfigInvalid(f"endpoint.mode must be async or realtime, got {mode!r}")
    count = _int(config.get("initial_count", 1), "initial_count")
    if count < 1:
        raise EndpointConfigInvalid(
            "endpoint.initial_count must be at least 1: SageMaker cannot create an endpoint with 0 instances "
            "(an async endpoint scales to 0 afterwards with autoscaling min 0)"
        )
    if count > max_instances:
        raise EndpointConfigInvalid(f"endpoint.initial_count {count} is over the cap of {max_instances} instances")
    given = config.get("autoscaling")
    scaling: Autoscaling | None = None
    if given is not None:
        if not isinstance(given, dict) or set(given) - {"min", "max"} or not {"min", "max"} <= set(given):
            raise EndpointConfigInvalid('endpoint.autoscaling must be {"min": N, "max": M} or null')
        lo, hi = _int(given["min"], "autoscaling.min"), _int(given["max"], "autoscaling.max")
        if lo < 0:
            raise EndpointConfigInvalid("endpoint.autoscaling.min must be 0 or more")
        if lo > hi:
            raise EndpointConfigInvalid(f"endpoint.autoscaling.min ({lo}) is over max ({hi})")
        if hi > max_instances:
            raise EndpointConfigInvalid(
                f"endpoint.autoscaling.max ({hi}) is over the cap of {max_instances} instances (max_instances)"
            )
        if hi < 1:
            raise EndpointConfigInvalid("endpoint.autoscaling.max must be at least 1")
        if lo == 0 and mode == "realtime":
            raise EndpointConfigInvalid("endpoint.autoscaling.min 0 is only for async endpoints; real-time needs 1")
        scaling = {"min": lo, "max": hi}
    return {"kind": "sagemaker", "instance_type": instance_type, "initial_count": count, "mode": mode,
            "autoscaling": scaling}
