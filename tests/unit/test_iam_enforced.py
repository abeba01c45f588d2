"""The stack's IAM policies, as its template makes them, under IAM enforcement: moto's (actions and
resources, with the real S3 requests) and, for what moto does not evaluate, AWS's documented semantics
held against the policy text (tests/harness/iam_semantics.py)."""

from __future__ import annotations

import json
import re

import pytest
from botocore.exceptions import ClientError
from comfyui_sagemaker.aws import stack
from harness import iam_semantics
from harness.iam_semantics import BUCKET, PREFIX, allows, missing_key_status, object_arn, resolve, stack_policy
from harness.moto_iam import enforced

ROLES = ("designer", "artist", "execution-role")
# What each role reads and must tell missing from forbidden by (core/store.py's KeyNotFound is a 404).
MISSING = {"designer": "templates/absent.json", "artist": "executions/records/abc123def456/absent.json",
           "execution-role": "environments/absent/manifest.json"}


@pytest.mark.parametrize("kms", [False, True])
@pytest.mark.parametrize("role", ROLES)
def test_a_missing_key_answers_404_to_every_role(role, kms):
    """S3 answers 404 only to a caller with s3:ListBucket on the bucket for that request; a GET or HEAD
    carries no s3:prefix, so a grant conditioned on it does not count and the answer is 403 (fatal to an
    async run's first result poll: aws/runtime.py)."""
    assert missing_key_status(stack_policy(role, kms), MISSING[role]) == 404


@pytest.mark.parametrize("role", ROLES)
def test_a_head_of_a_missing_key_is_404_under_moto_iam(aws_env, role):
    with enforced({role: stack_policy(role)}) as clients:
        with pytest.raises(ClientError) as err:
            clients[role].head_object(Bucket=BUCKET, Key=f"{PREFIX}/{MISSING[role]}")
        assert err.value.response["Error"]["Code"] == "404"
        clients[role].list_objects_v2(Bucket=BUCKET, Prefix=f"{PREFIX}/", MaxKeys=1)  # Connect's bucket check


def build_role_policy(kms: bool = False) -> dict:
    role = stack.template()["Resources"]["BuildRole"]["Properties"]["Policies"][0]["PolicyDocument"]
    return resolve(role, kms)


@pytest.mark.parametrize("kms", [False, True])
def test_the_build_role_may_read_the_buckets_acl_and_location_and_the_source(kms):
    """CodeBuild's documented service-role policy: s3:GetBucketAcl and s3:GetBucketLocation on the source's
    bucket (its S3BucketIdentity statement), then the source object."""
    policy = build_role_policy(kms)
    for action in ("s3:GetBucketAcl", "s3:GetBucketLocation"):
        assert allows(policy, action, f"arn:aws:s3:::{BUCKET}"), action
        assert not allows(policy, action, "arn:aws:s3:::another-bucket"), action
    assert allows(policy, "s3:GetObject", object_arn(stack.SOURCE_KEY))
    assert not allows(policy, "s3:GetObject", object_arn("templates/index.json"))


def test_the_build_role_reads_the_bucket_under_moto_iam(aws_env):
    with enforced({"build": build_role_policy()}) as clients:
        clients["build"].get_bucket_location(Bucket=BUCKET)
        clients["build"].get_bucket_acl(Bucket=BUCKET)
        with pytest.raises(ClientError) as err:  # present or not, the source is readable: 404, not 403
            clients["build"].get_object(Bucket=BUCKET, Key=f"{PREFIX}/{stack.SOURCE_KEY}")
        assert err.value.response["Error"]["Code"] == "NoSuchKey"


@pytest.mark.parametrize("role", ["designer", "artist", "gateway"])
def test_each_managed_policy_fits_iams_quota_with_the_longest_names(monkeypatch, role):
    """IAM User Guide, "IAM and AWS STS quotas": a managed policy holds at most 6,144 characters, white space
    not counted; the longest bucket name (63) and store prefix (100) the stack accepts."""
    monkeypatch.setitem(iam_semantics.REFS, "StoreBucket", "b" * 63)
    monkeypatch.setitem(iam_semantics.REFS, "StorePrefix", "p" * 100)
    monkeypatch.setitem(iam_semantics.REFS, "Repository", "r" * 100)
    assert len(re.sub(r"\s", "", json.dumps(stack_policy(role, kms=True)))) <= 6144
