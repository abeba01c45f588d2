"""Service Quotas as its API reference describes it, for the endpoint quota a deploy and `aws doctor` read
(aws/quotas.py): answers through botocore's Stubber (each request and answer checked against the service
model, pages chained by NextToken), refusals as the bytes AWS sends, through botocore's own JSON parser.

moto has no ListServiceQuotas: an in-process moto run is given `stubbed_client()` for "service-quotas".
https://docs.aws.amazon.com/servicequotas/2019-06-24/apireference/API_ListServiceQuotas.html
"""

from __future__ import annotations

import json
from typing import Any

import boto3
from botocore.awsrequest import AWSResponse, HeadersDict
from botocore.stub import Stubber

REGION = "us-east-1"
ACCOUNT = "123456789012"
LIST = {"ServiceCode": "sagemaker"}
APPLIED, DEFAULTS = "list_service_quotas", "list_aws_default_service_quotas"


def quota(instance_type: str, value: float, code: str = "L-1234ABCD") -> dict:
    """One ServiceQuota as ListServiceQuotas lists it (the members the reference documents for SageMaker's
    per-type endpoint quotas)."""
    return {"ServiceCode": "sagemaker", "ServiceName": "Amazon SageMaker", "QuotaCode": code,
            "QuotaArn": f"arn:aws:servicequotas:{REGION}:{ACCOUNT}:sagemaker/{code}",
            "QuotaName": f"{instance_type} for endpoint usage", "Value": value, "Unit": "None",
            "Adjustable": True, "GlobalQuota": False}


def listed(stub: Stubber, *pages: list[dict], defaults: list[list[dict]] | None = None) -> None:
    """ListServiceQuotas answering `pages` in turn (no page: one empty page); `defaults`, when given, the
    pages of ListAWSDefaultServiceQuotas the lookup reads next when the applied list lacks the quota."""
    _pages(stub, APPLIED, list(pages) or [[]])
    if defaults is not None:
        _pages(stub, DEFAULTS, defaults or [[]])


def _pages(stub: Stubber, operation: str, pages: list[list[dict]]) -> None:
    # "If additional items exist ... the NextToken response element is present": the next call sends it back.
    for i, page in enumerate(pages):
        answer: dict[str, Any] = {"Quotas": page}
        if i + 1 < len(pages):
            answer["NextToken"] = f"page-{i + 1}"
        stub.add_response(operation, answer, {**LIST, "NextToken": f"page-{i}"} if i else dict(LIST))


def stubbed_client(*pages: list[dict], region: str = REGION) -> tuple[Any, Stubber]:
    """A service-quotas client behind an active Stubber, with `pages` queued (see `listed`)."""
    client = boto3.client("service-quotas", region_name=region)
    stub = Stubber(client)
    stub.activate()
    if pages:
        listed(stub, *pages)
    return client, stub


def answering(instance_type: str, value: float = 4.0, reads: int = 1) -> Any:
    """A service-quotas client that lists the type's endpoint quota `reads` times (one per deploy): what an
    in-process moto run is given, moto having no ListServiceQuotas."""
    client, stub = stubbed_client()
    for _ in range(reads):
        listed(stub, [quota(instance_type, value)])
    return client


class _Body:
    """What botocore reads a response body from (urllib3's `stream()`)."""

    def __init__(self, data: bytes):
        self.data = data

    def stream(self, *args: Any, **kwargs: Any):
        yield self.data

    def close(self) -> None:
        pass


def refusing(kind: str, message: str, status: int = 400, region: str = REGION) -> tuple[Any, list]:
    """A service-quotas client whose every call AWS refuses with error `kind` (AccessDeniedException,
    NoSuchResourceException, ...): the awsJson1_1 body AWS sends ("__type" and "Message"), read by botocore's
    parser into the ClientError the product meets. Returns the client and the requests sent. A 4xx is not
    retried, so one call is one request."""
    client = boto3.client("service-quotas", region_name=region)
    sent: list = []
    body = json.dumps({"__type": f"com.amazonaws.servicequotas#{kind}", "Message": message}).encode()
    headers = {"Content-Type": "application/x-amz-json-1.1", "x-amzn-RequestId": "5e2c1f0a-0000-4000-8000-000000000000"}

    def send(request: Any, **kwargs: Any) -> AWSResponse:
        sent.append(request)
        return AWSResponse(request.url, status, HeadersDict(headers), _Body(body))

    client.meta.events.register("before-send.service-quotas", send)
    return client, sent
