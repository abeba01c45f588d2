"""Blobs are written once and trusted only when verified in full.

Every role that writes blobs is refused a PutObject or CompleteMultipartUpload on `blobs/` without
`If-None-Match` (the s3:if-none-match key; the parts of a multipart upload, which take no conditional header,
are exempted by s3:ObjectCreationOperation: S3 User Guide, "Enforce conditional writes on Amazon S3 buckets").
moto evaluates neither key, so the Deny is held against AWS's documented semantics; the store's requests are
held on moto (the multipart condition, the composite checksum recomputed from the caller's file) and by
botocore's Stubber. A corrupt blob is never trusted by its size: a designer's republish replaces it, anyone else
is told so."""

from __future__ import annotations

import hashlib
import io

import boto3
import pytest
from botocore.exceptions import ClientError
from botocore.response import StreamingBody
from botocore.stub import Stubber
from comfyui_sagemaker.aws import s3_store
from comfyui_sagemaker.aws.s3_store import S3Store
from comfyui_sagemaker.core.store import BlobCorrupt, blob_key
from harness.iam_semantics import BUCKET, PREFIX, allows, hand_policy, object_arn, stack_policy
from harness.moto_iam import enforced

WRITERS = ["designer", "artist", "gateway", "execution-role"]
BLOB = "blobs/sha256/" + "ab" * 32
CREATE = {"s3:if-none-match": "*", "s3:ObjectCreationOperation": "true"}  # PutObject / CompleteMultipartUpload
PLAIN = {"s3:ObjectCreationOperation": "true"}
PART = {"s3:ObjectCreationOperation": "false"}  # CreateMultipartUpload, UploadPart: no conditional header
TAG = {"aws:PrincipalTag/comfyui-sagemaker-instance": "abc123def456"}


@pytest.mark.parametrize("kms", [False, True])
@pytest.mark.parametrize("role", WRITERS)
def test_every_blob_writer_creates_blobs_and_replaces_none(role, kms):
    policy = stack_policy(role, kms)
    assert allows(policy, "s3:PutObject", object_arn(BLOB), {**CREATE, **TAG})
    assert allows(policy, "s3:PutObject", object_arn(BLOB), {**PART, **TAG}), "a multipart upload's parts"
    assert not allows(policy, "s3:PutObject", object_arn(BLOB), {**PLAIN, **TAG}), "a plain PUT replaces"
    assert not allows(policy, "s3:PutObject", object_arn(BLOB), TAG), "without the operation key: refused too"
    assert not allows(policy, "s3:PutObject", object_arn(BLOB), {"s3:if-match": '"etag"', **PLAIN, **TAG})


def test_the_deny_is_for_blobs_only():
    designer = stack_policy("designer")
    assert allows(designer, "s3:PutObject", object_arn("templates/index.json"), PLAIN)
    assert allows(designer, "s3:DeleteObject", object_arn(BLOB)), "a designer's republish repairs a corrupt blob"
    for role in ("artist", "gateway", "execution-role"):
        assert not allows(stack_policy(role), "s3:DeleteObject", object_arn(BLOB), TAG), role


# --- the store's requests ---------------------------------------------------------------------------------------

@pytest.fixture
def small_parts(monkeypatch):
    """S3's smallest part (5 MiB) as the multipart threshold, so a 12 MiB file goes up in 3 parts."""
    monkeypatch.setattr(s3_store, "MULTIPART", 5 * 1024 * 1024)
    return 12 * 1024 * 1024


def _file(tmp_path, data: bytes, name: str = "model.safetensors"):
    path = tmp_path / name
    path.write_bytes(data)
    return str(path), hashlib.sha256(data).hexdigest()


def _record(client, operations: set[str]) -> list[tuple[str, dict]]:
    seen: list[tuple[str, dict]] = []

    def record(model, params, **_):
        if model.name in operations:
            seen.append((model.name, dict(params)))
    client.meta.events.register("before-parameter-build.s3", record)
    return seen


def test_a_multipart_blob_is_created_once_and_verified_from_the_callers_file(aws_env, tmp_path, small_parts):
    from moto import mock_aws

    data = bytes(range(256)) * (small_parts // 256)
    path, digest = _file(tmp_path, data)
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket=BUCKET)
        seen = _record(s3, {"CompleteMultipartUpload", "GetObject", "PutObject"})
        store = S3Store(BUCKET, PREFIX, s3_client=s3)
        assert not store.has_blob(digest, len(data), path)
        store.put_blob(digest, path)
        completes = [p for op, p in seen if op == "CompleteMultipartUpload"]
        assert [p.get("IfNoneMatch") for p in completes] == ["*"]
        seen.clear()
        assert S3Store(BUCKET, PREFIX, s3_client=s3).has_blob(digest, len(data), path)
        assert not seen, "verified from the local file: no byte read back"
        store.put_blob(digest, path)  # a second writer: 412, the blob verified, nothing replaced
        assert [op for op, _ in seen] == ["CompleteMultipartUpload"]


def test_a_corrupt_multipart_blob_is_not_trusted_by_its_size_and_a_republish_repairs_it(aws_env, tmp_path,
                                                                                      small_parts):
    from moto import mock_aws

    data = b"\x01" * small_parts
    bad = b"\x02" * small_parts  # same size, other bytes, under the first file's digest
    path, digest = _file(tmp_path, data)
    bad_path, _ = _file(tmp_path, bad, "other")
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket=BUCKET)
        s3.upload_file(bad_path, BUCKET, f"{PREFIX}/{blob_key(digest)}", ExtraArgs={"ChecksumAlgorithm": "SHA256"},
                       Config=S3Store(BUCKET, PREFIX).transfer_config())
        store = S3Store(BUCKET, PREFIX, s3_client=s3)
        assert not store.has_blob(digest, len(data), path)
        assert not store.has_blob(digest, len(data)), "read back and hashed without a local copy"
        store.put_blob(digest, path)  # a designer: 412, not the digest's bytes, deleted and created again
        body = s3.get_object(Bucket=BUCKET, Key=f"{PREFIX}/{blob_key(digest)}")["Body"].read()
        assert hashlib.sha256(body).hexdigest() == digest
        assert S3Store(BUCKET, PREFIX, s3_client=s3).has_blob(digest, len(data), path)


def test_an_artist_meeting_a_corrupt_blob_is_told_so_and_replaces_nothing(aws_env, tmp_path):
    path, digest = _file(tmp_path, b"the input image")
    key = f"{PREFIX}/{blob_key(digest)}"
    with enforced({"designer": stack_policy("designer"), "artist": hand_policy("artist", "abc123def456")}) as c:
        c["designer"].put_object(Bucket=BUCKET, Key=key, Body=b"something else")  # moto: the Deny left out
        with pytest.raises(BlobCorrupt, match="designer"):
            S3Store(BUCKET, PREFIX, s3_client=c["artist"]).put_blob(digest, path)
        assert c["designer"].get_object(Bucket=BUCKET, Key=key)["Body"].read() == b"something else"
        with pytest.raises(ClientError) as err:  # and it may not delete it itself
            c["artist"].delete_object(Bucket=BUCKET, Key=key)
        assert err.value.response["Error"]["Code"] == "AccessDenied"


def test_the_execution_role_stores_outputs_as_blobs_under_iam(aws_env, tmp_path):
    path, digest = _file(tmp_path, b"an output image")
    with enforced({"execution-role": stack_policy("execution-role")}) as c:
        store = S3Store(BUCKET, PREFIX, s3_client=c["execution-role"])
        store.put_blob(digest, path)
        store.put_blob(digest, path)  # the same output again: created once, verified
        assert store.has_blob(digest, len(b"an output image"), path)


def test_a_412_after_a_lost_answer_is_the_blob_this_write_stored(aws_env, tmp_path):
    """botocore retries a PUT whose answer was lost; the retry meets the object the first attempt made (412):
    its full-object checksum is the digest, so the blob is stored, not an error."""
    import base64

    path, digest = _file(tmp_path, b"weights")
    s3 = boto3.client("s3", region_name="us-east-1")
    key = f"pre/{blob_key(digest)}"
    checksum = base64.b64encode(bytes.fromhex(digest)).decode()
    with Stubber(s3) as stub:
        stub.add_client_error("put_object", service_error_code="PreconditionFailed", http_status_code=412)
        stub.add_response("head_object", {"ContentLength": 7, "ChecksumSHA256": checksum, "ETag": '"e"'},
                          {"Bucket": "bkt", "Key": key, "ChecksumMode": "ENABLED"})
        S3Store("bkt", "pre", s3_client=s3).put_blob(digest, path)
        stub.assert_no_pending_responses()


def test_a_multipart_object_read_back_is_hashed_in_full(aws_env):
    s3 = boto3.client("s3", region_name="us-east-1")
    data = b"weights"
    digest = hashlib.sha256(data).hexdigest()
    key = f"pre/{blob_key(digest)}"
    with Stubber(s3) as stub:
        stub.add_response("head_object", {"ContentLength": 7, "ChecksumSHA256": "abc=-2", "ETag": '"e-2"'},
                          {"Bucket": "bkt", "Key": key, "ChecksumMode": "ENABLED"})
        stub.add_response("get_object", {"Body": StreamingBody(io.BytesIO(data), 7)}, {"Bucket": "bkt", "Key": key})
        assert S3Store("bkt", "pre", s3_client=s3).has_blob(digest, 7)
