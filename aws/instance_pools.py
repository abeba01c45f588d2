"""Capacity fallback: an endpoint config's ordered `instance_types` as its one variant's InstancePools.

SageMaker provisions from the pool of priority 1 and, on an insufficient capacity error, from the next, until
the instances are up, the pools are exhausted or VariantInstanceProvisionTimeoutInSeconds has passed; at
creation, scale-out and scale-in alike, for real-time and async endpoints. InstancePools replaces the
variant's InstanceType (the two are not sent together). DescribeEndpoint's ProductionVariantSummary lists the
pools with CurrentInstanceCount per type: that is what the endpoint view says serves.
Developer Guide, "Deploy to multiple instance types with instance pools":
https://docs.aws.amazon.com/sagemaker/latest/dg/realtime-endpoints-heterogeneous.html
API reference: https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_InstancePool.html and
https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_InstancePoolSummary.html

The lowest boto3 that requirements.txt allows has no InstancePools in its service model (its client would
refuse the parameter before sending): a config of more than one type is refused there, saying so, and a
single type is sent as InstanceType on every botocore, exactly the request it was before.
"""

from __future__ import annotations

from typing import Any

from ..core.endpoint_config import EndpointConfigInvalid
from ..core.records import EndpointConfig, InstancePoolView

# The time SageMaker spends finding capacity across the pools before the deploy fails (300 to 3600 s): half an
# hour lets a scarce GPU free up after every type was tried once, well within a deploy's follow-up (2 hours),
# and nothing bills while no instance is up. Model download and the container's start are not counted in it.
PROVISION_TIMEOUT_S = 1800


def types(cfg: EndpointConfig) -> list[str]:
    """The config's instance types, the preferred first."""
    return list(cfg.get("instance_types") or [cfg["instance_type"]])


def supported(sm: Any) -> bool:
    """Whether this sagemaker client's service model has ProductionVariant.InstancePools."""
    return "InstancePools" in sm.meta.service_model.shape_for("ProductionVariant").members


def check_sendable(cfg: EndpointConfig, sm: Any) -> None:
    """EndpointConfigInvalid when the config has a fallback the installed botocore cannot send."""
    if len(types(cfg)) > 1 and not supported(sm):
        import botocore

        raise EndpointConfigInvalid(
            f"endpoint.instance_types: this ComfyUI's botocore {botocore.__version__} cannot send SageMaker's "
            "InstancePools (capacity fallback); upgrade boto3 in ComfyUI's Python (pip install -U boto3), or give "
            "one instance type")


def variant_fields(cfg: EndpointConfig, sm: Any) -> dict[str, Any]:
    """The ProductionVariant's instance fields: InstanceType for one type (as always), else InstancePools with
    priorities 1..n in the config's order and the provisioning timeout."""
    listed = types(cfg)
    if len(listed) == 1:
        return {"InstanceType": listed[0]}
    check_sendable(cfg, sm)
    return {"InstancePools": [{"InstanceType": t, "Priority": i} for i, t in enumerate(listed, 1)],
            "VariantInstanceProvisionTimeoutInSeconds": PROVISION_TIMEOUT_S}


def variant_types(variant: dict) -> list[str]:
    """The types of a DescribeEndpointConfig variant, by priority: its pools, or its one InstanceType."""
    pools = variant.get("InstancePools") or []
    if pools:
        return [p["InstanceType"] for p in sorted(pools, key=lambda p: p.get("Priority", 0))]
    return [variant["InstanceType"]] if variant.get("InstanceType") else []


def serving(summary: dict, configured: list[str]) -> list[InstancePoolView] | None:
    """The instances per type of a DescribeEndpoint variant summary, in the config's order (a type it does
    not list after them); None when the endpoint has no pools."""
    pools = summary.get("InstancePools") or []
    if not pools:
        return None
    counts = {p["InstanceType"]: p.get("CurrentInstanceCount", 0) for p in pools}
    order = configured + [t for t in counts if t not in configured]
    return [InstancePoolView(instance_type=t, priority=configured.index(t) + 1 if t in configured else None,
                             instances=counts.get(t, 0)) for t in order]


def serving_type(pools: list[InstancePoolView]) -> str | None:
    """The type most of the instances run on (the preferred one on a tie); None when none runs."""
    running = [p for p in pools if p["instances"] > 0]
    if not running:
        return None
    return max(running, key=lambda p: (p["instances"], -(p["priority"] or len(pools) + 1)))["instance_type"]
