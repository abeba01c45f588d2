"""Stores for the contract suites: the folder store, and the S3 store on moto."""

from __future__ import annotations

import uuid

import pytest


@pytest.fixture
def aws_env(monkeypatch):
    """Dummy credentials and no endpoint overrides: nothing can reach real AWS."""
    for var in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")


@pytest.fixture(scope="session")
def moto_s3_client():
    """One S3 client for the session's in-process moto cases. Making a boto3 client is what cost each [s3]
    case its seconds; moto's own start and reset cost milliseconds. The client is built with dummy
    credentials and no endpoint override (as `aws_env` sets), so it cannot reach AWS; it answers only
    inside `mock_aws()`."""
    import boto3
    import moto  # noqa: F401 - moto's botocore hook must be in place before the client is made

    return boto3.session.Session(aws_access_key_id="testing", aws_secret_access_key="testing",
                                 region_name="us-east-1").client("s3", endpoint_url=None)


@pytest.fixture(params=["folder", "s3"])
def store(request, tmp_path, aws_env):
    if request.param == "folder":
        from comfyui_sagemaker.local.folder_store import FolderStore

        yield FolderStore(tmp_path / "store")
        return
    from comfyui_sagemaker.aws.s3_store import S3Store
    from moto import mock_aws

    s3 = request.getfixturevalue("moto_s3_client")
    with mock_aws():  # each case its own moto state; a bucket and prefix of its own besides
        bucket = f"contract-{uuid.uuid4().hex[:12]}"
        s3.create_bucket(Bucket=bucket)
        yield S3Store(bucket, "team/a", s3_client=s3)


@pytest.fixture
def stubbed_s3(aws_env):
    """An S3Store (bucket "bkt", prefix "pre") on a client behind botocore's Stubber, and the Stubber: every
    request checked against S3's service model; a queued answer nobody asked for fails the test."""
    import boto3
    from botocore.stub import Stubber
    from comfyui_sagemaker.aws.s3_store import S3Store

    s3 = boto3.client("s3", region_name="us-east-1")
    with Stubber(s3) as stub:
        yield S3Store("bkt", "pre", s3_client=s3), stub
        stub.assert_no_pending_responses()
