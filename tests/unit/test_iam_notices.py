"""The async results queue and topic under the stack's own policies: each ComfyUI role makes, long-polls and
deletes a queue of its own and subscribes it to the stack's topic (aws/notifications.py); an artist's queue is
only the one its instance tag names; SageMaker's execution role publishes to the topic. moto enforces IAM with
resources for SQS calls on a queue that exists; it authorises CreateQueue and every SNS call against "*" only,
so those are held against AWS's documented semantics of the policy text (tests/harness/iam_semantics.py)."""

from __future__ import annotations

import json
from contextlib import contextmanager

import boto3
import pytest
from botocore.exceptions import ClientError
from comfyui_sagemaker.aws import iam_actions, notifications
from comfyui_sagemaker.aws.notifications import Notices
from comfyui_sagemaker.aws.stack import INSTANCE_TAG
from harness.iam_semantics import ACCOUNT, REFS, REGION, allows, hand_policy, stack_policy
from harness.moto_iam import for_moto
from harness.runtime_emulator import async_notice

TOPIC = f"arn:aws:sns:{REGION}:{ACCOUNT}:{REFS['AsyncResultsTopic.TopicName']}"
ME, OTHER = "abc123def456", "0123456789ab"


def policies(role: str) -> list[dict]:
    if role == "artist":  # its second managed policy holds its queue (aws/stack.py: IAM's size quota)
        return [stack_policy("artist"), stack_policy("artist-notices")]
    return [stack_policy(role)]


@contextmanager
def enforced(role: str):
    """(sqs, sns) clients of a user holding `role`'s stack policies (an artist tagged with ME), IAM enforced;
    the stack's topic made before."""
    from moto import mock_aws
    from moto.core import enable_iam_authentication

    with mock_aws():
        boto3.client("sns", region_name=REGION).create_topic(Name=REFS["AsyncResultsTopic.TopicName"])
        iam = boto3.client("iam", region_name=REGION)
        tags = {INSTANCE_TAG: ME} if role == "artist" else {}
        iam.create_user(UserName=role, Tags=[{"Key": k, "Value": v} for k, v in tags.items()])
        for i, document in enumerate(policies(role)):
            arn = iam.create_policy(PolicyName=f"{role}-{i}", PolicyDocument=json.dumps(for_moto(document, tags)))
            iam.attach_user_policy(UserName=role, PolicyArn=arn["Policy"]["Arn"])
        key = iam.create_access_key(UserName=role)["AccessKey"]
        made = [boto3.client(s, region_name=REGION, aws_access_key_id=key["AccessKeyId"],
                             aws_secret_access_key=key["SecretAccessKey"]) for s in ("sqs", "sns")]
        with enable_iam_authentication():
            yield made


def disabled_iam():
    from moto.core.authorization import disable_iam_authentication

    return disable_iam_authentication()


def merged(role: str) -> dict:
    return {"Version": "2012-10-17", "Statement": [st for p in policies(role) for st in p["Statement"]]}


def tagged(role: str) -> dict:
    """The request context of the role's principal: an artist carries its instance tag."""
    return {f"aws:PrincipalTag/{INSTANCE_TAG}": ME} if role == "artist" else {}


def queue(instance: str) -> str:
    return f"arn:aws:sqs:{REGION}:{ACCOUNT}:{notifications.queue_name('0123abcd', instance)}"


@pytest.mark.parametrize("role", ["designer", "artist", "gateway"])
def test_each_comfyui_role_makes_its_queue_and_subscribes_it_to_the_topic(role):
    policy, context = merged(role), tagged(role)
    for action in ("sqs:CreateQueue", "sqs:SetQueueAttributes"):
        assert allows(policy, action, queue(ME), context), action
    assert allows(policy, "sns:Subscribe", TOPIC, context)
    assert not allows(policy, "sns:Subscribe", f"arn:aws:sns:{REGION}:{ACCOUNT}:someone-elses", context)
    assert not allows(policy, "sqs:CreateQueue", f"arn:aws:sqs:{REGION}:{ACCOUNT}:not-ours", context)
    assert not allows(policy, "sns:Publish", TOPIC, context), "only SageMaker announces a run's end"


def test_an_artists_queue_is_only_the_one_its_tag_names():
    policy = merged("artist")
    for action in ("sqs:CreateQueue", "sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:DeleteQueue"):
        assert not allows(policy, action, queue(OTHER), tagged("artist")), action
        assert not allows(policy, action, queue(ME), {}), f"{action} without the tag"


@pytest.mark.parametrize("role", ["designer", "artist", "gateway"])
def test_each_comfyui_role_long_polls_and_deletes_its_queue_under_moto_iam(aws_env, role):
    with enforced(role) as (sqs, sns):
        notices = Notices(sqs, sns, TOPIC, notifications.queue_name("0123abcd", ME), ME, lambda found: None)
        with disabled_iam():  # moto cannot scope CreateQueue and Subscribe (above): made as the set-up
            assert notices.ready()
        url = notices._url
        body = json.dumps(async_notice(REGION, "cs-x", "s3://b/in", {"inferenceId": f"run-{ME}"}, "s3://b/out", 200))
        with disabled_iam():  # SNS's delivery, as the test's set-up
            boto3.client("sqs", region_name=REGION).send_message(QueueUrl=url, MessageBody=body)
        got = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1, MaxNumberOfMessages=10)["Messages"]
        notices._handle(url, got[0])  # DeleteMessage
        notices.close()  # DeleteQueue
        with disabled_iam():
            assert boto3.client("sqs", region_name=REGION).list_queues().get("QueueUrls", []) == []


def test_an_artist_reads_no_other_queue_under_moto_iam(aws_env):
    with enforced("artist") as (sqs, _sns):
        with disabled_iam():
            url = sqs.create_queue(QueueName=notifications.queue_name("0123abcd", OTHER))["QueueUrl"]
        for call in (lambda: sqs.receive_message(QueueUrl=url), lambda: sqs.delete_queue(QueueUrl=url)):
            with pytest.raises(ClientError) as err:
                call()
            assert "not authorized" in str(err.value)


@pytest.mark.parametrize("kms", [False, True])
def test_the_execution_role_publishes_to_the_topic_only(kms):
    role = stack_policy("execution-role", kms)
    assert allows(role, "sns:Publish", TOPIC)
    assert not allows(role, "sns:Publish", f"arn:aws:sns:{REGION}:{ACCOUNT}:someone-elses")


def test_the_artists_second_policy_grants_real_actions_on_its_own_queue_only():
    """Checked as tests/unit/test_iam_policies.py checks the four policies it lists."""
    doc = hand_policy("artist-notices", ME)
    granted = {a for s in doc["Statement"] for a in s["Action"]}
    mapped = {a for op, actions in iam_actions.ACTIONS.items() if op[0] in ("sqs", "sns") for a in actions}
    assert granted == mapped
    queues = [s["Resource"] for s in doc["Statement"] if any(a.startswith("sqs:") for a in s["Action"])]
    assert queues == [f"arn:aws:sqs:{REGION}:{ACCOUNT}:cs-*-{ME}"]
