"""The exact requests the S3 store sends (botocore's Stubber): moto's own
conditional check is not atomic, so on S3 the race is proven by the headers."""

import io

import boto3
import pytest
from botocore.stub import ANY, Stubber
from comfyui_sagemaker.aws.s3_store import WRITE_NONCE, S3Store
from comfyui_sagemaker.core.errors import StoreUnavailable
from comfyui_sagemaker.core.store import KeyExists, KeyNotFound, PreconditionFailed

pytestmark = pytest.mark.stubber


class BodyOf:
    """Matches a request body by its bytes, whether sent as bytes or as a file-like object."""

    def __init__(self, data: bytes):
        self.data = data

    def __eq__(self, other) -> bool:
        return (other.getvalue() if hasattr(other, "getvalue") else other) == self.data


def test_create_sends_if_none_match_star(stubbed_s3):
    store, stub = stubbed_s3
    stub.add_response("put_object", {"ETag": '"e1"'},
                      {"Bucket": "bkt", "Key": "pre/templates/a.json", "Body": b"x", "IfNoneMatch": "*",
                       "Metadata": {WRITE_NONCE: ANY}, "ChecksumAlgorithm": "SHA256"})
    assert store.create("templates/a.json", b"x") == '"e1"'


@pytest.mark.parametrize("status, code", [(412, "PreconditionFailed")])  # 409 is retried: test_s3_conditional
def test_create_lost_race_is_key_exists(stubbed_s3, status, code):
    store, stub = stubbed_s3
    stub.add_client_error("put_object", service_error_code=code, http_status_code=status)
    with pytest.raises(KeyExists):
        store.create("templates/a.json", b"x")


def test_replace_sends_if_match_etag(stubbed_s3):
    store, stub = stubbed_s3
    stub.add_response("put_object", {"ETag": '"e2"'},
                      {"Bucket": "bkt", "Key": "pre/templates/a.json", "Body": b"y", "IfMatch": '"e1"',
                       "Metadata": {WRITE_NONCE: ANY}, "ChecksumAlgorithm": "SHA256"})
    assert store.replace("templates/a.json", b"y", if_match='"e1"') == '"e2"'


@pytest.mark.parametrize("status, code, exc", [
    (412, "PreconditionFailed", PreconditionFailed),
    (404, "NoSuchKey", KeyNotFound),
])
def test_replace_failures(stubbed_s3, status, code, exc):
    store, stub = stubbed_s3
    stub.add_client_error("put_object", service_error_code=code, http_status_code=status)
    with pytest.raises(exc):
        store.replace("templates/a.json", b"y", if_match='"e1"')


@pytest.mark.parametrize("code, needle", [("NoSuchBucket", "does not exist"), ("AccessDenied", "access denied")])
def test_bucket_problems_are_store_unavailable(stubbed_s3, code, needle):
    store, stub = stubbed_s3
    stub.add_client_error("get_object", service_error_code=code, http_status_code=403)
    with pytest.raises(StoreUnavailable, match=needle):
        store.get("templates/a.json")


def test_uploads_carry_encryption_and_a_checksum(aws_env, tmp_path):
    from botocore.stub import ANY

    s3 = boto3.client("s3", region_name="us-east-1")
    store = S3Store("bkt", "pre", s3_client=s3, sse="aws:kms", kms_key_id="alias/comfy")
    path = tmp_path / "blob"
    path.write_bytes(b"small blob")
    with Stubber(s3) as stub:
        stub.add_response("put_object", {"ETag": '"e"'}, {
            "Bucket": "bkt", "Key": "pre/blobs/sha256/ab", "Body": ANY, "ChecksumAlgorithm": "SHA256",
            "ServerSideEncryption": "aws:kms", "SSEKMSKeyId": "alias/comfy"})
        store.put_file("blobs/sha256/ab", str(path))
        stub.assert_no_pending_responses()


def test_a_blob_carries_its_own_sha256_for_s3_to_check_and_a_mismatch_stores_nothing(stubbed_s3, tmp_path):
    """moto stores a body whatever x-amz-checksum-sha256 says; S3 answers 400 BadDigest ("The sha256 you
    specified did not match the calculated checksum"). Here: the header we send, and that answer."""
    import base64
    import hashlib

    from comfyui_sagemaker.core.store import BlobMismatch

    store, stub = stubbed_s3
    path = tmp_path / "model"
    path.write_bytes(b"weights")
    digest = hashlib.sha256(b"weights").hexdigest()
    checksum = base64.b64encode(bytes.fromhex(digest)).decode()
    stub.add_response("put_object", {"ETag": '"e"', "ChecksumSHA256": checksum}, {
        "Bucket": "bkt", "Key": f"pre/blobs/sha256/{digest}", "Body": BodyOf(b"weights"), "ChecksumAlgorithm": "SHA256",
        "ChecksumSHA256": checksum, "IfNoneMatch": "*"})  # written once
    store.put_blob(digest, str(path))
    stub.add_client_error("put_object", service_error_code="BadDigest", http_status_code=400,
                          service_message="The sha256 you specified did not match the calculated checksum.")
    with pytest.raises(BlobMismatch):
        store.put_blob(hashlib.sha256(b"what it was when hashed").hexdigest(), str(path))


@pytest.mark.parametrize("head, present", [
    ({"ContentLength": 7, "ChecksumSHA256": "full"}, True),
    ({"ContentLength": 7, "ChecksumSHA256": "other"}, False),
    ({"ContentLength": 8, "ChecksumSHA256": "full"}, False),
])
def test_has_blob_asks_for_s3s_checksum(stubbed_s3, head, present):
    import base64
    import hashlib

    store, stub = stubbed_s3
    digest = hashlib.sha256(b"weights").hexdigest()
    values = {"full": base64.b64encode(bytes.fromhex(digest)).decode(),
              "other": base64.b64encode(hashlib.sha256(b"x").digest()).decode()}
    head = {**head, "ChecksumSHA256": values[head["ChecksumSHA256"]]}
    stub.add_response("head_object", head, {"Bucket": "bkt", "Key": f"pre/blobs/sha256/{digest}",
                                            "ChecksumMode": "ENABLED"})
    assert store.has_blob(digest, 7) is present


@pytest.mark.parametrize("stored, present", [(b"weights", True), (b"weighTs", False)])
@pytest.mark.parametrize("head", [{"ChecksumSHA256": "abc=-3", "ETag": '"e-3"'}, {"ETag": '"e-3"'}, {"ETag": '"e"'}])
def test_a_blob_without_a_full_object_checksum_is_read_and_hashed_not_trusted_by_its_size(stubbed_s3, head, stored,
                                                                                            present):
    """A multipart blob's SHA-256 is composite (the parts' SHA-256s hashed: S3 User Guide, "Checking object
    integrity"), and an object put without a checksum has none: with no local copy to compare, the blob is
    read and hashed, once per ETag."""
    import hashlib

    from botocore.response import StreamingBody

    store, stub = stubbed_s3
    digest = hashlib.sha256(b"weights").hexdigest()
    key = f"pre/blobs/sha256/{digest}"
    stub.add_response("head_object", {"ContentLength": 7, **head}, {"Bucket": "bkt", "Key": key,
                                                                    "ChecksumMode": "ENABLED"})
    stub.add_response("get_object", {"Body": StreamingBody(io.BytesIO(stored), 7)}, {"Bucket": "bkt", "Key": key})
    assert store.has_blob(digest, 7) is present
    stub.add_response("head_object", {"ContentLength": 7, **head}, {"Bucket": "bkt", "Key": key,
                                                                    "ChecksumMode": "ENABLED"})
    if not present:  # a corrupt blob is looked at again each time (a repair may have replaced it)
        stub.add_response("get_object", {"Body": StreamingBody(io.BytesIO(stored), 7)}, {"Bucket": "bkt", "Key": key})
    assert store.has_blob(digest, 7) is present
    stub.assert_no_pending_responses()
