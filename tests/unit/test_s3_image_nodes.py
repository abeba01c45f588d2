"""The S3 image nodes' URIs and error messages, without ComfyUI or AWS."""

import pytest
from botocore.exceptions import ClientError, NoCredentialsError
from comfyui_sagemaker.nodes import s3_images as n


def client_error(code, message="", op="GetObject"):
    return ClientError({"Error": {"Code": code, "Message": message}}, op)


@pytest.mark.parametrize("uri, need_key, expected", [
    ("s3://b/k.png", True, ("b", "k.png")),
    ("  s3://b/dir/k.png\n", True, ("b", "dir/k.png")),
    ("s3://b/a b/k.png", True, ("b", "a b/k.png")),
    ("s3://b", False, ("b", "")),
    ("s3://b/", False, ("b", "")),
    ("s3://b/out/", False, ("b", "out/")),
])
def test_parse_uri(uri, need_key, expected):
    assert n.parse_uri(uri, need_key) == expected


@pytest.mark.parametrize("uri, need_key", [
    ("s3://b", True), ("s3://b/", True), ("b/k.png", True), ("s3:///k.png", True), ("S3://b/k", True),
    ("s3://b c/k", True), ("", True), (None, True), ("https://b.s3.amazonaws.com/k", False), ("s3://", False),
])
def test_malformed_uris(uri, need_key):
    with pytest.raises(n.S3UriInvalid, match="expected s3://bucket/"):
        n.parse_uri(uri, need_key)


URI = "s3://b/k.png"


@pytest.mark.parametrize("err, cls, message", [
    (client_error("AccessDenied", "Access Denied"), n.S3AccessDenied,
     "access denied to s3://b/k.png (check the credentials' permissions)"),
    (client_error("403", "Forbidden", "HeadObject"), n.S3AccessDenied, "access denied to s3://b/k.png"),
    (client_error("NoSuchKey", "The specified key does not exist."), n.S3ObjectNotFound, "no object at s3://b/k.png"),
    (client_error("404", "Not Found", "HeadObject"), n.S3ObjectNotFound, "no object at s3://b/k.png"),
    (client_error("NoSuchBucket", "The specified bucket does not exist"), n.S3BucketNotFound,
     "no bucket named 'b' (for s3://b/k.png)"),
    (client_error("InvalidAccessKeyId", "The AWS Access Key Id you provided does not exist"), n.S3AccessDenied,
     "AWS refused the credentials used for s3://b/k.png (InvalidAccessKeyId"),
    (client_error("SlowDown", "Please reduce your request rate"), n.S3ImageError,
     "s3://b/k.png: SlowDown: Please reduce your request rate"),
    (NoCredentialsError(), n.S3ImageError, "s3://b/k.png: no AWS credentials found"),
])
def test_botocore_errors_in_the_nodes_words(err, cls, message):
    out = n.s3_error(err, URI, "us-east-1")
    assert type(out) is cls and message in str(out)


def test_validate_inputs_reports_a_malformed_uri_and_lets_a_linked_one_through():
    assert n.SageMakerLoadImageS3.VALIDATE_INPUTS("s3://b/k.png") is True
    assert n.SageMakerLoadImageS3.VALIDATE_INPUTS(None) is True
    assert "expected s3://bucket/key" in n.SageMakerLoadImageS3.VALIDATE_INPUTS("b/k.png")


def test_the_nodes_are_registered_with_tooltips_and_descriptions():
    from comfyui_sagemaker.nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

    assert NODE_DISPLAY_NAME_MAPPINGS["SageMakerLoadImageS3"] == "Load Image (S3)"
    assert NODE_DISPLAY_NAME_MAPPINGS["SageMakerSaveImageS3"] == "Save Image (S3)"
    for name in n.CLASSES:
        cls = NODE_CLASS_MAPPINGS[name]
        assert cls.CATEGORY == "SageMaker/S3" and cls.DESCRIPTION
        for spec in cls.INPUT_TYPES()["required"].values():
            assert spec[1].get("tooltip"), name
    assert n.SageMakerSaveImageS3.OUTPUT_NODE is True
