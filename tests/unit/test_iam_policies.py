"""The IAM policy documents allow exactly the AWS operations the code calls.

The operations are read from the code itself (every boto3 client call in aws/,
which the Stubber suites check request by request), mapped to IAM actions,
and compared with aws/iam/*.json.
"""

import ast
import json
from pathlib import Path

import botocore.session

ROOT = Path(__file__).resolve().parents[2]
SERVICES = {"sagemaker": "sagemaker", "sagemaker-runtime": "sagemaker", "s3": "s3",
            "application-autoscaling": "application-autoscaling", "cloudwatch": "cloudwatch"}
# Transfer-manager calls and S3 operations whose IAM action has another name.
S3_ACTIONS = {"upload_file": ["s3:PutObject", "s3:AbortMultipartUpload"], "download_file": ["s3:GetObject"],
              "head_object": ["s3:GetObject"], "list_objects_v2": ["s3:ListBucket"]}
# What AWS checks besides the call itself: tags on create need AddTags; CreateModel passes the role.
IMPLIED = {"sagemaker:CreateModel": ["sagemaker:AddTags", "iam:PassRole"],
           "sagemaker:CreateEndpointConfig": ["sagemaker:AddTags"], "sagemaker:CreateEndpoint": ["sagemaker:AddTags"]}


def operations() -> dict[str, str]:
    """snake_case operation -> IAM action, for every operation of the services we use."""
    session = botocore.session.get_session()
    out = {}
    for service, prefix in SERVICES.items():
        model = session.get_service_model(service)
        for op in model.operation_names:
            snake = botocore.xform_name(op)
            out.setdefault(snake, f"{prefix}:{op}")
    return out


def called(paths) -> set[str]:
    ops = operations()
    actions = set()
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
                continue
            name = node.func.attr
            if name == "get_paginator" and node.args and isinstance(node.args[0], ast.Constant):
                name = node.args[0].value
            if name in S3_ACTIONS:
                actions |= set(S3_ACTIONS[name])
            elif name in ops:
                actions.add(ops[name])
    for action in list(actions):
        actions |= set(IMPLIED.get(action, []))
    return actions


def allowed(policy: str) -> set[str]:
    doc = json.loads((ROOT / "aws" / "iam" / policy).read_text())
    return {a for s in doc["Statement"] if s["Effect"] == "Allow"
            for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])}


def aws_code() -> list[Path]:
    return [p for p in (ROOT / "aws").glob("*.py")]


def test_the_designer_policy_is_exactly_what_the_code_calls():
    assert allowed("designer-policy.json") == called(aws_code())


def test_the_artist_policy_is_invoke_and_read_plus_its_own_uploads():
    artist = allowed("artist-policy.json")
    run_path = called([ROOT / "aws" / "runtime.py", ROOT / "aws" / "s3_store.py"])
    reading = {"sagemaker:DescribeEndpoint", "sagemaker:DescribeEndpointConfig", "sagemaker:ListEndpoints",
               "sagemaker:ListTags"}
    assert artist == (run_path - {"s3:DeleteObject"}) | reading
    assert not any(a.startswith(("sagemaker:Create", "sagemaker:Delete", "sagemaker:Update", "application-",
                                 "cloudwatch:", "iam:")) for a in artist)
    assert artist <= allowed("designer-policy.json")


def test_the_execution_role_covers_the_worker():
    role = allowed("execution-role-policy.json")
    worker = called([ROOT / "aws" / "s3_store.py"]) - {"s3:DeleteObject"}
    assert worker <= role
    assert {a for a in role if a.startswith("s3:")} == worker
