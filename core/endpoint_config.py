"""The endpoint config an environment is published with, validated in one place.

`{"kind": "local"}` or
`{"kind": "sagemaker", "instance_type": "ml.g5.xlarge", "instance_types": [...]?, "initial_count": 1,
  "mode": "async" | "realtime", "autoscaling": {"min": 0, "max": 2} | null}`.
SageMaker cannot create an endpoint with 0 instances, so `initial_count` is
at least 1; an async endpoint may scale in to 0 afterwards (autoscaling min 0),
a real-time one may not.

No surprise bills: a config that does not name `autoscaling` gets the safe default, min 0 (an async endpoint
scales to zero when idle; real-time cannot, so min 1) and max `initial_count`. `"autoscaling": null` is the
explicit choice of `initial_count` instances always on, which the form and GET /sagemaker/prices price
before anything runs (core/prices.py). The instance type must be in the configuration's
allowed_instance_types (core/instance_allowlist.py), and counts within its max_instances.

Capacity fallback: `instance_types` is an ordered list of up to five types, the first preferred, sent as one
variant's InstancePools (aws/instance_pools.py): SageMaker provisions from the first type with capacity. Each is
checked as `instance_type` is; `instance_type` is the first of the list (absent: taken from it), so every reader
of `instance_type` (price, quota, AMI, GPUs) reads the preferred type. The types must share their GPU count and
AMI: one variant has one InferenceAmiVersion, one async MaxConcurrentInvocationsPerInstance and one autoscaling
target per instance. A list of one is stored as today's single `instance_type`.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, cast

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator, model_validator
from pydantic_core import PydanticCustomError

from . import instance_allowlist, instance_families
from .errors import BadRequest
from .records import EndpointConfig

INSTANCE_TYPE_RE = re.compile(r"ml\.[a-z0-9-]+\.[a-z0-9]+")  # ml.p6-b200.48xlarge has a hyphen
MODES = ("async", "realtime")
KINDS = ("local", "sagemaker")
DEFAULT_INSTANCE_TYPE = "ml.g5.xlarge"
MAX_INSTANCE_TYPES = 5  # ProductionVariant.InstancePools: 1 to 5 pools, priorities 1 to 5 (SageMaker API reference)


class EndpointConfigInvalid(BadRequest):
    """The endpoint config is out of range or malformed."""

    code = "invalid_endpoint_config"


# The request's shape, declared once: validate() checks with it and the HTTP API's document is its JSON schema
# (server_routes/schemas.py). The stored shape is core/records.py's EndpointConfig (a TypedDict, what mypy
# checks every reader against; what these models dump). The cap on instances is the configuration's
# max_instances, handed in as the validation's context.

class _Closed(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)  # nothing coerced: "1" and true are not 1


RULE = "endpoint_rule"  # a cross-field rule's or the cap's refusal: its message is the user's


def _cap(info: Any) -> int | None:
    return (info.context or {}).get("max_instances")


def _allowed(info: Any) -> tuple[str, ...]:
    return (info.context or {}).get("allowed_instance_types") or instance_allowlist.DEFAULT


class AutoscalingSpec(_Closed):
    min: int = Field(ge=0, description="0: an async endpoint scales in to no instance when idle")
    max: int = Field(ge=1, description="at most the max_instances setting")

    @model_validator(mode="after")
    def _range(self, info: Any) -> AutoscalingSpec:
        if self.min > self.max:
            raise PydanticCustomError(RULE, f"endpoint.autoscaling.min ({self.min}) is over max ({self.max})")
        cap = _cap(info)
        if cap is not None and self.max > cap:
            raise PydanticCustomError(
                RULE, f"endpoint.autoscaling.max ({self.max}) is over the cap of {cap} instances (max_instances)")
        return self


IDLE_STOP = ("minutes without a run after which the endpoint is stopped (core/idle_stop.py); 0: never; absent: "
             "60 for a SageMaker endpoint that keeps an instance (min above 0 or no autoscaling), never otherwise")


class LocalEndpointSpec(_Closed):
    kind: Literal["local"]
    shared: bool = Field(False, description=(
        "true: the team's (core/shared_registry.py): every ComfyUI on the store lists it and runs on it; its worker "
        "listens on this ComfyUI's share_host with a token; false or absent: this ComfyUI's own, on 127.0.0.1"))
    idle_stop_minutes: int | None = Field(None, ge=0, description=IDLE_STOP)


class SageMakerEndpointSpec(_Closed):
    kind: Literal["sagemaker"]
    instance_type: str = Field(DEFAULT_INSTANCE_TYPE, pattern=f"^{INSTANCE_TYPE_RE.pattern}$", description=(
        "an ml.* type of a family core/instance_families.py supports (it refuses the others, saying why); GPU "
        f"ones: {', '.join(instance_families.COMMON_GPU_TYPES)}"))
    instance_types: list[str] | None = Field(None, min_length=1, max_length=MAX_INSTANCE_TYPES, description=(
        "capacity fallback: up to 5 types, the preferred first (instance_type is the first; absent: taken from "
        "it); SageMaker provisions from the first type that has capacity (InstancePools). Each is checked as "
        "instance_type is, none twice, all with the same GPUs per instance; absent or one type: instance_type "
        "alone"))
    initial_count: int = Field(1, ge=1, description="at most the max_instances setting")
    mode: Literal["async", "realtime"] = Field("async", description="async: queued, an hour a run at most; "
                                                                    "realtime: 60 s at most")
    autoscaling: AutoscalingSpec | None = Field(AutoscalingSpec(min=0, max=1), description=(
        "absent: min 0 (async scales to zero when idle; real-time: 1) and max initial_count; null: "
        "initial_count instances always on, billed every hour; min 0 only for async endpoints"))
    idle_stop_minutes: int | None = Field(None, ge=0, description=IDLE_STOP)

    @model_validator(mode="before")
    @classmethod
    def _scale_to_zero_unless_told(cls, data: Any) -> Any:
        if isinstance(data, dict) and "autoscaling" not in data:
            count = data.get("initial_count", 1)
            top = count if type(count) is int and count >= 1 else 1
            data = {**data, "autoscaling": {"min": 1 if data.get("mode") == "realtime" else 0, "max": top}}
        return data

    @model_validator(mode="before")
    @classmethod
    def _first_of_the_list(cls, data: Any) -> Any:
        if isinstance(data, dict) and "instance_type" not in data:
            types = data.get("instance_types")
            if isinstance(types, list) and types and isinstance(types[0], str):
                data = {**data, "instance_type": types[0]}
        return data

    @field_validator("instance_type")
    @classmethod
    def _supported(cls, instance_type: str, info: Any) -> str:
        refused = instance_families.refusal(instance_type) or instance_allowlist.refusal(_allowed(info),
                                                                                         instance_type)
        if refused:
            raise PydanticCustomError(RULE, "endpoint.instance_type: {reason}", {"reason": refused})
        return instance_type

    @field_validator("instance_types")
    @classmethod
    def _each_supported(cls, types: list[str] | None, info: Any) -> list[str] | None:
        listed = types or []
        for i, instance_type in enumerate(listed):
            where = f"endpoint.instance_types[{i}]"
            if not INSTANCE_TYPE_RE.fullmatch(instance_type):
                raise PydanticCustomError(RULE, f"{where} must look like ml.g5.xlarge, got {instance_type[:80]!r}")
            if instance_type in listed[:i]:
                raise PydanticCustomError(RULE, f"{where}: {instance_type} is listed twice")
            refused = instance_families.refusal(instance_type) or instance_allowlist.refusal(_allowed(info),
                                                                                             instance_type)
            if refused:
                raise PydanticCustomError(RULE, "{where}: {reason}", {"where": where, "reason": refused})
        return types

    @field_validator("initial_count")
    @classmethod
    def _under_cap(cls, count: int, info: Any) -> int:
        cap = _cap(info)
        if cap is not None and count > cap:
            raise PydanticCustomError(RULE, f"endpoint.initial_count {count} is over the cap of {cap} instances")
        return count

    @model_validator(mode="after")
    def _realtime_floor(self) -> SageMakerEndpointSpec:
        if self.autoscaling is not None and self.autoscaling.min == 0 and self.mode == "realtime":
            raise PydanticCustomError(RULE, "endpoint.autoscaling.min 0 is only for async endpoints; "
                                                      "real-time needs 1")
        return self

    @model_validator(mode="after")
    def _one_kind_of_instance(self) -> SageMakerEndpointSpec:
        types = self.instance_types or [self.instance_type]
        if types[0] != self.instance_type:
            raise PydanticCustomError(RULE, f"endpoint.instance_type ({self.instance_type}) must be the first of "
                                            f"endpoint.instance_types ({types[0]}), or left out")
        first = types[0]
        for other in types[1:]:
            gpus = (instance_families.gpu_count(first), instance_families.gpu_count(other))
            if gpus[0] != gpus[1] or instance_families.inference_ami(first) != instance_families.inference_ami(other):
                raise PydanticCustomError(RULE, (
                    f"endpoint.instance_types: {other} does not run the worker as {first} does ({_kind(other)} "
                    f"against {_kind(first)}): the fallback types of one endpoint share its AMI and its requests "
                    "per instance, so they need the same number of GPUs"))
        return self


def _kind(instance_type: str) -> str:
    if instance_families.inference_ami(instance_type) is None:
        return "no GPU"
    gpus = instance_families.gpu_count(instance_type)
    return f"{gpus} GPU{'s' if gpus != 1 else ''}"


EndpointSpec = Annotated[LocalEndpointSpec | SageMakerEndpointSpec, Field(discriminator="kind")]
SPEC: TypeAdapter[LocalEndpointSpec | SageMakerEndpointSpec] = TypeAdapter(EndpointSpec)

SHAPE = 'endpoint.autoscaling must be {"min": N, "max": M} or null'
# What a user reads for each of the model's own refusals, by field and pydantic's error type (None: any type).
MESSAGES = {
    ("instance_type", None): "endpoint.instance_type must look like ml.g5.xlarge, got {input!r}",
    ("instance_types", "too_short"): "endpoint.instance_types must name at least one instance type",
    ("instance_types", "too_long"): f"endpoint.instance_types names at most {MAX_INSTANCE_TYPES} instance types "
                                    "(SageMaker's InstancePools)",
    ("instance_types", None): 'endpoint.instance_types must be a list of instance types such as '
                              '["ml.g5.xlarge", "ml.g6.xlarge"], got {input!r}',
    ("mode", None): "endpoint.mode must be async or realtime, got {input!r}",
    ("initial_count", "int_type"): "endpoint.{field} must be a whole number, got {input!r}",
    ("initial_count", "greater_than_equal"):
        "endpoint.initial_count must be at least 1: SageMaker cannot create an endpoint with 0 instances "
        "(an async endpoint scales to 0 afterwards with autoscaling min 0)",
    ("autoscaling.min", "int_type"): "endpoint.{field} must be a whole number, got {input!r}",
    ("autoscaling.max", "int_type"): "endpoint.{field} must be a whole number, got {input!r}",
    ("autoscaling.min", "greater_than_equal"): "endpoint.autoscaling.min must be 0 or more",
    ("shared", None): "endpoint.shared must be true or false, got {input!r}",
    ("idle_stop_minutes", "int_type"): "endpoint.{field} must be a whole number, got {input!r}",
    ("idle_stop_minutes", "greater_than_equal"): "endpoint.idle_stop_minutes must be 0 (never) or more",
    ("autoscaling.max", "greater_than_equal"): "endpoint.autoscaling.max must be at least 1",
}
# The order the fields are judged in, so the first problem named is the same whatever else is wrong.
ORDER = ("instance_type", "instance_types", "mode", "initial_count", "autoscaling", "shared", "idle_stop_minutes", "")
SHAPE_TYPES = ("missing", "extra_forbidden", "model_type", "model_attributes_type", "dict_type")


def validate(config: object, max_instances: int | None,
             allowed_instance_types: tuple[str, ...] = instance_allowlist.DEFAULT) -> EndpointConfig:
    """The normalised config (the defaults filled in), or EndpointConfigInvalid saying which field is wrong
    and why: also for a stored config the configuration's limits have since narrowed (a deploy re-checks).
    max_instances None: no cap on counts (the type is still checked)."""
    try:
        spec = SPEC.validate_python(config, context={"max_instances": max_instances,
                                                     "allowed_instance_types": allowed_instance_types})
    except ValidationError as err:
        raise EndpointConfigInvalid(_message(err, config)) from None
    config = spec.model_dump()
    if config["idle_stop_minutes"] is None:  # absent stays absent: the kind's default (core/idle_stop.py) applies
        del config["idle_stop_minutes"]
    if config.get("shared") is False:  # private stays `{"kind": "local"}`, as every stored config before it
        del config["shared"]
    if config.get("kind") == "sagemaker" and len(config.get("instance_types") or []) <= 1:
        del config["instance_types"]  # no fallback: the config as it was before instance_types
    return cast(EndpointConfig, config)


def _message(err: ValidationError, config: object) -> str:
    problems = err.errors()
    first = problems[0]
    if first["type"] == "model_attributes_type" and first["loc"] == ():
        return 'endpoint must be an object such as {"kind": "local"}'
    if first["type"].startswith("union_tag"):
        kind = config.get("kind") if isinstance(config, dict) else None
        return f"endpoint.kind must be one of {', '.join(KINDS)}, got {kind!r}"
    unknown = sorted(str(p["loc"][1]) for p in problems if p["type"] == "extra_forbidden" and len(p["loc"]) == 2)
    if unknown:
        return f"unknown endpoint fields for kind {first['loc'][0]}: {', '.join(unknown)}"
    problem = min(problems, key=_rank)
    if problem["type"] == RULE:
        return problem["msg"]
    field = ".".join(str(part) for part in problem["loc"][1:])
    if problem["type"] in SHAPE_TYPES and field.startswith("autoscaling"):
        return SHAPE
    if field.startswith("instance_types."):  # an entry that is not a string: the list is what is wrong
        given = config.get("instance_types") if isinstance(config, dict) else None
        field, problem = "instance_types", {**problem, "input": given}
    template = MESSAGES.get((field, problem["type"])) or MESSAGES.get((field, None))
    if template is None:  # a refusal the table does not word (none today): pydantic's own words, with where
        return f"endpoint.{field}: {problem['msg']}"
    return template.format(field=field, input=problem.get("input"))


def _rank(problem: Any) -> tuple[int, int]:
    loc = [str(part) for part in problem["loc"][1:]]
    where = ORDER.index(loc[0]) if loc and loc[0] in ORDER else len(ORDER) - 1
    kind = 0 if problem["type"] in SHAPE_TYPES else 1 if problem["type"] == "int_type" else \
        3 if problem["type"] == RULE else 2
    return where, kind
