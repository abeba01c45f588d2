"""Load Image (S3) and Save Image (S3) in a real ComfyUI whose boto3 talks to moto's S3 server."""

import io
import json
import uuid

import pytest
import requests
from harness.comfyui import ComfyUI
from harness.images import pixels, png
from PIL import Image

pytestmark = pytest.mark.comfyui


@pytest.fixture(scope="module")
def s3_comfyui(aws_rig):
    """The session's ComfyUI on moto (tests/harness/aws_rig.py): saved images are encrypted as configured
    there (COMFYUI_SAGEMAKER_S3_SSE=AES256, as the store's writes are). Each test has a bucket of its own."""
    return aws_rig.comfyui


@pytest.fixture
def bucket(moto_server):
    name = f"images-{uuid.uuid4().hex[:8]}"
    moto_server.client("s3").create_bucket(Bucket=name)
    return name


def load_invert_save(uri, prefix, filename_prefix="inv"):
    return {
        "1": {"class_type": "SageMakerLoadImageS3", "inputs": {"uri": uri}},
        "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
        "3": {"class_type": "SageMakerSaveImageS3",
              "inputs": {"images": ["2", 0], "prefix": prefix, "filename_prefix": filename_prefix}},
    }


def load_preview(uri):
    return {
        "1": {"class_type": "SageMakerLoadImageS3", "inputs": {"uri": uri}},
        "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}},
    }


def keys(s3, bucket, prefix=""):
    return sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", []))


def get(s3, uri):
    bucket, key = uri.removeprefix("s3://").split("/", 1)
    return s3.get_object(Bucket=bucket, Key=key)


def close(a, b, tolerance=1):
    return all(abs(x - y) <= tolerance for x, y in zip(a, b, strict=True))


def error_of(events):
    assert events[-1]["type"] == "execution_error", events[-1]
    return events[-1]["data"]


def test_load_invert_save_through_moto(s3_comfyui, moto_server, bucket):
    s3 = moto_server.client("s3")
    s3.put_object(Bucket=bucket, Key="in/cat.png", Body=png(8, 6, (10, 100, 200)))
    client = s3_comfyui.client()
    prompt = load_invert_save(f"s3://{bucket}/in/cat.png", f"s3://{bucket}/out")  # a / is added to the prefix

    entry, events = client.run(prompt)
    assert events[-1]["type"] == "execution_success", events[-1]
    out = entry["outputs"]["3"]
    [uri] = out["text"]
    assert uri.startswith(f"s3://{bucket}/out/inv_") and uri.endswith("_00000.png")
    assert keys(s3, bucket, "out/") == [uri.split("/", 3)[3]]
    obj = get(s3, uri)
    assert obj["ContentType"] == "image/png" and obj["ServerSideEncryption"] == "AES256"
    data = obj["Body"].read()
    assert Image.open(io.BytesIO(data)).size == (8, 6)
    assert all(close(p, (245, 155, 55)) for p in pixels(data))
    assert "prompt" in Image.open(io.BytesIO(data)).info  # the workflow travels with the image, like Save Image
    # The canvas preview is the same PNG, in ComfyUI's temp folder.
    [preview] = out["images"]
    assert preview["type"] == "temp" and client.view(preview["filename"], type="temp") == data

    # Same prompt, same object: ComfyUI's cache holds, nothing is written again.
    _, events = client.run(prompt)
    assert events[-1]["type"] == "execution_success"
    assert len(keys(s3, bucket, "out/")) == 1

    # A new object under the same key changes IS_CHANGED (its ETag): the prompt runs again.
    s3.put_object(Bucket=bucket, Key="in/cat.png", Body=png(8, 6, (0, 0, 0)))
    entry, _ = client.run(prompt)
    [uri2] = entry["outputs"]["3"]["text"]
    assert uri2 != uri and len(keys(s3, bucket, "out/")) == 2
    assert all(close(p, (255, 255, 255)) for p in pixels(get(s3, uri2)["Body"].read()))


def test_mask_from_alpha_and_every_frame_of_an_animation(s3_comfyui, moto_server, bucket):
    s3 = moto_server.client("s3")
    buf = io.BytesIO()
    Image.new("RGBA", (4, 4), (1, 2, 3, 64)).save(buf, format="PNG")
    s3.put_object(Bucket=bucket, Key="alpha.png", Body=buf.getvalue())
    frames = [Image.new("RGB", (5, 3), c) for c in ((255, 0, 0), (0, 0, 255))]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=100)
    s3.put_object(Bucket=bucket, Key="anim.gif", Body=buf.getvalue())
    client = s3_comfyui.client()
    prompt = {
        "1": {"class_type": "SageMakerLoadImageS3", "inputs": {"uri": f"  s3://{bucket}/alpha.png\n"}},
        "2": {"class_type": "MaskToImage", "inputs": {"mask": ["1", 1]}},
        "3": {"class_type": "SageMakerSaveImageS3",
              "inputs": {"images": ["2", 0], "prefix": f"s3://{bucket}", "filename_prefix": "masks/m"}},
        "4": {"class_type": "SageMakerLoadImageS3", "inputs": {"uri": f"s3://{bucket}/anim.gif"}},
        "5": {"class_type": "SageMakerSaveImageS3",
              "inputs": {"images": ["4", 0], "prefix": f"s3://{bucket}/frames/", "filename_prefix": ""}},
    }
    entry, events = client.run(prompt)
    assert events[-1]["type"] == "execution_success", events[-1]
    [mask_uri] = entry["outputs"]["3"]["text"]
    assert mask_uri.startswith(f"s3://{bucket}/masks/m_")
    assert all(close(p, (191, 191, 191)) for p in pixels(get(s3, mask_uri)["Body"].read()))  # 1 - 64/255
    uris = entry["outputs"]["5"]["text"]
    assert [u.rsplit("_", 1)[1] for u in uris] == ["00000.png", "00001.png"]
    colours = [pixels(get(s3, u)["Body"].read())[0] for u in uris]
    assert close(colours[0], (255, 0, 0), 2) and close(colours[1], (0, 0, 255), 2)


def test_a_missing_object(s3_comfyui, bucket):
    _, events = s3_comfyui.client().run(load_preview(f"s3://{bucket}/nope.png"))
    err = error_of(events)
    assert err["node_id"] == "1" and f"no object at s3://{bucket}/nope.png" in err["exception_message"]
    assert err["exception_type"].endswith("S3ObjectNotFound")


def test_a_missing_bucket_to_load_from_and_to_save_to(s3_comfyui, moto_server, bucket):
    missing = f"gone-{uuid.uuid4().hex[:8]}"
    client = s3_comfyui.client()
    _, events = client.run(load_preview(f"s3://{missing}/a.png"))
    err = error_of(events)
    assert err["node_id"] == "1" and f"no bucket named '{missing}'" in err["exception_message"]

    moto_server.client("s3").put_object(Bucket=bucket, Key="a.png", Body=png())
    _, events = client.run(load_invert_save(f"s3://{bucket}/a.png", f"s3://{missing}/out/"))
    err = error_of(events)
    assert err["node_id"] == "3" and f"no bucket named '{missing}'" in err["exception_message"]


def test_an_object_that_is_not_an_image(s3_comfyui, moto_server, bucket):
    moto_server.client("s3").put_object(Bucket=bucket, Key="notes.png", Body=b"not an image")
    _, events = s3_comfyui.client().run(load_preview(f"s3://{bucket}/notes.png"))
    err = error_of(events)
    assert err["node_id"] == "1" and f"s3://{bucket}/notes.png is not an image" in err["exception_message"]


@pytest.mark.parametrize("uri", ["bucket/key.png", "s3://bucket", "s3://bucket/", "https://x.s3.amazonaws.com/k"])
def test_a_malformed_uri_is_refused_before_the_run(s3_comfyui, uri):
    r = s3_comfyui.client().post("/prompt", json={"prompt": load_preview(uri)})
    assert r.status_code == 400, r.text
    [error] = r.json()["node_errors"]["1"]["errors"]
    assert "expected s3://bucket/key" in error["details"]


def test_a_malformed_prefix_fails_on_the_save_node(s3_comfyui, moto_server, bucket):
    moto_server.client("s3").put_object(Bucket=bucket, Key="a.png", Body=png())
    _, events = s3_comfyui.client().run(load_invert_save(f"s3://{bucket}/a.png", "bucket/out/"))
    err = error_of(events)
    assert err["node_id"] == "3" and "expected s3://bucket/prefix/" in err["exception_message"]


def test_access_denied_to_load_and_to_save(moto_server, bucket, tmp_path_factory):
    """moto's server checks IAM (its /moto-api/reset-auth) for a ComfyUI whose keys may list the bucket
    and read `open/`, nothing else: the load node says so for a private object, the save node for a write."""
    iam, s3 = moto_server.client("iam"), moto_server.client("s3")
    user = f"reader-{uuid.uuid4().hex[:8]}"
    iam.create_user(UserName=user)
    iam.put_user_policy(UserName=user, PolicyName="read-open", PolicyDocument=json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "s3:ListBucket", "Resource": f"arn:aws:s3:::{bucket}"},
                      {"Effect": "Allow", "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{bucket}/open/*"}],
    }))
    key = iam.create_access_key(UserName=user)["AccessKey"]
    s3.put_object(Bucket=bucket, Key="private/a.png", Body=png())
    s3.put_object(Bucket=bucket, Key="open/a.png", Body=png())
    env = {**moto_server.env(), "AWS_ACCESS_KEY_ID": key["AccessKeyId"],
           "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"]}
    server = ComfyUI(tmp_path_factory.mktemp("s3-denied") / "base", env=env).start()
    try:
        assert requests.post(moto_server.url + "/moto-api/reset-auth", data="0", timeout=30).ok  # IAM checks on
        client = server.client()
        _, events = client.run(load_preview(f"s3://{bucket}/private/a.png"))
        err = error_of(events)
        assert err["node_id"] == "1" and err["exception_type"].endswith("S3AccessDenied")
        assert f"access denied to s3://{bucket}/private/a.png" in err["exception_message"]

        _, events = client.run(load_invert_save(f"s3://{bucket}/open/a.png", f"s3://{bucket}/out/"))
        err = error_of(events)
        assert err["node_id"] == "3" and err["exception_type"].endswith("S3AccessDenied")
        assert f"access denied to s3://{bucket}/out/" in err["exception_message"]
    finally:
        requests.post(moto_server.url + "/moto-api/reset-auth", data="inf", timeout=30)  # IAM checks off again
        server.stop()
    assert keys(s3, bucket, "out/") == []  # nothing was written
