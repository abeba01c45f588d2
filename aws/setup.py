"""`aws setup`, `aws status`, `aws teardown`: the admin CLI's way from nothing to a working AWS team store.

setup: create or update the stack (aws/stack.py), upload this repository's source to the bucket, build
the worker image with the stack's CodeBuild project and follow it, then write the stack's outputs into
the ComfyUI's configuration. Each step checks what is there first, so running it again after any
failure carries on. `aws teardown` is aws/teardown.py.
"""

from __future__ import annotations

import io
import json
import re
import subprocess
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core import config as config_mod
from ..core import instance_allowlist, prices
from ..core.errors import SageMakerError
from . import budget, stack, worker_image
from .errors import error_code as _code
from .errors import translate

REPO = Path(__file__).resolve().parent.parent
DONE = ("CREATE_COMPLETE", "UPDATE_COMPLETE", "UPDATE_ROLLBACK_COMPLETE", "IMPORT_COMPLETE")
STACK_NAME = re.compile(r"[A-Za-z][A-Za-z0-9-]{0,127}")
FAILED_FINAL = ("CREATE_FAILED", "ROLLBACK_FAILED", "ROLLBACK_COMPLETE", "DELETE_FAILED", "UPDATE_ROLLBACK_FAILED")


class SetupError(SageMakerError):
    """A setup step cannot go on; the message says what to do."""

    code = "setup_failed"


@dataclass
class Aws:
    """The clients one setup uses (boto3's chain; the tests point them at moto)."""

    region: str
    make: Callable[[str], Any]
    clients: dict[str, Any] = field(default_factory=dict)

    def __call__(self, service: str) -> Any:
        if service not in self.clients:
            self.clients[service] = self.make(service)
        return self.clients[service]


def describe(aws: Aws, name: str) -> dict | None:
    from botocore.exceptions import ClientError

    try:
        return aws("cloudformation").describe_stacks(StackName=name)["Stacks"][0]
    except ClientError as err:
        if "does not exist" in str(err):
            return None
        raise


def outputs(described: dict) -> dict[str, str]:
    return {o["OutputKey"]: o["OutputValue"] for o in described.get("Outputs", [])}


def _failure(aws: Aws, name: str) -> str:
    """The first reason CloudFormation gives, in its words (a bucket name taken, a quota, ...)."""
    try:
        events = aws("cloudformation").describe_stack_events(StackName=name)["StackEvents"]
    except Exception:
        return "see the stack's events in the CloudFormation console"
    reasons = [f"{e['LogicalResourceId']}: {e['ResourceStatusReason']}" for e in reversed(events)
               if e.get("ResourceStatus", "").endswith("FAILED") and e.get("ResourceStatusReason")]
    return reasons[0] if reasons else "see the stack's events in the CloudFormation console"


def wait_stack(aws: Aws, name: str, say: Callable[[str], None], poll: float = 5.0, timeout: float = 3600) -> dict:
    deadline, last = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        d = describe(aws, name)
        if d is None:
            raise SetupError(f"stack {name} is gone")
        status = d["StackStatus"]
        if status != last:
            say(f"stack {name}: {status}")
            last = status
        if status in DONE:
            return d
        if status in FAILED_FINAL:
            raise SetupError(f"stack {name} is {status}: {_failure(aws, name)}")
        time.sleep(poll)
    raise SetupError(f"stack {name} did not settle in {timeout:.0f} s")


def ensure_stack(aws: Aws, name: str, parameters: dict[str, str], say: Callable[[str], None],
                 recreate: bool = False, poll: float = 5.0, confirm: Callable[[str], bool] | None = None) -> dict:
    """Create the stack, or update it; a stack whose first creation failed is deleted and created again
    only when asked (`recreate`, or yes to `confirm`), since deleting it removes what it made."""
    from botocore.exceptions import ClientError

    cf = aws("cloudformation")
    current = describe(aws, name)
    body = {"StackName": name, "TemplateBody": stack.template_json(), "Parameters": [],
            "Capabilities": ["CAPABILITY_IAM"]}

    def with_parameters(creating: bool) -> dict:
        given = dict(parameters)
        if creating:  # the repository named after the stack: two stacks in one account never collide
            given.setdefault("RepositoryName", repository_name(name))
        params: list[dict[str, object]] = [{"ParameterKey": k, "ParameterValue": v} for k, v in given.items()]
        if not creating:  # what this run does not set keeps its value (an omitted one would take the default)
            # ...if this template still declares it (ExecutionRecordsExpireDays became RetentionDays).
            # (ImageTag, before tags were per build) is not sent: CloudFormation refuses a parameter its
            # template does not have. One still at this template's default is left to the default: the same
            # value, and moto's CloudFormation keeps no previous value of a list parameter given by default.
            declared = stack.template()["Parameters"]
            had = {p["ParameterKey"] for p in (current or {}).get("Parameters") or []
                   if p["ParameterKey"] in declared
                   and str(p.get("ParameterValue")) != str(declared[p["ParameterKey"]].get("Default"))}
            params += [{"ParameterKey": k, "UsePreviousValue": True} for k in sorted(had - set(given))]
        return {**body, "Parameters": params}

    if current is not None and current["StackStatus"] == "ROLLBACK_COMPLETE":
        why = _failure(aws, name) if not recreate else ""
        if not recreate and confirm is not None:
            recreate = confirm(f"stack {name} is ROLLBACK_COMPLETE (its first creation failed: {why}). "
                               "Delete it and create it anew?")
        if not recreate:
            raise SetupError(f"stack {name} is ROLLBACK_COMPLETE (its first creation failed: {why}); "
                             "run setup again with --recreate to delete it and create it anew")
        say(f"deleting stack {name} (ROLLBACK_COMPLETE) to create it anew")
        cf.delete_stack(StackName=name)
        _wait_deleted(aws, name, poll)
        current = None
    if current is None:
        say(f"creating stack {name}")
        cf.create_stack(**with_parameters(creating=True))
    elif current["StackStatus"].endswith("_IN_PROGRESS"):
        say(f"stack {name} is {current['StackStatus']}: waiting for it")
    else:
        try:
            say(f"updating stack {name}")
            cf.update_stack(**with_parameters(creating=False))
        except ClientError as err:
            if "No updates are to be performed" not in str(err):
                raise
            say(f"stack {name} is up to date")
            return current
    return wait_stack(aws, name, say, poll)


def _wait_deleted(aws: Aws, name: str, poll: float, timeout: float = 3600) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        d = describe(aws, name)
        if d is None or d["StackStatus"] == "DELETE_COMPLETE":
            return
        if d["StackStatus"] == "DELETE_FAILED":
            raise SetupError(f"stack {name} could not be deleted: {_failure(aws, name)}")
        time.sleep(poll)
    raise SetupError(f"stack {name} was not deleted in {timeout:.0f} s")


def source_files(root: Path = REPO) -> list[str]:
    """The build context of worker/Dockerfile: the files git tracks in a clone; in a copy without git
    (the Comfy Registry's archive, ComfyUI-Manager's download) every file but caches, hidden folders
    and what .dockerignore leaves out."""
    try:
        listed = subprocess.run(["git", "ls-files", "-z"], cwd=root, check=True, capture_output=True, timeout=60)
        names = [n for n in listed.stdout.decode().split("\0") if n]
        if names:
            return sorted(n for n in names if (root / n).is_file())
    except (OSError, subprocess.SubprocessError):
        pass
    ignored = {line.strip().strip("/") for line in (root / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")} if (root / ".dockerignore").exists() else set()
    out = []
    for path in root.rglob("*"):
        rel = path.relative_to(root)
        if not path.is_file() or path.suffix == ".pyc" or rel.parts[0] in ignored \
                or any(p.startswith(".") and p not in (".dockerignore",) or p == "__pycache__" for p in rel.parts):
            continue
        out.append(rel.as_posix())
    return sorted(out)


def source_zip(root: Path = REPO) -> bytes:
    """This copy's source as the image build needs it, deterministic."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name in source_files(root):
            info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
            info.external_attr = ((root / name).stat().st_mode & 0o777) << 16
            z.writestr(info, (root / name).read_bytes(), zipfile.ZIP_DEFLATED)
    return buf.getvalue()


def upload_source(aws: Aws, bucket: str, prefix: str, say: Callable[[str], None], data: bytes | None = None) -> str:
    data = source_zip() if data is None else data
    key = f"{prefix}/{stack.SOURCE_KEY}"
    aws("s3").put_object(Bucket=bucket, Key=key, Body=data)
    say(f"uploaded the source ({len(data) // 1024} KiB) to s3://{bucket}/{key}")
    return key


def build_image(aws: Aws, project: str, say: Callable[[str], None], poll: float = 10.0,
                timeout: float = 3600, tag: str | None = None) -> dict:
    """Start the image build (tagged `tag`: the buildspec's IMAGE_TAG) and follow it phase by phase; a
    failed build shows its log's tail."""
    codebuild = aws("codebuild")
    override = {"environmentVariablesOverride": [{"name": "IMAGE_TAG", "value": tag, "type": "PLAINTEXT"}]} \
        if tag else {}
    build = codebuild.start_build(projectName=project, **override)["build"]
    say(f"building the worker image{f' {tag}' if tag else ''} ({build['id']})")
    deadline, phase = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        build = codebuild.batch_get_builds(ids=[build["id"]])["builds"][0]
        if build.get("currentPhase") != phase:
            phase = build.get("currentPhase")
            say(f"  build phase: {phase}")
        if build["buildStatus"] == "SUCCEEDED":
            return build
        if build["buildStatus"] in ("FAILED", "FAULT", "STOPPED", "TIMED_OUT"):
            raise SetupError(f"the image build {build['buildStatus']}:\n{build_log_tail(aws, build)}")
        time.sleep(poll)
    raise SetupError(f"the image build did not end in {timeout:.0f} s")


def build_log_tail(aws: Aws, build: dict, lines: int = 30) -> str:
    logs = build.get("logs") or {}
    if not logs.get("groupName") or not logs.get("streamName"):
        return "(no build log)"
    try:
        events = aws("logs").get_log_events(logGroupName=logs["groupName"], logStreamName=logs["streamName"],
                                            limit=lines, startFromHead=False)["events"]
    except Exception as err:
        return f"(cannot read the build log: {err})"
    return "\n".join(e["message"].rstrip() for e in events)


def configuration(out: dict[str, str], region: str, image_uri: str) -> dict:
    """What config.json needs from the stack's outputs, and the worker image (aws/worker_image.py)."""
    cfg: dict[str, object] = {"store": "s3", "s3_bucket": out["StoreBucket"], "s3_prefix": out["StorePrefix"],
           "region": out.get("Region") or region, "sagemaker_role_arn": out["SageMakerRoleArn"],
           "worker_image_uri": image_uri}
    if out.get("KmsKeyArn"):
        cfg.update(s3_sse="aws:kms", s3_kms_key_id=out["KmsKeyArn"])
    if out.get("NotificationTopicArn"):  # async runs' ends by notification (a stack before 33: polled for)
        cfg["notification_topic_arn"] = out["NotificationTopicArn"]
    if out.get("AllowedInstanceTypes"):  # the server holds the designer policy's list (a stack before 29: none)
        cfg["allowed_instance_types"] = out["AllowedInstanceTypes"].split(",")
    return cfg


def write_configuration(config_dir: Path, values: dict) -> Path:
    """Merge into config.json (other keys, such as a token, stay) through the configuration's one writer:
    validated, under its lock, atomically. The CLI is the file's owner: no role applies."""
    config_mod.update(config_dir, values)
    return Path(config_dir) / config_mod.CONFIG_FILE


def account_of(aws: Aws) -> str:
    return aws("sts").get_caller_identity()["Account"]


def _same_account(config_dir: Path | None, account: str) -> None:
    """A ComfyUI already set up with one account's stack is not silently moved to another's."""
    path = Path(config_dir) / "config.json" if config_dir is not None else None
    try:
        current = json.loads(path.read_text()) if path is not None and path.exists() else {}
    except ValueError:
        raise SetupError(f"{path} is not valid JSON: fix it (or move it away) and run setup again") from None
    arn = current.get("sagemaker_role_arn") if isinstance(current, dict) else None
    configured = arn.split(":")[4] if isinstance(arn, str) and arn.count(":") >= 5 else None
    if configured and configured != account:
        raise SetupError(f"{path} is set up for AWS account {configured}; these credentials are account {account}'s. "
                         f"Use that account's credentials, or pass --config-dir for another ComfyUI")


def repository_name(stack_name: str) -> str:
    """The worker image's ECR repository for a stack (lower case: ECR's rule; stack names allow capitals)."""
    return re.sub(r"-+", "-", stack_name.lower()).strip("-") + "-worker"


def check_parameters(parameters: dict[str, str]) -> None:
    """The stack's parameters checked here, before any AWS call: an unknown name or a value its
    pattern refuses is said in our words rather than as a failed change set."""
    declared = stack.template()["Parameters"]
    unknown = sorted(set(parameters) - set(declared))
    if unknown:
        raise SetupError(f"the stack has no parameter {', '.join(unknown)}; its parameters are "
                         f"{', '.join(sorted(declared))}")
    budget_refused = budget.refusal(parameters)
    if budget_refused:
        raise SetupError(budget_refused)
    for key, value in parameters.items():
        spec = declared[key]
        if spec["Type"] == "Number":
            if not str(value).isdigit() or not spec.get("MinValue", 0) <= int(value) <= spec.get("MaxValue", 1 << 62):
                raise SetupError(f"{key} must be a whole number from {spec.get('MinValue')} to {spec.get('MaxValue')}")
        elif spec["Type"] == "CommaDelimitedList":
            try:
                instance_allowlist.entries(str(value).split(","))
            except ValueError as err:
                raise SetupError(f"{key}: {err}") from None
        if "AllowedValues" in spec and str(value) not in {str(v) for v in spec["AllowedValues"]}:
            raise SetupError(f"{key} must be one of {', '.join(str(v) for v in spec['AllowedValues'])}")
        elif "AllowedPattern" in spec and not re.fullmatch(spec["AllowedPattern"], str(value)):
            raise SetupError(f"{key} {value!r} is not valid: {spec['Description']}")


def setup(aws: Aws, name: str, parameters: dict[str, str], config_dir: Path | None, say: Callable[[str], None],
          recreate: bool = False, build: bool = True, poll: float = 5.0,
          confirm: Callable[[str], bool] | None = None, image_tag: str | None = None) -> dict:
    """The whole way; returns the configuration written (or that would be). The image is tagged
    `image_tag`, by default the source's digest (aws/worker_image.py)."""
    check_parameters(parameters)
    if image_tag is not None:
        try:
            worker_image.check_tag(image_tag)
        except worker_image.ImageError as err:
            raise SetupError(err.message) from None
    if not STACK_NAME.fullmatch(name):
        raise SetupError(f"{name!r} is not a stack name: letters, digits and hyphens, starting with a letter, "
                         "at most 128")
    try:
        account = account_of(aws)
        say(f"AWS account {account}, region {aws.region}")
        _same_account(config_dir, account)
        d = ensure_stack(aws, name, parameters, say, recreate, poll, confirm)
        out = outputs(d)
        # The allowed instance types as the stack keeps its list parameter (a comma-separated ParameterValue),
        # which is what the output joins; moto's CloudFormation joins the value's characters instead.
        kept = {p["ParameterKey"]: p.get("ParameterValue") for p in d.get("Parameters") or []}
        if kept.get("AllowedInstanceTypes"):
            out["AllowedInstanceTypes"] = str(kept["AllowedInstanceTypes"])
        source = source_zip()
        upload_source(aws, out["StoreBucket"], out["StorePrefix"], say, source)
        if build and not out.get("BuildProject"):
            raise SetupError(f"stack {name} has no BuildProject output: update it (run setup again) or build "
                             "and push the image yourself and run setup with --no-build")
        if not build:
            say("image build skipped (--no-build)")
        image = worker_image.ensure(
            aws, out["RepositoryUri"], image_tag or worker_image.source_tag(source),
            (lambda tag: build_image(aws, out["BuildProject"], say, poll=max(poll, 1.0), tag=tag)) if build else None,
            say, given=image_tag is not None)
        for line in prices.stack_lines(aws.region):  # before anything bills by the hour
            say(line)
        cfg = configuration(out, aws.region, image)
        if config_dir is not None:
            say(f"wrote {write_configuration(config_dir, cfg)}")
        return cfg
    except SetupError:
        raise
    except worker_image.ImageError as err:
        raise SetupError(err.message) from None
    except Exception as err:
        raise SetupError(translate(err, aws.region).message) from None


def status(aws: Aws, name: str) -> dict:
    """What exists: the stack, its outputs, the image's digest, drift."""
    from botocore.exceptions import BotoCoreError, ClientError

    d = describe(aws, name)
    if d is None:
        return {"stack": name, "status": "absent"}
    out = outputs(d)
    report: dict[str, Any] = {"stack": name, "status": d["StackStatus"], "outputs": out,
                              "account": d["StackId"].split(":")[4]}
    report["budget"] = budget.status(aws("budgets"), d)
    if out.get("RepositoryUri"):  # the image pushed last: what `aws setup` pinned, unless one was pushed since
        try:
            last = worker_image.newest(aws("ecr"), worker_image.repository_of(out["RepositoryUri"]))
            report["image_digest"] = last["imageDigest"] if last else "absent (no image in the repository)"
            report["image_tags"] = (last or {}).get("imageTags", [])
        except (ClientError, BotoCoreError, KeyError) as err:
            report["image_digest"] = f"absent ({_code(err) or err})"
    try:
        detection = aws("cloudformation").detect_stack_drift(StackName=name)["StackDriftDetectionId"]
        for _ in range(30):
            drift = aws("cloudformation").describe_stack_drift_detection_status(StackDriftDetectionId=detection)
            if drift["DetectionStatus"] != "DETECTION_IN_PROGRESS":
                report["drift"] = drift.get("StackDriftStatus", drift["DetectionStatus"])
                break
            time.sleep(2)
    except Exception as err:  # an endpoint without drift detection answers anything from an error to a 500
        report["drift"] = f"not available here ({_code(err) or type(err).__name__})"
    return report


def _empty_and_delete(aws: Aws, bucket: str, say: Callable[[str], None]) -> None:
    s3 = aws("s3")
    paginator = s3.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket):
        keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
        if keys:
            s3.delete_objects(Bucket=bucket, Delete={"Objects": keys})
    s3.delete_bucket(Bucket=bucket)
    say(f"deleted bucket {bucket}")
