"""The stack's IAM policies, as its template makes them, under IAM enforcement: moto's (actions and
resources, with the real S3 requests) and, for what moto does not evaluate, AWS's documented semantics
held against the policy text (tests/harness/iam_semantics.py)."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError
from harness.iam_semantics import BUCKET, PREFIX, missing_key_status, stack_policy
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
