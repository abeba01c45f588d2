"""`aws doctor`: the self-check an administrator runs on a real account after `aws setup`.

Unlike Connect's Check (aws/connect.py: is each prerequisite there?), the doctor asks whether AWS answers
the way the extension relies on, with real calls on harmless keys under the store's `doctor/` prefix
(deleted at the end): a missing key reads as 404, conditional writes answer 412, the prefix lists, an
endpoint of this store describes and its log reads, the worker image is in ECR with the digest the
endpoint runs, the instance type's endpoint quota is above 0 and the region offers the type.

Each line: {name, status: pass | fail | skip, detail, fix}. "skip" is a check that could not be made here
(nothing to check, no right to ask, or a service that did not answer it): never a pass.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from . import endpoint_logs, instance_pools, naming, quotas
from .connect import IMAGE_URI
from .errors import error_code as _code
from .errors import http_status as _http
from .errors import translate

PASS, FAIL, SKIP = "pass", "fail", "skip"
DEFAULT_INSTANCE_TYPE = "ml.g5.xlarge"  # the endpoint form's default (server_routes/schemas.py)
PREFIX = "doctor/"
SESSION_NAME = "comfyui-sagemaker-doctor"
MEDIA_TYPES = ["application/vnd.oci.image.index.v1+json", "application/vnd.docker.distribution.manifest.list.v2+json",
               "application/vnd.oci.image.manifest.v1+json", "application/vnd.docker.distribution.manifest.v2+json"]
DENIED = ("AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "403")
# Answers that say "this service did not do the check", not "the account is wrong": S3's 501 NotImplemented
# ("a header you provided implies functionality that is not implemented": an S3-compatible store without
# conditional writes), or AWS's own 5xx. The line is a skip with the reason, never a pass.
UNANSWERED = ("NotImplemented", "InternalFailure", "InternalError", "ServiceUnavailable")

Client = Callable[[str], Any]


@dataclass(frozen=True)
class Target:
    """What the doctor checks: the store, the worker image, the instance type endpoints are to run on."""

    bucket: str
    prefix: str
    region: str
    image_uri: str
    instance_type: str | None = None  # None: the first endpoint's, else DEFAULT_INSTANCE_TYPE

    @property
    def store_uri(self) -> str:  # as stores.store_uri names an S3 store (the endpoints' tag is its digest)
        return f"s3://{self.bucket}/{self.prefix.strip('/')}".rstrip("/")

    def key(self, name: str) -> str:
        prefix = self.prefix.strip("/")
        return f"{prefix + '/' if prefix else ''}{PREFIX}{name}"


def line(name: str, status: str, detail: str, fix: str = "") -> dict:
    return {"name": name, "status": status, "detail": detail, "fix": fix}


def failed(lines: Iterable[dict]) -> bool:
    return any(x["status"] == FAIL for x in lines)


def _unanswered(err: Exception) -> bool:
    return _code(err) in UNANSWERED or _http(err) >= 500


def _words(err: Exception, region: str = "") -> str:
    return translate(err, region).message


def run(target: Target, client: Client, assume_roles: Iterable[str] = (),
        as_role: Callable[[dict], Client] | None = None) -> list[dict]:
    """Every check, in order. `assume_roles`: role ARNs whose store reads are tried too, each through
    sts:AssumeRole (`as_role` makes that role's clients from its credentials)."""
    out = _store(target, client("s3"), "")
    for arn in assume_roles:
        out += _as_role(target, client, arn, as_role or _role_clients(target.region))
    endpoint = _project_endpoint(target, client("sagemaker"), out)
    described = _describe(target, client("sagemaker"), endpoint, out)
    out.append(_logs(target, client("logs"), endpoint))
    out.append(_image(target, client("ecr"), described))
    types = [target.instance_type] if target.instance_type else \
        _instance_types(client("sagemaker"), described) or [DEFAULT_INSTANCE_TYPE]
    out += type_lines(target, client("service-quotas"), types)
    return out


# --- the store, under doctor/ ---------------------------------------------------------------------------

def _store(target: Target, s3: Any, who: str, writes: bool = True) -> list[dict]:
    """HEAD of a missing key, then (writes) a conditional create, a second create, a replace with a wrong
    If-Match, ListObjectsV2 of the prefix and the clean-up."""
    from botocore.exceptions import ClientError

    out = [_head_missing(target, s3, who)]
    key = target.key(f"{uuid.uuid4().hex}.txt")
    if not writes:
        out.append(_list(target, s3, who, None))
        return out
    try:
        s3.put_object(Bucket=target.bucket, Key=key, Body=b"aws doctor", IfNoneMatch="*")
    except ClientError as err:
        out.append(line(f"conditional create{who}", FAIL, f"PUT If-None-Match: * of a new key: {_words(err)}",
                        f"allow s3:PutObject on s3://{target.bucket}/{target.key('*')} (the stack's DesignerPolicy)"))
        out.append(_list(target, s3, who, None))
        return out
    out.append(line(f"conditional create{who}", PASS, f"created s3://{target.bucket}/{key} with If-None-Match: *"))
    # AWS: a PUT with If-None-Match: * on a key that exists, or with an If-Match ETag that differs, fails
    # with 412 Precondition Failed (https://docs.aws.amazon.com/AmazonS3/latest/userguide/conditional-writes.html).
    # The store's templates, leases and blobs rely on both.
    out.append(_expect_412(f"create of an existing key{who}", lambda: s3.put_object(
        Bucket=target.bucket, Key=key, Body=b"aws doctor again", IfNoneMatch="*"), "If-None-Match: *"))
    out.append(_expect_412(f"replace with a wrong ETag{who}", lambda: s3.put_object(
        Bucket=target.bucket, Key=key, Body=b"aws doctor replaced", IfMatch='"0123456789abcdef0123456789abcdef"'),
        "a wrong If-Match"))
    out.append(_list(target, s3, who, key))
    out.append(_clean_up(target, s3, who, key))
    return out


def _head_missing(target: Target, s3: Any, who: str) -> dict:
    from botocore.exceptions import ClientError

    name, key = f"missing key reads as 404{who}", target.key(f"absent-{uuid.uuid4().hex}")
    try:
        s3.head_object(Bucket=target.bucket, Key=key)
    except ClientError as err:
        status = _http(err) or (int(_code(err)) if _code(err).isdigit() else 0)
        if status == 404:
            return line(name, PASS, f"HEAD s3://{target.bucket}/{key}: 404")
        if status == 403:
            # AWS answers a missing key with 404 only to a caller allowed s3:ListBucket on it, else 403
            # (HeadObject's API reference, "Permissions"); the extension reads 403 as a refusal.
            return line(name, FAIL, f"HEAD of a missing key answered 403, not 404: these credentials lack "
                        f"s3:ListBucket on s3://{target.bucket} for this prefix",
                        f"allow s3:ListBucket on arn:aws:s3:::{target.bucket} without an s3:prefix condition (update "
                        "the stack with aws setup, or add it to the policy of these credentials)")
        return line(name, FAIL, f"HEAD of a missing key: {_words(err)}", "check the bucket's name and region")
    return line(name, FAIL, f"HEAD s3://{target.bucket}/{key} found an object under a random name",
                "something answers every key: check the bucket and any S3 proxy in between")


def _expect_412(name: str, write: Callable[[], Any], what: str) -> dict:
    from botocore.exceptions import ClientError

    try:
        write()
    except ClientError as err:
        if _http(err) == 412 or _code(err) == "PreconditionFailed":
            return line(name, PASS, f"{what} answered 412 Precondition Failed, as AWS documents")
        if _unanswered(err):
            return line(name, SKIP, f"this S3 did not evaluate {what} ({_code(err) or _http(err)})",
                        "run the doctor against AWS itself")
        return line(name, FAIL, f"{what}: {_words(err)}", "the store needs S3's conditional writes: use AWS S3 itself")
    return line(name, FAIL, f"{what} was accepted and overwrote the object: this S3 ignores conditional writes",
                "use AWS S3 itself (or an S3 that honours If-None-Match and If-Match); two publishes could overwrite "
                "each other otherwise")


def _list(target: Target, s3: Any, who: str, key: str | None) -> dict:
    from botocore.exceptions import ClientError

    name, prefix = f"list the prefix{who}", target.key("")
    try:
        listed = s3.list_objects_v2(Bucket=target.bucket, Prefix=prefix, MaxKeys=1000)
    except ClientError as err:
        return line(name, FAIL, f"ListObjectsV2 of s3://{target.bucket}/{prefix}: {_words(err)}",
                    f"allow s3:ListBucket on arn:aws:s3:::{target.bucket} for the store's prefix")
    keys = {o["Key"] for o in listed.get("Contents", [])}
    if key is not None and key not in keys and not listed.get("IsTruncated"):
        return line(name, FAIL, f"ListObjectsV2 of {prefix} does not show {key}, written just before",
                    "check that nothing else serves this bucket's name (an S3 proxy, another region)")
    return line(name, PASS, f"ListObjectsV2 of s3://{target.bucket}/{prefix}: {len(keys)} key(s)")


def _clean_up(target: Target, s3: Any, who: str, key: str) -> dict:
    from botocore.exceptions import ClientError

    try:
        s3.delete_object(Bucket=target.bucket, Key=key)
    except ClientError as err:
        return line(f"clean-up{who}", FAIL, f"could not delete s3://{target.bucket}/{key}: {_words(err)}",
                    "delete it yourself, and allow s3:DeleteObject on the store's prefix")
    return line(f"clean-up{who}", PASS, f"deleted s3://{target.bucket}/{key}")


def _role_clients(region: str) -> Callable[[dict], Client]:
    def make(credentials: dict) -> Client:
        import boto3

        session = boto3.session.Session(aws_access_key_id=credentials["AccessKeyId"],
                                        aws_secret_access_key=credentials["SecretAccessKey"],
                                        aws_session_token=credentials["SessionToken"], region_name=region or None)
        return session.client

    return make


def _as_role(target: Target, client: Client, arn: str, as_role: Callable[[dict], Client]) -> list[dict]:
    """The store's reads as another role (an artist's, the gateway's): its writes are its own policy's, so
    only HEAD of a missing key and the listing, which every role of the stack needs."""
    from botocore.exceptions import ClientError

    who = f" (as {arn.rsplit('/', 1)[-1]})"
    try:
        creds = client("sts").assume_role(RoleArn=arn, RoleSessionName=SESSION_NAME)["Credentials"]
    except ClientError as err:
        return [line(f"assume role{who}", FAIL, f"sts:AssumeRole {arn}: {_words(err)}",
                     "let these credentials assume the role (its trust policy and sts:AssumeRole), or leave it out")]
    return [line(f"assume role{who}", PASS, f"assumed {arn}"),
            *_store(target, as_role(creds)("s3"), who, writes=False)]


# --- SageMaker, logs, image -----------------------------------------------------------------------------

def _project_endpoint(target: Target, sm: Any, out: list[dict]) -> str | None:
    """The first endpoint this store deployed (tagged with its digest, aws/naming.py), or None."""
    from botocore.exceptions import ClientError

    digest = naming.store_digest(target.store_uri)
    try:
        for page in sm.get_paginator("list_endpoints").paginate(NameContains=f"{naming.PREFIX}-"):
            for e in page["Endpoints"]:
                tags = {t["Key"]: t["Value"] for t in sm.list_tags(ResourceArn=e["EndpointArn"])["Tags"]}
                if tags.get(naming.TAG_STORE) == digest:
                    return e["EndpointName"]
    except ClientError as err:
        out.append(line("endpoints", FAIL, f"ListEndpoints: {_words(err, target.region)}",
                        "attach the stack's DesignerPolicy (sagemaker:ListEndpoints, sagemaker:ListTags)"))
    return None


def _describe(target: Target, sm: Any, endpoint: str | None, out: list[dict]) -> dict | None:
    from botocore.exceptions import ClientError

    if endpoint is None:
        out.append(line("describe endpoint", SKIP, "this store has no endpoint yet",
                        "deploy an environment, then run the doctor again to check the endpoint and its log"))
        return None
    try:
        d = sm.describe_endpoint(EndpointName=endpoint)
    except ClientError as err:
        out.append(line("describe endpoint", FAIL, f"DescribeEndpoint {endpoint}: {_words(err, target.region)}",
                        "attach the stack's DesignerPolicy (sagemaker:DescribeEndpoint)"))
        return None
    state = d.get("EndpointStatus", "?")
    if state == "Failed":
        out.append(line("describe endpoint", FAIL, f"{endpoint} is Failed: {d.get('FailureReason', 'no reason given')}",
                        "read its log (the Endpoints panel), fix the environment, deploy again"))
    else:
        out.append(line("describe endpoint", PASS, f"{endpoint}: {state}"))
    return d


def _logs(target: Target, logs: Any, endpoint: str | None) -> dict:
    from botocore.exceptions import ClientError

    if endpoint is None:
        return line("endpoint log", SKIP, "no endpoint, so no log to read")
    try:
        text = endpoint_logs.read_logs(logs, endpoint, 1)
    except ClientError as err:
        if _code(err) in DENIED:
            return line("endpoint log", FAIL, f"reading {endpoint_logs.log_group(endpoint)}: {_words(err)}",
                        "allow logs:DescribeLogStreams, logs:GetLogEvents and logs:FilterLogEvents on the log group "
                        "/aws/sagemaker/Endpoints/* (the stack's DesignerPolicy)")
        if _unanswered(err):
            return line("endpoint log", SKIP, f"CloudWatch Logs did not answer: {_words(err)}")
        return line("endpoint log", FAIL, _words(err, target.region), "check the region")
    said = text.strip().splitlines()
    return line("endpoint log", PASS, f"{endpoint_logs.log_group(endpoint)} readable"
                + (f": {said[-1][:200]}" if said else ""))


def _resolved_digest(described: dict | None) -> str | None:
    """The digest SageMaker resolved the image to when it deployed the endpoint (DeployedImages)."""
    for variant in (described or {}).get("ProductionVariants", []):
        for image in variant.get("DeployedImages", []):
            resolved = image.get("ResolvedImage", "")
            if "@" in resolved:
                return resolved.rsplit("@", 1)[1]
    return None


def _image(target: Target, ecr: Any, described: dict | None) -> dict:
    from botocore.exceptions import ClientError

    m = IMAGE_URI.fullmatch(target.image_uri or "")
    if not m:
        return line("worker image", FAIL, f"{target.image_uri or 'no worker image URI'} is not an ECR image URI",
                    "run aws setup (it builds and names the image), or set worker_image_uri")
    _, _, repository, tag, pinned = m.groups()
    image_id = {"imageDigest": pinned} if pinned else {"imageTag": tag or "latest"}
    try:
        found = ecr.batch_get_image(repositoryName=repository, imageIds=[image_id], acceptedMediaTypes=MEDIA_TYPES)
    except ClientError as err:
        if _code(err) == "RepositoryNotFoundException":
            return line("worker image", FAIL, f"ECR has no repository {repository} in this account and region",
                        "run aws setup (it makes the repository and builds the image)")
        return line("worker image", FAIL, f"BatchGetImage {repository}: {_words(err, target.region)}",
                    "allow ecr:BatchGetImage on the worker repository (the stack's DesignerPolicy)")
    images = found.get("images") or []
    if not images:
        return line("worker image", FAIL, f"{target.image_uri} is not in ECR",
                    "build it with aws setup (or push it, README: Deploy on AWS)")
    digest = images[0].get("imageId", {}).get("imageDigest", "")
    if pinned and digest and digest != pinned:
        return line("worker image", FAIL, f"{target.image_uri} names {pinned}, ECR has {digest}",
                    "run aws setup again so the configuration names the image ECR has")
    running = _resolved_digest(described)
    if described and running and digest and running != digest:
        return line("worker image", FAIL, f"{described['EndpointName']} runs {running}; {target.image_uri} is now "
                    f"{digest}", "deploy the environment again so its endpoint runs the image the stack names")
    return line("worker image", PASS, f"{repository}@{digest or '?'}" + (", the image the endpoint runs" if running
                                                                        else ""))


def _instance_types(sm: Any, described: dict | None) -> list[str]:
    """The endpoint's instance types: its one type, or its capacity fallback's pools by priority."""
    if not described or not described.get("EndpointConfigName"):
        return []
    try:
        config = sm.describe_endpoint_config(EndpointConfigName=described["EndpointConfigName"])
    except Exception:  # noqa: BLE001 - only a default for the quota: the default type is checked instead
        return []
    variants = config.get("ProductionVariants") or [{}]
    return instance_pools.variant_types(variants[0])


def type_lines(target: Target, sq: Any, instance_types: list[str]) -> list[dict]:
    """The quota and region lines of each type, the preferred first; a fallback type's named after it (each
    needs its own quota: aws/quotas.py check_each)."""
    out = []
    for i, instance_type in enumerate(instance_types):
        quota, offered = _quota(target, sq, instance_type)
        pair = [quota, _region(target, instance_type, offered)]
        out += pair if i == 0 else [{**x, "name": f"{x['name']}, fallback {instance_type}"} for x in pair]
    return out


# --- the instance type: quota and region ----------------------------------------------------------------

def _quota(target: Target, sq: Any, instance_type: str) -> tuple[dict, bool | None]:
    """The quota's line, and whether the region lists the type (None: not known)."""
    reading = quotas.read(sq, instance_type)
    name, q, err = reading.name, reading.quota, reading.failure
    if err is not None:
        why = ("these credentials may not read Service Quotas" if _code(err) in DENIED
               else "Service Quotas did not answer")
        return line("instance quota", SKIP, f"{why} ({_words(err, target.region)})",
                    "run aws doctor with credentials allowed servicequotas:ListServiceQuotas and "
                    "servicequotas:ListAWSDefaultServiceQuotas, or look in the Service Quotas console"), None
    if q is None:
        return line("instance quota", FAIL, f"Service Quotas lists no '{name}' for SageMaker in {target.region}",
                    "choose an instance type this region offers for endpoints"), False
    value = q.get("Value", 0)
    if value < 1:
        return line("instance quota", FAIL, f"'{name}' is {value:g} in {target.region}: no endpoint can start",
                    f"request an increase in Service Quotas: Amazon SageMaker, '{name}' ({q.get('QuotaCode', '?')}), "
                    "at least the endpoint's instance count"), True
    return line("instance quota", PASS, f"'{name}': {value:g} instance(s)"), True


def _api_types() -> set[str]:
    import botocore.session

    model = botocore.session.get_session().get_service_model("sagemaker")
    return set(model.shape_for("ProductionVariantInstanceType").enum)


def _region(target: Target, instance_type: str, offered: bool | None) -> dict:
    # botocore's ProductionVariantInstanceType enum names every type SageMaker knows, in any region: it
    # says whether the name is real, not whether this region has it. The regional answer is Service
    # Quotas' list for the region (a type it lists no endpoint quota for cannot be deployed there).
    if instance_type not in _api_types():
        return line("region offers the type", FAIL, f"SageMaker's API does not know {instance_type}",
                    "choose an instance type from SageMaker's list (the endpoint form's choices)")
    if offered is None:
        return line("region offers the type", SKIP, f"{instance_type} is a SageMaker instance type (botocore's list, "
                    f"not regional); whether {target.region} offers it needs Service Quotas",
                    "see the instance quota line")
    if not offered:
        return line("region offers the type", FAIL, f"{target.region} lists no endpoint quota for {instance_type}",
                    "choose another instance type, or a region that offers it")
    return line("region offers the type", PASS, f"{target.region} has an endpoint quota for {instance_type}")
