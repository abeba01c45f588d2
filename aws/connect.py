"""The Connect panel's Check: each prerequisite of the S3 store and SageMaker endpoints, tried for real,
with what to do when it fails. Credentials only ever come from boto3's chain and are never shown.

Each result: {name, status: ok | warning | failed, detail, fix}. "warning" is a check AWS cannot answer
here (a permission simulation this account or endpoint does not offer); "failed" blocks the setup.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable
from typing import Any

from ..core.config import Config
from . import naming
from .errors import translate

# The designer's main actions, for IAM's simulator (the whole list is aws/iam/designer-policy.json), each on the
# resource it acts on: the simulator evaluates every action of a call on every resource ARN of that call
# (IAM API Reference, "SimulatePrincipalPolicy": ActionNames, ResourceArns), so a call per resource.
# {kind: actions}; the kinds' ARNs are made by _simulated_resources.
SIMULATED = {
    "model": ("sagemaker:CreateModel",),
    "endpoint-config": ("sagemaker:CreateEndpointConfig",),
    "endpoint": ("sagemaker:CreateEndpoint", "sagemaker:UpdateEndpoint", "sagemaker:DeleteEndpoint",
                 "sagemaker:InvokeEndpointAsync"),
    "scalable-target": ("application-autoscaling:RegisterScalableTarget",),
    "store": ("s3:PutObject",),
    "execution-role": ("iam:PassRole",),
}
DESIGNER_ACTIONS = tuple(a for actions in SIMULATED.values() for a in actions)
# The request context AWS gives PassRole in CreateModel: the designer policy allows it only to SageMaker
# ("Grant a user permissions to pass a role to an AWS service": iam:PassedToService). Without it the simulator
# lists the key in MissingContextValues and answers implicitDeny.
PASSED_TO_SAGEMAKER = [{"ContextKeyName": "iam:PassedToService", "ContextKeyValues": ["sagemaker.amazonaws.com"],
                        "ContextKeyType": "string"}]
IMAGE_URI = re.compile(r"(\d{12})\.dkr\.ecr\.([a-z0-9-]+)\.amazonaws\.com(?:\.cn)?/([^:@]+)(?::([^@]+))?(?:@(.+))?")


def result(name: str, status: str, detail: str, fix: str = "") -> dict:
    return {"name": name, "status": status, "detail": detail, "fix": fix}


def check(config: Config, client: Callable[[str], Any]) -> list[dict]:
    """Every check, in order; later ones are skipped (failed, 'needs credentials') when a basic one fails."""
    out: list[dict] = []
    try:
        me = client("sts").get_caller_identity()
        out.append(result("credentials", "ok", f"account {me['Account']} ({me['Arn'].split(':')[-1]})"))
    except Exception as err:
        out.append(result("credentials", "failed", translate(err, config.region).message,
                          "configure AWS credentials for boto3 (environment, ~/.aws, SSO or an instance role)"))
        return out
    account = me["Account"]
    out.append(result("region", "ok" if config.region else "warning", config.region or "boto3's default",
                      "" if config.region else "set region in the configuration"))
    out.append(_bucket(config, client))
    out.append(_role(config, client, account))
    out.append(_image(config, client, account))
    out.append(_permissions(me["Arn"], config, client))
    return out


def _bucket(config: Config, client: Callable[[str], Any]) -> dict:
    if config.store != "s3" or not config.s3_bucket:
        return result("bucket", "failed", "the store is not S3", "set store to s3 and s3_bucket (or run aws setup)")
    s3 = client("s3")
    prefix = config.s3_prefix.strip("/")
    probe = f"{prefix + '/' if prefix else ''}.connect-check-{uuid.uuid4().hex}"
    try:
        # What the store does (a LIST under its prefix, then a write), not HeadBucket: the bucket's existence
        # is not the question, and a LIST is what a policy scoped to the store's prefix still allows.
        s3.list_objects_v2(Bucket=config.s3_bucket, Prefix=f"{prefix}/" if prefix else "", MaxKeys=1)
        s3.put_object(Bucket=config.s3_bucket, Key=probe, Body=b"")
        s3.delete_object(Bucket=config.s3_bucket, Key=probe)
    except Exception as err:
        return result("bucket", "failed", f"s3://{config.s3_bucket}: {translate(err, config.region).message}",
                      "check the bucket's name and region, and that these credentials may read and write it")
    return result("bucket", "ok", f"s3://{config.s3_bucket}/{config.s3_prefix} reachable and writable")


def _role(config: Config, client: Callable[[str], Any], account: str) -> dict:
    arn = config.sagemaker_role_arn
    if not arn:
        return result("execution role", "failed", "sagemaker_role_arn is not set", "run aws setup, or set it")
    role_account = arn.split(":")[4] if arn.count(":") >= 5 else ""
    if role_account != account:
        return result("execution role", "failed", f"the role is in account {role_account or '?'}, the credentials "
                      f"are account {account}'s", "use credentials of the account the stack is in")
    try:
        role = client("iam").get_role(RoleName=arn.rsplit("/", 1)[-1])["Role"]
    except Exception as err:
        return result("execution role", "failed", translate(err, config.region).message,
                      "create it (aws setup does) or fix sagemaker_role_arn")
    trust = role.get("AssumeRolePolicyDocument")
    trust = json.loads(trust) if isinstance(trust, str) else trust
    if "sagemaker.amazonaws.com" not in json.dumps(trust):
        return result("execution role", "failed", f"{arn} does not trust sagemaker.amazonaws.com",
                      "add sagemaker.amazonaws.com to the role's trust policy")
    return result("execution role", "ok", f"{arn} trusts SageMaker")


def _image(config: Config, client: Callable[[str], Any], account: str) -> dict:
    m = IMAGE_URI.fullmatch(config.worker_image_uri or "")
    if not m:
        return result("worker image", "failed", f"{config.worker_image_uri or 'worker_image_uri is not set'} is not "
                      "an ECR image URI", "build and push the image (aws setup does) and set worker_image_uri")
    _, region, repository, tag, digest = m.groups()
    image_id = {"imageDigest": digest} if digest else {"imageTag": tag or "latest"}
    try:
        found = client("ecr").batch_get_image(repositoryName=repository, imageIds=[image_id],
                                              acceptedMediaTypes=["application/vnd.oci.image.index.v1+json",
                                                                  "application/vnd.docker.distribution.manifest.list.v2+json",
                                                                  "application/vnd.oci.image.manifest.v1+json",
                                                                  "application/vnd.docker.distribution.manifest.v2+json"])
    except Exception as err:
        return result("worker image", "failed", translate(err, config.region).message, "check worker_image_uri")
    if not found.get("images"):
        return result("worker image", "failed", f"{config.worker_image_uri} is not in ECR",
                      "build it (aws setup) or push it (README, Deploy on AWS)")
    return result("worker image", "ok", f"{repository}:{tag or digest} ({_architecture(found['images'][0])})")


def _architecture(image: dict) -> str:
    """From a manifest list's platforms; a single manifest does not say without reading its config blob."""
    try:
        manifest = json.loads(image.get("imageManifest") or "{}")
    except ValueError:
        return "architecture not stated"
    platforms = {f"{m['platform'].get('os')}/{m['platform'].get('architecture')}"
                 for m in manifest.get("manifests", []) if m.get("platform")}
    if platforms:
        return ", ".join(sorted(platforms)) + ("" if "linux/amd64" in platforms else "; SageMaker needs linux/amd64")
    return "architecture not stated in its manifest (SageMaker needs linux/amd64)"


def _simulated_resources(partition: str, account: str, region: str, config: Config) -> dict[str, str]:
    """The ARN each kind of SIMULATED acts on: a name like the extension's own (aws/naming.py), the store's
    prefix, the configured execution role."""
    name = f"{naming.PREFIX}-connect-check"
    prefix = config.s3_prefix.strip("/")
    sagemaker = f"arn:{partition}:sagemaker:{region}:{account}"
    return {
        "model": f"{sagemaker}:model/{name}",
        "endpoint-config": f"{sagemaker}:endpoint-config/{name}",
        "endpoint": f"{sagemaker}:endpoint/{name}",
        # Application Auto Scaling has no resource-level permissions for it: "*" (Service Authorization Ref.).
        "scalable-target": "*",
        "store": f"arn:{partition}:s3:::{config.s3_bucket}/{prefix + '/' if prefix else ''}.connect-check",
        "execution-role": config.sagemaker_role_arn or f"arn:{partition}:iam::{account}:role/unset",
    }


def _permissions(caller_arn: str, config: Config, client: Callable[[str], Any]) -> dict:
    """A dry run of the designer's main actions with IAM's policy simulator, where this identity may use it:
    each on its resource, PassRole with the context AWS gives it."""
    source = caller_arn
    assumed = re.fullmatch(r"arn:(aws[a-z-]*):sts::(\d{12}):assumed-role/([^/]+)/.+", caller_arn)
    if assumed:  # the simulator wants the role, not the session
        source = f"arn:{assumed.group(1)}:iam::{assumed.group(2)}:role/{assumed.group(3)}"
    _, partition, _, _, account = caller_arn.split(":")[:5]
    region = config.region or client("sts").meta.region_name
    resources = _simulated_resources(partition, account, region, config)
    iam = client("iam")
    results = []
    try:
        for kind, actions in SIMULATED.items():
            request: dict[str, Any] = {"PolicySourceArn": source, "ActionNames": list(actions)}
            if resources[kind] != "*":  # omitted, the simulator uses "*"
                request["ResourceArns"] = [resources[kind]]
            if kind == "execution-role":
                request["ContextEntries"] = PASSED_TO_SAGEMAKER
            results += iam.simulate_principal_policy(**request)["EvaluationResults"]
    except Exception as err:
        return result("permissions", "warning", f"AWS did not run the permission simulation here "
                      f"({translate(err).message})", "attach aws/iam/designer-policy.json (the stack's DesignerPolicy)")
    denied = sorted({r["EvalActionName"] for r in results if r.get("EvalDecision") != "allowed"})
    if denied:
        missing = sorted({k for r in results if r.get("EvalDecision") != "allowed"
                          for k in r.get("MissingContextValues") or []})
        return result("permissions", "failed", f"not allowed: {', '.join(denied)}"
                      + (f" (the simulation lacked {', '.join(missing)})" if missing else ""),
                      "attach the stack's DesignerPolicy (aws/iam/designer-policy.json) to this identity")
    return result("permissions", "ok", f"{len(results)} designer actions allowed")
