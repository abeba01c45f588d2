"""The stack's policies loaded into moto with IAM enforcement on: one IAM user per role, each holding its
policy as a managed policy (moto validates the document as IAM does on create), and S3 clients signed
with that user's keys. What moto does not evaluate is held by tests/harness/iam_semantics.py."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager

import boto3

from .iam_semantics import BUCKET, REGION

# moto authorises some S3 operations under their operation's name, which is no IAM action: AWS authorises a
# HEAD of an object as s3:GetObject, ListObjectsV2 and HeadBucket as s3:ListBucket (S3 API Reference, each
# operation's Permissions). So wherever a policy grants the IAM action, moto is given its names too; nothing
# else of the document changes.
# moto authorises CloudWatch calls under the service's endpoint prefix ("monitoring:"), IAM under "cloudwatch:".
MOTO_ALIASES = {"s3:GetObject": ["s3:HeadObject"], "s3:ListBucket": ["s3:ListObjectsV2", "s3:HeadBucket"],
                "cloudwatch:GetMetricData": ["monitoring:GetMetricData"]}


def for_moto(document: dict, tags: dict[str, str] | None = None) -> dict:
    """moto's names added; conditional Denies it cannot evaluate left out; and the principal's tags put where
    the Resource names ${aws:PrincipalTag/<key>}, which moto does not substitute (IAM does, for the caller; a
    Resource whose tag the caller lacks matches nothing, so it is dropped here)."""
    def resource(r: str) -> str | None:
        for key, value in (tags or {}).items():
            r = r.replace("${aws:PrincipalTag/" + key + "}", value)
        return None if "${aws:PrincipalTag/" in r else r

    def statement(s: dict) -> dict:
        actions = [s["Action"]] if isinstance(s["Action"], str) else list(s["Action"])
        resources = [resource(r) for r in ([s["Resource"]] if isinstance(s["Resource"], str) else s["Resource"])]
        return {**s, "Action": actions + [m for a in actions for m in MOTO_ALIASES.get(a, [])],
                "Resource": [r for r in resources if r is not None] or ["arn:aws:s3:::no-such-resource"]}
    # moto treats a condition operator it does not model (all but StringEquals) as met: a Deny conditioned on
    # s3:if-none-match would refuse every write under it. Such a Deny is held by iam_semantics instead.
    kept = [s for s in document["Statement"]
            if s["Effect"] == "Allow" or set(s.get("Condition") or {}) <= {"StringEquals"}]
    return {**document, "Statement": [statement(s) for s in kept]}


@contextmanager
def enforced(policies: dict[str, dict], tags: dict[str, dict[str, str]] | None = None) -> Iterator[dict[str, object]]:
    """{role: its S3 client} in a moto account whose store bucket exists, IAM enforced for every call made
    inside the block (the set-up before it is not); `tags`: {role: its principal tags}."""
    from moto import mock_aws
    from moto.core import enable_iam_authentication

    with mock_aws():
        boto3.client("s3", region_name=REGION).create_bucket(Bucket=BUCKET)
        iam = boto3.client("iam", region_name=REGION)
        clients = {}
        for role, document in policies.items():
            mine = (tags or {}).get(role, {})
            iam.create_user(UserName=role, Tags=[{"Key": k, "Value": v} for k, v in mine.items()])
            made = iam.create_policy(PolicyName=f"{role}-policy",
                                     PolicyDocument=json.dumps(for_moto(document, mine)))
            arn = made["Policy"]["Arn"]
            iam.attach_user_policy(UserName=role, PolicyArn=arn)
            key = iam.create_access_key(UserName=role)["AccessKey"]
            clients[role] = boto3.client("s3", region_name=REGION, aws_access_key_id=key["AccessKeyId"],
                                         aws_secret_access_key=key["SecretAccessKey"])
        with enable_iam_authentication():
            yield clients
