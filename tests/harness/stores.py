"""Stores for the contract suites: the folder store, and the S3 store on moto."""

from __future__ import annotations

import pytest


@pytest.fixture
def aws_env(monkeypatch):
    """Dummy credentials and no endpoint overrides: nothing can reach real AWS."""
    for var in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")


@pytest.fixture(params=["folder", "s3"])
def store(request, tmp_path, aws_env):
    if request.param == "folder":
        from comfyui_sagemaker.local.folder_store import FolderStore

        yield FolderStore(tmp_path / "store")
        return
    import boto3
    from comfyui_sagemaker.aws.s3_store import S3Store
    from moto import mock_aws

    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="contract-bucket")
        yield S3Store("contract-bucket", "team/a", s3_client=s3)
