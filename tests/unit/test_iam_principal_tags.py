"""The stack's artist policy scopes what an artist writes to its own ComfyUI by a principal tag
(`comfyui-sagemaker-instance` = the instance id, core/identity.py), not `*`: an artist may not overwrite
another's records or queued async requests. IAM substitutes ${aws:PrincipalTag/...} (moto does not: its
harness puts the tag in, tests/harness/moto_iam.py); a principal without the tag matches none of those keys
(IAM User Guide, "IAM policy elements: Variables and tags"). And every ARN the stack makes is in the
partition it is deployed to."""

from __future__ import annotations

import json

import pytest
from botocore.exceptions import ClientError
from comfyui_sagemaker.aws import stack
from harness.iam_semantics import BUCKET, PREFIX, allows, object_arn, stack_policy
from harness.moto_iam import enforced

ME, OTHER = "abc123def456", "fff000fff000"
TAG = {f"aws:PrincipalTag/{stack.INSTANCE_TAG}": ME}
RUN = "20261207T000000000000-deadbeef-{owner}"
PER_OWNER = {
    "executions/records/{owner}/" + RUN + ".json": "s3:PutObject",
    "async/requests/" + RUN + ".json": "s3:PutObject",
    "async/cancel/" + RUN: "s3:PutObject",
    "executions/inflight/{owner}/" + RUN: "s3:DeleteObject",
    "idempotency/jobs.studio.{owner}/" + "0" * 64 + ".json": "s3:PutObject",
}


@pytest.mark.parametrize("key", sorted(PER_OWNER))
def test_an_artist_writes_its_own_keys_not_anothers(key):
    artist, action = stack_policy("artist"), PER_OWNER[key]
    assert allows(artist, action, object_arn(key.format(owner=ME)), TAG)
    assert not allows(artist, action, object_arn(key.format(owner=OTHER)), TAG)
    assert not allows(artist, action, object_arn(key.format(owner=ME))), "untagged: no per-owner key"


def test_an_untagged_artist_still_reads_and_shares_blobs():
    artist = stack_policy("artist")
    assert allows(artist, "s3:PutObject", object_arn("blobs/sha256/" + "0" * 64), {"s3:if-none-match": "*"})
    assert allows(artist, "s3:GetObject", object_arn("templates/index.json"))


def test_under_moto_iam_a_tagged_artist_cannot_replace_anothers_queued_request(aws_env):
    with enforced({"artist": stack_policy("artist")}, {"artist": {stack.INSTANCE_TAG: ME}}) as clients:
        s3 = clients["artist"]
        s3.put_object(Bucket=BUCKET, Key=f"{PREFIX}/async/requests/{RUN.format(owner=ME)}.json", Body=b"{}")
        with pytest.raises(ClientError) as err:
            s3.put_object(Bucket=BUCKET, Key=f"{PREFIX}/async/requests/{RUN.format(owner=OTHER)}.json", Body=b"{}")
        assert err.value.response["Error"]["Code"] == "AccessDenied"


def _strings(value):
    if isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)
    elif isinstance(value, str):
        yield value


def test_the_stacks_arns_are_in_the_partition_it_is_deployed_to():
    """aws-cn and aws-us-gov: arn:${AWS::Partition}, and KMS's via-service name with ${AWS::URLSuffix}."""
    resources = json.loads(stack.template_json())["Resources"]
    hard = sorted({s for s in _strings(resources) if "arn:aws:" in s or s.endswith(".amazonaws.com.cn")})
    assert not hard, hard
    kms = stack.policy_document("artist")["Statement"]["Fn::If"][1][-1]
    assert kms["Condition"]["StringEquals"]["kms:ViaService"] == {"Fn::Sub": "s3.${AWS::Region}.${AWS::URLSuffix}"}
