"""SageMaker's per-instance-type endpoint quota, read from Service Quotas by name: one place for `aws doctor`
(aws/doctor.py) and for a deploy's check before it creates anything (aws/sagemaker_endpoints.py).

Service Quotas names it "<instance type> for endpoint usage" (service code `sagemaker`); each type has its own
quota code (L-...), so it is found by name. The quota counts the account's instances of that type in the
region, across every endpoint.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

SERVICE_CODE = "sagemaker"


def quota_name(instance_type: str) -> str:
    return f"{instance_type} for endpoint usage"


def find_quota(sq: Any, name: str) -> dict | None:
    """The quota called `name`, or None when Service Quotas lists none (the region does not offer the type).
    Raises botocore's errors as they come (no right to ask, no answer)."""
    # Applied values first; "for some quotas, only the default values are available" (ListServiceQuotas).
    for paginator in (sq.get_paginator("list_service_quotas"), sq.get_paginator("list_aws_default_service_quotas")):
        for page in paginator.paginate(ServiceCode=SERVICE_CODE):
            for q in page.get("Quotas", []):
                if q.get("QuotaName") == name:
                    return q
    return None


@dataclass(frozen=True)
class Reading:
    """What Service Quotas said of one instance type's endpoint quota: the quota, not listed (quota None), or
    the botocore error that kept it from answering (`failure`: no right to ask, no answer)."""

    name: str
    quota: dict | None = None
    failure: Exception | None = None


def read(sq: Any, instance_type: str) -> Reading:
    """The type's endpoint quota, for a deploy's check and for `aws doctor` alike; only botocore's errors are
    caught (anything else is a bug, not an unanswered quota)."""
    from botocore.exceptions import BotoCoreError, ClientError

    name = quota_name(instance_type)
    try:
        return Reading(name, find_quota(sq, name))
    except (ClientError, BotoCoreError) as err:
        return Reading(name, failure=err)


def check(sq: Any, region: str, instance_type: str, need: int, detail: str, update: bool = False) -> str | None:
    """Refuse (QuotaExceeded, before anything is created) a deploy that needs more instances of the type at
    once than the quota allows; a quota that cannot be read is a warning (returned), never a refusal:
    SageMaker itself still refuses what does not fit (ResourceLimitExceeded). Counts the instances this
    deploy needs, not other endpoints' of the same type (Service Quotas does not say their usage)."""
    from .errors import QuotaExceeded, translate

    reading = read(sq, instance_type)
    name, q = reading.name, reading.quota
    if reading.failure is not None:
        said = translate(reading.failure, region).message
        return f"the quota '{name}' could not be read ({said}): this deploy needs {need} at once ({detail})"
    if q is None:
        return f"Service Quotas lists no '{name}' in {region}: this deploy needs {need} at once ({detail})"
    value = q.get("Value", 0)
    if need > value:
        raise QuotaExceeded(
            f"'{name}' is {value:g} in {region}, and this deploy needs {need} at once ({detail}): request an "
            f"increase in Service Quotas (Amazon SageMaker, '{name}', {q.get('QuotaCode', '?')})"
            + (", or stop the endpoint first (a stopped endpoint is created anew on the new version, without the "
               "old fleet beside it)" if update else ""))
    return None


def check_each(sq: Any, region: str, instance_types: list[str], need: int, detail: str,
               update: bool = False) -> str | None:
    """`check` for each type of an endpoint's capacity fallback (aws/instance_pools.py), the preferred first.
    Every type must hold the whole need: SageMaker may place any of the fleet on any pool (a fleet can be mixed),
    and falls back on a lack of capacity, not of quota, so a fallback type without quota would fail just when it
    is needed. The warnings of quotas that cannot be read are joined."""
    from .errors import QuotaExceeded

    warnings = []
    for i, instance_type in enumerate(instance_types):
        try:
            warning = check(sq, region, instance_type, need, detail, update)
        except QuotaExceeded as err:
            if i == 0:
                raise
            raise QuotaExceeded(f"{err.message}; {instance_type} is fallback {i + 1} of the endpoint's "
                                "instance_types: every type listed must hold the fleet, or leave it out") from None
        if warning:
            warnings.append(warning)
    return "; ".join(warnings) or None
