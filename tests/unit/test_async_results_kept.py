"""An async run's result cannot be replaced by another environment's code.

SageMaker uploads an async answer to async/outputs/ (or async/failures/) itself, with the execution role every
endpoint shares and without a conditional header (SageMaker Developer Guide, "Asynchronous inference": the
execution role must allow s3:PutObject on the output path), so that upload stays a plain PutObject and any
environment's worker could replace it. The worker therefore also creates its result once under async/results/
(the execution role may only create there: s3:if-none-match, which moto does not evaluate, so the policy is held
against AWS's documented semantics), and callers read that copy first. The execution role no longer writes the
rest of async/: queued requests and cancel markers are the callers' own."""

from __future__ import annotations

import json

import boto3
import pytest
from comfyui_sagemaker.aws.runtime import follow_async
from comfyui_sagemaker.aws.s3_store import S3Store
from comfyui_sagemaker.core.errors import StoreUnavailable
from comfyui_sagemaker.core.worker_contract import RESULTS_PREFIX
from comfyui_sagemaker.local.folder_store import FolderStore
from comfyui_sagemaker.worker.outputs import keep_result
from harness.iam_semantics import BUCKET, PREFIX, allows, object_arn, stack_policy
from harness.moto_iam import enforced

RUN = "20261207T000000000000-deadbeef-abc123def456"
CREATE = {"s3:if-none-match": "*"}


@pytest.mark.parametrize("kms", [False, True])
def test_the_execution_role_creates_results_and_replaces_none(kms):
    role = stack_policy("execution-role", kms)
    assert allows(role, "s3:PutObject", object_arn(f"{RESULTS_PREFIX}{RUN}.json"), CREATE)
    assert not allows(role, "s3:PutObject", object_arn(f"{RESULTS_PREFIX}{RUN}.json"))
    assert not allows(role, "s3:PutObject", object_arn(f"{RESULTS_PREFIX}{RUN}.json"), {"s3:if-match": '"e"'})
    # SageMaker's own uploads, and the worker's progress, which it rewrites as the run goes
    for key in (f"async/outputs/{RUN}.out", f"async/failures/{RUN}.out", f"async/progress/{RUN}.json"):
        assert allows(role, "s3:PutObject", object_arn(key)), key


def test_the_execution_role_no_longer_writes_queued_requests_or_cancel_markers(aws_env):
    role = stack_policy("execution-role")
    for key in (f"async/requests/{RUN}.json", f"async/cancel/{RUN}"):
        assert not allows(role, "s3:PutObject", object_arn(key), CREATE), key
    with enforced({"execution-role": role}) as clients:
        from botocore.exceptions import ClientError

        with pytest.raises(ClientError) as err:  # swapping a queued prompt
            clients["execution-role"].put_object(Bucket=BUCKET, Key=f"{PREFIX}/async/requests/{RUN}.json", Body=b"{}")
        assert err.value.response["Error"]["Code"] == "AccessDenied"
        store = S3Store(BUCKET, PREFIX, s3_client=clients["execution-role"])
        assert keep_result(store, RUN, {"status": "succeeded", "outputs": {}})  # the create it needs


def test_the_worker_keeps_its_result_once(tmp_path):
    store = FolderStore(tmp_path)
    ours = {"status": "succeeded", "outputs": {"9": {"images": [{"sha256": "a" * 64}]}}}
    assert keep_result(store, RUN, ours)
    assert keep_result(store, RUN, ours), "this run's own earlier attempt"
    assert json.loads(store.get(f"{RESULTS_PREFIX}{RUN}.json").data) == ours
    assert not keep_result(store, RUN, {"status": "succeeded", "outputs": {}}), "another result was there first"
    assert json.loads(store.get(f"{RESULTS_PREFIX}{RUN}.json").data) == ours


def test_a_store_that_refuses_does_not_fail_the_run(tmp_path):
    class Refusing(FolderStore):
        def create(self, key, data):
            raise StoreUnavailable("access denied (AccessDenied)")

    assert keep_result(Refusing(tmp_path), RUN, {"status": "succeeded"})


def test_the_caller_reads_the_kept_result_not_a_replaced_upload(aws_env):
    from moto import mock_aws

    real = {"protocol_version": 1, "status": "succeeded", "outputs": {"9": {"images": []}}}
    forged = {"protocol_version": 1, "status": "succeeded", "outputs": {"9": {"images": [{"sha256": "f" * 64}]}}}
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket=BUCKET)
        store = S3Store(BUCKET, PREFIX, s3_client=s3)
        output = f"{PREFIX}/async/outputs/{RUN}.out"
        resume = {"output": f"s3://{BUCKET}/{output}", "failure": "", "until": 4e9}
        s3.put_object(Bucket=BUCKET, Key=output, Body=json.dumps(forged).encode())  # replaced by someone
        store.create(f"{RESULTS_PREFIX}{RUN}.json", json.dumps(real).encode())
        assert follow_async(s3, store, "cs-x", RUN, resume, lambda e: None)["outputs"] == real["outputs"]
        other = "20261207T000000000000-cafef00d-abc123def456"  # a worker that keeps none: SageMaker's copy
        s3.put_object(Bucket=BUCKET, Key=f"{PREFIX}/async/outputs/{other}.out", Body=json.dumps(real).encode())
        resume = {**resume, "output": f"s3://{BUCKET}/{PREFIX}/async/outputs/{other}.out"}
        assert follow_async(s3, store, "cs-x", other, resume, lambda e: None)["status"] == "succeeded"
