"""S3 conditional writes: 412 means another writer won; 409 ConditionalRequestConflict means
"a conflicting operation occurred during the upload... retry" (PutObject's IfNoneMatch / IfMatch
in botocore's S3 model), so the store retries it before it gives up."""

import pytest
from botocore.stub import ANY
from comfyui_sagemaker.aws import s3_store
from comfyui_sagemaker.aws.s3_store import WRITE_NONCE
from comfyui_sagemaker.core.errors import StoreUnavailable
from comfyui_sagemaker.core.store import KeyExists, PreconditionFailed

pytestmark = pytest.mark.stubber

CREATE = {"Bucket": "bkt", "Key": "pre/templates/a.json", "Body": b"x", "IfNoneMatch": "*",
          "Metadata": {WRITE_NONCE: ANY}, "ChecksumAlgorithm": "SHA256"}
REPLACE = {"Bucket": "bkt", "Key": "pre/templates/a.json", "Body": b"y", "IfMatch": '"e1"',
           "Metadata": {WRITE_NONCE: ANY}, "ChecksumAlgorithm": "SHA256"}


def conflict(stub, params):
    stub.add_client_error("put_object", service_error_code="ConditionalRequestConflict", http_status_code=409,
                          service_message="A conflicting conditional operation is currently in progress against "
                                          "this resource. Please try again.", expected_params=params)


def tries() -> int:
    return s3_store.CONFLICT_BACKOFF.attempts


@pytest.mark.parametrize("write, params", [
    (lambda store: store.create("templates/a.json", b"x"), CREATE),
    (lambda store: store.replace("templates/a.json", b"y", if_match='"e1"'), REPLACE),
], ids=["create", "replace"])
def test_a_conflict_is_retried_then_succeeds(stubbed_s3, write, params):
    store, stub = stubbed_s3
    conflict(stub, params)
    stub.add_response("put_object", {"ETag": '"e2"'}, params)
    assert write(store) == '"e2"'


@pytest.mark.parametrize("write, params", [
    (lambda store: store.create("templates/a.json", b"x"), CREATE),
    (lambda store: store.replace("templates/a.json", b"y", if_match='"e1"'), REPLACE),
], ids=["create", "replace"])
def test_conflicts_that_do_not_clear_are_store_unavailable(stubbed_s3, write, params):
    store, stub = stubbed_s3
    for _ in range(tries()):
        conflict(stub, params)
    with pytest.raises(StoreUnavailable, match="kept conflicting"):
        write(store)


def test_a_conflict_then_the_other_writer_won_is_key_exists(stubbed_s3):
    """A 412 after an earlier attempt is read back: the object carries another write's nonce."""
    store, stub = stubbed_s3
    conflict(stub, CREATE)
    stub.add_client_error("put_object", service_error_code="PreconditionFailed", http_status_code=412,
                          expected_params=CREATE)
    stub.add_response("head_object", {"ETag": '"e9"', "Metadata": {WRITE_NONCE: "someone-else"}},
                      {"Bucket": "bkt", "Key": "pre/templates/a.json"})
    with pytest.raises(KeyExists):
        store.create("templates/a.json", b"x")


def test_precondition_failed_is_not_retried(stubbed_s3):
    store, stub = stubbed_s3
    stub.add_client_error("put_object", service_error_code="PreconditionFailed", http_status_code=412,
                          expected_params=REPLACE)
    with pytest.raises(PreconditionFailed):
        store.replace("templates/a.json", b"y", if_match='"e1"')
