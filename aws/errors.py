"""AWS failures in the user's words: one place turns botocore's exceptions into SageMakerErrors."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import Concatenate, ParamSpec, Protocol, TypeVar

from ..core.endpoints import EndpointsNotConfigured
from ..core.errors import SageMakerError


class AwsError(SageMakerError):
    """AWS refused or could not be reached; the message says what to fix."""

    code = "aws_error"


class QuotaExceeded(AwsError):
    """An AWS service quota (ResourceLimitExceeded) stops the request; the message names it."""

    code = "quota_exceeded"


class InstanceTypeRefused(AwsError):
    """SageMaker does not offer this instance type for endpoints here."""

    code = "instance_type_refused"


class AwsNotConfigured(AwsError, EndpointsNotConfigured):
    """Something the SageMaker path needs is missing: credentials, role ARN, image, S3 store."""

    code = "aws_not_configured"


def answer(err: BaseException) -> dict:
    """AWS's parsed answer that a botocore ClientError (EventStreamError among them) carries; {} for any other
    failure (no answer came: a connection error, missing credentials, our own exception)."""
    from botocore.exceptions import ClientError

    return err.response if isinstance(err, ClientError) else {}


def error_code(err: BaseException) -> str:
    """AWS's error code ("AccessDenied", "ValidationException", ...), "" when AWS did not answer."""
    return str(answer(err).get("Error", {}).get("Code", ""))


def error_message(err: BaseException) -> str:
    return str(answer(err).get("Error", {}).get("Message") or err)


def http_status(err: BaseException) -> int:
    return int(answer(err).get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)


def retried(err: BaseException) -> bool:
    """Whether botocore sent this call more than once (its ResponseMetadata counts the retries)."""
    return bool(answer(err).get("ResponseMetadata", {}).get("RetryAttempts", 0))


ROLE_ARN = re.compile(r"arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]{1,512}")


def translate(err: Exception, region: str = "") -> SageMakerError:
    from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError, NoRegionError

    if isinstance(err, NoCredentialsError):
        return AwsNotConfigured("no AWS credentials found (boto3's chain: environment, ~/.aws, instance role)")
    if isinstance(err, NoRegionError):
        return AwsNotConfigured("no AWS region: set `region` in the configuration or AWS_DEFAULT_REGION")
    if isinstance(err, EndpointConnectionError):
        return AwsError(f"cannot reach AWS in region {region or '(default)'}: is the region right? ({err})")
    if isinstance(err, ClientError):
        e = err.response.get("Error", {})
        code, message = e.get("Code", ""), e.get("Message", str(err))
        if code == "ResourceLimitExceeded":
            return QuotaExceeded(f"AWS quota reached: {message} (ask for more in Service Quotas, SageMaker)")
        if code == "ValidationException" and "instance" in message.lower() and "type" in message.lower():
            return InstanceTypeRefused(f"instance type refused: {message}")
        if code in ("AccessDenied", "AccessDeniedException", "UnauthorizedOperation"):
            return AwsError(f"access denied: {message}")
        if code in ("ThrottlingException", "Throttling"):
            return AwsError(f"AWS is throttling requests (retried already): {message}")
        return AwsError(f"{code}: {message}")
    return AwsError(str(err))


class _InRegion(Protocol):
    region: str


P = ParamSpec("P")
R = TypeVar("R")
S = TypeVar("S", bound=_InRegion)


def aws_call(fn: Callable[Concatenate[S, P], R]) -> Callable[Concatenate[S, P], R]:
    """Decorator for methods of objects with a `region` (SageMakerEndpoints): AWS exceptions become
    SageMakerErrors."""

    @functools.wraps(fn)
    def wrapper(self: S, /, *args: P.args, **kwargs: P.kwargs) -> R:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return fn(self, *args, **kwargs)
        except (ClientError, BotoCoreError) as err:
            raise translate(err, self.region) from None

    return wrapper
