"""`aws teardown`: everything the stack and this store's endpoints made, checked first, then removed.

Check first, then act: nothing is deleted while a refusal is still possible (endpoints running without
--force, an endpoint SageMaker is busy with, data in the bucket without --delete-data). Then the
endpoints go, and the stack (with the execution role) only once SageMaker has finished deleting them:
"When you delete your endpoint, SageMaker asynchronously deletes associated endpoint resources [...]
Do not delete or revoke the permissions for your ExecutionRoleArn, otherwise SageMaker cannot delete
these resources." (SageMaker API Reference, DeleteEndpoint:
https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_DeleteEndpoint.html). A stopped endpoint
(aws/sagemaker_endpoints.py `stop`) has no endpoint but keeps its config and model: they are found by
their names and store tag (aws/naming.py) and deleted too, as are the CloudWatch log groups SageMaker
and CodeBuild made for this store's endpoints and the image build.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from . import endpoint_logs, endpoint_states, naming, stack
from .autoscaling import Autoscaling
from .errors import error_code, error_message
from .setup import Aws, SetupError, _empty_and_delete, _wait_deleted, describe, outputs

ECR_BATCH = 100  # BatchDeleteImage takes at most 100 image ids (ECR API Reference)
GONE_TIMEOUT_S = 1800.0  # SageMaker takes minutes to delete an endpoint; a stuck one is said, not waited on forever


@dataclass
class Inventory:
    """What teardown would remove, found without changing anything."""

    endpoints: dict[str, str] = field(default_factory=dict)  # name -> status
    configs: list[str] = field(default_factory=list)
    models: list[str] = field(default_factory=list)
    data: list[str] = field(default_factory=list)  # bucket keys that are not the project's build artefacts
    data_count: int = 0
    log_groups: list[str] = field(default_factory=list)


def _not_found(err: Exception) -> bool:
    # DescribeEndpoint of a missing endpoint: ValidationException "Could not find endpoint ...".
    return error_code(err) == "ValidationException" and "Could not find" in error_message(err)


def _ours(sm, arn: str, digest: str) -> bool:
    tags = sm.list_tags(ResourceArn=arn)["Tags"]
    return any(t["Key"] == naming.TAG_STORE and t["Value"] == digest for t in tags)


def _sagemaker_inventory(aws: Aws, store_uri: str, inv: Inventory) -> None:
    sm, digest = aws("sagemaker"), naming.store_digest(store_uri)
    for page in sm.get_paginator("list_endpoints").paginate(NameContains=f"{naming.PREFIX}-"):
        for e in page["Endpoints"]:
            if e["EndpointName"].endswith(f"-{digest}") and _ours(sm, e["EndpointArn"], digest):
                inv.endpoints[e["EndpointName"]] = e["EndpointStatus"]
    # A version's config and model are named <endpoint>-v<n> (naming.versioned_name), stopped or not.
    versioned = re.compile(rf"{naming.PREFIX}-.+-{digest}-v[0-9]+")
    for page in sm.get_paginator("list_endpoint_configs").paginate(NameContains=f"-{digest}-v"):
        inv.configs += [c["EndpointConfigName"] for c in page["EndpointConfigs"] if versioned.fullmatch(
            c["EndpointConfigName"]) and _ours(sm, c["EndpointConfigArn"], digest)]
    for page in sm.get_paginator("list_models").paginate(NameContains=f"-{digest}-v"):
        inv.models += [m["ModelName"] for m in page["Models"]
                       if versioned.fullmatch(m["ModelName"]) and _ours(sm, m["ModelArn"], digest)]


def _data(aws: Aws, bucket: str, prefix: str, inv: Inventory) -> None:
    """Everything but the source zip the image build reads (the build itself writes nothing to the
    bucket: its artifacts are NO_ARTIFACTS). Templates, environments, models, records, results: data."""
    artefacts = {f"{prefix}/{stack.SOURCE_KEY}"}
    for page in aws("s3").get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for o in page.get("Contents", []):
            if o["Key"] not in artefacts:
                inv.data_count += 1
                if len(inv.data) < 5:
                    inv.data.append(o["Key"])


def _log_groups(aws: Aws, store_uri: str, project: str | None, inv: Inventory) -> None:
    """The groups SageMaker made for this store's endpoints, live or gone (their names carry the store's
    digest: aws/naming.py), and CodeBuild's for the image build (/aws/codebuild/<project>, CodeBuild's
    group when the project names none; a build's `logs.groupName` says it). Neither service deletes them,
    and the stack did not make them."""
    digest = naming.store_digest(store_uri)
    ours = re.compile(re.escape(endpoint_logs.log_group(f"{naming.PREFIX}-")) + rf".+-{digest}")
    logs = aws("logs")
    prefixes = [(endpoint_logs.log_group(f"{naming.PREFIX}-"), ours)]
    if project:
        prefixes.append((f"/aws/codebuild/{project}", re.compile(re.escape(f"/aws/codebuild/{project}"))))
    for prefix, pattern in prefixes:
        for page in logs.get_paginator("describe_log_groups").paginate(logGroupNamePrefix=prefix):
            inv.log_groups += [g["logGroupName"] for g in page["logGroups"] if pattern.fullmatch(g["logGroupName"])]


def inventory(aws: Aws, out: dict[str, str]) -> Inventory:
    inv = Inventory()
    bucket, prefix = out.get("StoreBucket"), out.get("StorePrefix", "")
    if bucket:
        _sagemaker_inventory(aws, f"s3://{bucket}/{prefix}", inv)
        _data(aws, bucket, prefix, inv)
        _log_groups(aws, f"s3://{bucket}/{prefix}", out.get("BuildProject"), inv)
    return inv


def refusal(inv: Inventory, bucket: str | None, force: bool, delete_data: bool) -> str | None:
    busy = [f"{n} ({s})" for n, s in inv.endpoints.items() if not endpoint_states.of(s).deletable]
    if busy:
        return (f"SageMaker allows no delete of {', '.join(busy)} until that ends: run teardown again then "
                "(nothing was deleted)")
    if inv.endpoints and not force:
        return (f"{len(inv.endpoints)} endpoint(s) still run ({', '.join(inv.endpoints)}): delete them first, "
                "or run teardown with --force to delete them (nothing was deleted)")
    if inv.data_count and not delete_data:
        return (f"bucket {bucket} still holds objects ({inv.data_count}: {', '.join(inv.data)}"
                f"{', ...' if inv.data_count > len(inv.data) else ''}; templates, environments, models): run "
                "teardown with --delete-data to delete them with it, or empty it yourself (nothing was deleted)")
    return None


def _delete_endpoints(aws: Aws, inv: Inventory, say: Callable[[str], None], poll: float, timeout: float) -> None:
    from botocore.exceptions import ClientError

    sm = aws("sagemaker")
    scaling = Autoscaling(aws("application-autoscaling"), aws("cloudwatch"))
    for name in inv.endpoints:
        say(f"deleting endpoint {name}")
        scaling.remove(name)  # the scalable target names the variant: it goes with the endpoint
        try:
            sm.delete_endpoint(EndpointName=name)
        except ClientError as err:
            if not _not_found(err):
                raise
    waiting, deadline = set(inv.endpoints), time.monotonic() + timeout
    while waiting:
        for name in sorted(waiting):
            try:
                sm.describe_endpoint(EndpointName=name)
            except ClientError as err:
                if not _not_found(err):
                    raise
                waiting.discard(name)
                say(f"endpoint {name} is gone")
        if not waiting:
            break
        if time.monotonic() >= deadline:
            raise SetupError(f"SageMaker did not finish deleting {', '.join(sorted(waiting))} in {timeout:.0f} s; "
                             "the stack and its execution role are kept until it has (SageMaker needs the role "
                             "to finish): run teardown again later")
        time.sleep(poll)


def _delete_versions(aws: Aws, inv: Inventory, say: Callable[[str], None]) -> None:
    from botocore.exceptions import ClientError

    sm = aws("sagemaker")
    for delete, key, names in ((sm.delete_endpoint_config, "EndpointConfigName", inv.configs),
                               (sm.delete_model, "ModelName", inv.models)):
        for name in names:
            try:
                delete(**{key: name})
            except ClientError as err:
                if error_code(err) != "ValidationException":  # already gone
                    raise
    if inv.configs or inv.models:
        say(f"deleted {len(inv.configs)} endpoint config(s) and {len(inv.models)} model(s)")


def _delete_log_groups(aws: Aws, inv: Inventory, say: Callable[[str], None]) -> None:
    from botocore.exceptions import ClientError

    logs = aws("logs")
    for group in inv.log_groups:
        try:
            logs.delete_log_group(logGroupName=group)
        except ClientError as err:
            if error_code(err) != "ResourceNotFoundException":
                raise
        say(f"deleted log group {group}")


def teardown(aws: Aws, name: str, say: Callable[[str], None], force: bool = False, delete_data: bool = False,
             poll: float = 5.0, gone_timeout: float = GONE_TIMEOUT_S) -> None:
    """Endpoints first (they bill), then their configs and models, then the stack, then the endpoints' and
    the build's log groups; the bucket only when it holds nothing but the build's source, or when told to."""
    d = describe(aws, name)
    if d is None:
        say(f"stack {name} does not exist: nothing to remove")
        return
    out = outputs(d)
    bucket = out.get("StoreBucket")
    inv = inventory(aws, out)
    why = refusal(inv, bucket, force, delete_data)
    if why:
        raise SetupError(why)
    _delete_endpoints(aws, inv, say, poll, gone_timeout)
    _delete_versions(aws, inv, say)
    repository = out.get("RepositoryUri", "").rsplit("/", 1)[-1]
    if repository:  # CloudFormation deletes only an empty repository; one tag per build: there may be many
        ecr = aws("ecr")
        images = [i for page in ecr.get_paginator("list_images").paginate(repositoryName=repository)
                  for i in page.get("imageIds", [])]
        for start in range(0, len(images), ECR_BATCH):
            ecr.batch_delete_image(repositoryName=repository, imageIds=images[start:start + ECR_BATCH])
    say(f"deleting stack {name}")
    aws("cloudformation").delete_stack(StackName=name)
    _wait_deleted(aws, name, poll)
    _delete_log_groups(aws, inv, say)  # after the endpoints and the build project: nothing writes to them now
    if bucket:  # only the source zip, or everything when told (checked above)
        _empty_and_delete(aws, bucket, say)
