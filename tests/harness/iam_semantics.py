"""The store's IAM policies as the stack makes them, and AWS's documented evaluation of them, for what moto
does not evaluate (its IAM enforcement matches actions and resources; of conditions it evaluates only
StringEquals, and it never decides 404 against 403 by s3:ListBucket).

Sources, IAM User Guide: "Policy evaluation logic" (an explicit Deny wins, else an Allow, else denied),
"IAM JSON policy elements: Condition operators" and "Set operators for multivalued context keys" (a key
absent from the request context makes its condition false, except `Null` and the `...IfExists` operators;
several values of one key are ORed, several keys and operators ANDed; ForAllValues / ForAnyValue on a
multivalued key), "IAM policy elements: Variables and tags" (a Resource whose variable has no value in the
request does not match); S3 API Reference "HeadObject" / "GetObject", Permissions (a missing key answers 404
only to a caller with s3:ListBucket on the bucket, else 403).
"""

from __future__ import annotations

import fnmatch
import json
import re

from comfyui_sagemaker.aws import stack
from comfyui_sagemaker.core import instance_allowlist

ACCOUNT = "123456789012"
REGION = "us-east-1"
BUCKET = "team-store"
PREFIX = "comfyui"
REFS = {"StoreBucket": BUCKET, "StorePrefix": PREFIX, "AWS::AccountId": ACCOUNT, "AWS::Region": REGION,
        "AWS::Partition": "aws", "AWS::URLSuffix": "amazonaws.com",
        "ExecutionRole": "comfyui-sagemaker-ExecutionRole-ABC",
        "Repository": "comfyui-sagemaker-worker", "StoreBucket.Arn": f"arn:aws:s3:::{BUCKET}",
        "AsyncResultsTopic.TopicName": "comfyui-sagemaker-AsyncResultsTopic-ABC"}
VARIABLE = re.compile(r"\$\{([^}]+)\}")


def resolve(value, kms: bool = False):
    """A CloudFormation fragment of the stack's policies with its references filled in, as IAM receives it."""
    if isinstance(value, list):
        return [resolve(v, kms) for v in value]
    if not isinstance(value, dict):
        return value
    if set(value) == {"Fn::If"}:
        condition, yes, no = value["Fn::If"]
        assert condition == "HasKmsKey", condition
        return resolve(yes if kms else no, kms)
    if set(value) == {"Fn::Sub"}:
        # `${!name}` is CloudFormation's escape for an IAM policy variable: it reaches IAM as `${name}`.
        return VARIABLE.sub(lambda m: "${" + m.group(1)[1:] + "}" if m.group(1).startswith("!")
                            else REFS[m.group(1)], value["Fn::Sub"])
    if set(value) == {"Fn::GetAtt"}:
        return {("StoreBucket", "Arn"): f"arn:aws:s3:::{BUCKET}",
                ("Repository", "Arn"): f"arn:aws:ecr:{REGION}:{ACCOUNT}:repository/{REFS['Repository']}",
                # A log group's Arn ends in `:*` (CloudFormation User Guide, "AWS::Logs::LogGroup").
                ("BuildLogs", "Arn"): f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/aws/codebuild/"
                                      "comfyui-sagemaker-worker-image:*",
                }[tuple(value["Fn::GetAtt"])]
    if set(value) == {"Ref"}:
        if value["Ref"] in REFS:  # AWS::AccountId in the execution role's trust policy
            return REFS[value["Ref"]]
        return {"KmsKeyArn": f"arn:aws:kms:{REGION}:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab",
                "AllowedInstanceTypes": list(instance_allowlist.DEFAULT)}[value["Ref"]]
    return {k: resolve(v, kms) for k, v in value.items()}


def stack_policy(name: str, kms: bool = False) -> dict:
    """aws/iam/<name>-policy.json as the stack's template makes it (its placeholders filled in)."""
    return resolve(stack.policy_document(name), kms)


def _list(value) -> list:
    return [value] if isinstance(value, (str, bool)) else list(value)


def _like(pattern: str, value: str, case: bool = True) -> bool:
    """IAM's `*` and `?` (no character classes); fnmatch's [ ] escaped."""
    pattern = pattern.replace("[", "[[]")
    return fnmatch.fnmatchcase(value, pattern) if case else fnmatch.fnmatchcase(value.lower(), pattern.lower())


def _substitute(text: str, context: dict) -> str | None:
    """Policy variables from the request context; None when one has no value (the element does not match)."""
    missing = False

    def value(m: re.Match) -> str:
        nonlocal missing
        key = m.group(1)
        found = {k.lower(): v for k, v in context.items()}.get(key.lower())
        if found is None:
            missing = True
            return ""
        return str(found)

    out = VARIABLE.sub(value, text)
    return None if missing else out


def _condition(operator: str, key: str, wanted, context: dict) -> bool:
    # A multivalued key (IAM User Guide, "Set operators for multivalued context keys"): ForAllValues is true
    # when every value of the request matches (so also when the key is absent or empty: pair it with Null);
    # ForAnyValue when at least one does (false when absent).
    qualifier, _, operator = operator.rpartition(":")
    if qualifier:
        values = {k.lower(): v for k, v in context.items()}.get(key.lower()) or []
        each = [_condition(operator, key, wanted, {key: v}) for v in _list(values)]
        return all(each) if qualifier == "ForAllValues" else any(each)
    present = {k.lower(): v for k, v in context.items()}
    actual = present.get(key.lower())
    if operator == "Null":
        return (actual is None) == (str(_list(wanted)[0]).lower() == "true")
    base, if_exists = (operator[:-8], True) if operator.endswith("IfExists") else (operator, False)
    if actual is None:
        return if_exists
    values = [_substitute(str(w), context) for w in _list(wanted)]
    values = [v for v in values if v is not None]
    actual = str(actual)
    tests = {"StringEquals": lambda w: actual == w, "StringLike": lambda w: _like(w, actual),
             "StringNotEquals": lambda w: actual != w, "ArnEquals": lambda w: actual == w,
             "ArnLike": lambda w: _like(w, actual), "Bool": lambda w: actual.lower() == w.lower()}
    assert base in tests, f"operator {operator} is not modelled here: add it with AWS's documented meaning"
    if base == "StringNotEquals":
        return all(tests[base](w) for w in values)
    return any(tests[base](w) for w in values)


def _applies(statement: dict, action: str, resource: str, context: dict) -> bool:
    if not any(_like(a, action, case=False) for a in _list(statement.get("Action", []))):
        return False
    patterns = [_substitute(r, context) for r in _list(statement.get("Resource", []))]
    if not any(p is not None and _like(p, resource) for p in patterns):
        return False
    return all(_condition(op, key, wanted, context)
               for op, keys in (statement.get("Condition") or {}).items() for key, wanted in keys.items())


def allows(policy: dict, action: str, resource: str, context: dict | None = None) -> bool:
    """Whether this identity policy alone allows the request (an explicit Deny wins)."""
    context = context or {}
    statements = _list(policy["Statement"]) if not isinstance(policy["Statement"], dict) else [policy["Statement"]]
    if any(s["Effect"] == "Deny" and _applies(s, action, resource, context) for s in statements):
        return False
    return any(s["Effect"] == "Allow" and _applies(s, action, resource, context) for s in statements)


def object_arn(key: str) -> str:
    return f"arn:aws:s3:::{BUCKET}/{PREFIX}/{key}"


def missing_key_status(policy: dict, key: str, context: dict | None = None) -> int:
    """What S3 answers a GET or HEAD of a key that does not exist: 404 only with s3:ListBucket on the bucket
    (evaluated for that request, which carries no s3:prefix), else 403."""
    context = {k: v for k, v in (context or {}).items() if k.lower() != "s3:prefix"}
    if not allows(policy, "s3:GetObject", object_arn(key), context):
        return 403
    return 404 if allows(policy, "s3:ListBucket", f"arn:aws:s3:::{BUCKET}", context) else 403


def hand_policy(name: str, instance: str = "") -> dict:
    """aws/iam/<name>-policy.json applied by hand (README): its placeholders replaced, the artist's
    ARTIST_INSTANCE_ID by one ComfyUI's instance id."""
    text = (stack.IAM / f"{name}-policy.json").read_text()
    values = {"STORE_BUCKET": BUCKET, "STORE_PREFIX": PREFIX, "ACCOUNT_ID": ACCOUNT, "REGION": REGION,
              "EXECUTION_ROLE_NAME": REFS["ExecutionRole"], "WORKER_REPOSITORY": REFS["Repository"],
              "NOTIFICATION_TOPIC": REFS["AsyncResultsTopic.TopicName"], "ARTIST_INSTANCE_ID": instance,
              "KMS_KEY_ID": "1234abcd-12ab-34cd-56ef-1234567890ab"}
    for placeholder, value in values.items():
        text = re.sub(rf"\b{placeholder}\b", value, text)
    return json.loads(text)
