"""Blobs fetched from S3 with ranged GETs in parallel (worker/fetch.py): the requests as S3's API defines
them (botocore's Stubber: Range, and the first answer's ETag as If-Match on every later part), the bytes
and sha256 right at every boundary (moto), a broken part fetched again, an object replaced meanwhile
refused; and the materialiser fetching an environment's models this way, phase by phase."""

from __future__ import annotations

import hashlib
import io
import json
import os

import boto3
import pytest
from botocore.exceptions import ClientError, ReadTimeoutError
from botocore.response import StreamingBody
from botocore.stub import Stubber
from comfyui_sagemaker.worker import fetch
from comfyui_sagemaker.worker.fetch import MIB, RangedFetch, concurrency_for


def body(data: bytes) -> StreamingBody:
    return StreamingBody(io.BytesIO(data), len(data))


class BreaksOnce:
    """A response body whose connection drops after the first chunk."""

    def __init__(self, data: bytes):
        self.data, self.read_once = data, False

    def read(self, n: int = -1) -> bytes:
        if self.read_once:
            raise ReadTimeoutError(endpoint_url="https://s3.example")
        self.read_once = True
        return self.data[:10]


def ranged(data: bytes, start: int, end: int, etag: str = '"e1"', broken: bool = False) -> dict:
    part = data[start:end + 1]
    return {"Body": BreaksOnce(part) if broken else body(part), "ContentLength": len(part), "ETag": etag,
            "ContentRange": f"bytes {start}-{start + len(part) - 1}/{len(data)}"}


@pytest.mark.stubber
def test_the_requests_carry_their_range_and_the_first_answers_etag(tmp_path, aws_env):
    s3 = boto3.client("s3", region_name="us-east-1")
    data = os.urandom(2 * MIB + 5)
    stub = Stubber(s3)
    stub.add_response("get_object", ranged(data, 0, MIB - 1),
                      {"Bucket": "b", "Key": "p/k", "Range": f"bytes=0-{MIB - 1}"})
    for start in (MIB, 2 * MIB):
        end = min(start + MIB, len(data)) - 1
        stub.add_response("get_object", ranged(data, start, end),
                          {"Bucket": "b", "Key": "p/k", "Range": f"bytes={start}-{end}", "IfMatch": '"e1"'})
    seen = []
    with stub:
        digest = RangedFetch(s3, "b", "p/k", tmp_path / "f", part_size=MIB, concurrency=1, on_bytes=seen.append).run()
    stub.assert_no_pending_responses()
    assert digest == hashlib.sha256(data).hexdigest() and (tmp_path / "f").read_bytes() == data
    assert sum(seen) == len(data)


@pytest.mark.stubber
def test_a_part_whose_connection_breaks_is_fetched_again(tmp_path, aws_env):
    s3 = boto3.client("s3", region_name="us-east-1")
    data = os.urandom(MIB + 100)
    stub = Stubber(s3)
    stub.add_response("get_object", ranged(data, 0, MIB - 1),
                      {"Bucket": "b", "Key": "k", "Range": f"bytes=0-{MIB - 1}"})
    second = {"Bucket": "b", "Key": "k", "Range": f"bytes={MIB}-{len(data) - 1}", "IfMatch": '"e1"'}
    stub.add_response("get_object", ranged(data, MIB, len(data) - 1, broken=True), second)
    stub.add_response("get_object", ranged(data, MIB, len(data) - 1), second)
    seen = []
    with stub:
        digest = RangedFetch(s3, "b", "k", tmp_path / "f", part_size=MIB, concurrency=1, on_bytes=seen.append).run()
    assert digest == hashlib.sha256(data).hexdigest() and sum(seen) == len(data)  # the lost bytes not counted twice


@pytest.mark.stubber
def test_a_first_range_whose_connection_breaks_is_fetched_again(tmp_path, aws_env):
    s3 = boto3.client("s3", region_name="us-east-1")
    data = os.urandom(MIB // 2)
    stub = Stubber(s3)
    stub.add_response("get_object", ranged(data, 0, len(data) - 1, broken=True),
                      {"Bucket": "b", "Key": "k", "Range": f"bytes=0-{MIB - 1}"})
    stub.add_response("get_object", ranged(data, 0, len(data) - 1),
                      {"Bucket": "b", "Key": "k", "Range": f"bytes=0-{len(data) - 1}", "IfMatch": '"e1"'})
    seen = []
    with stub:
        digest = RangedFetch(s3, "b", "k", tmp_path / "f", part_size=MIB, concurrency=1, on_bytes=seen.append).run()
    assert digest == hashlib.sha256(data).hexdigest() and sum(seen) == len(data)


@pytest.mark.stubber
def test_a_missing_object_is_key_not_found(tmp_path, aws_env):
    from comfyui_sagemaker.core.store import KeyNotFound

    s3 = boto3.client("s3", region_name="us-east-1")
    stub = Stubber(s3)
    stub.add_client_error("get_object", "NoSuchKey", "The specified key does not exist.", 404)
    with stub, pytest.raises(KeyNotFound):
        RangedFetch(s3, "b", "k", tmp_path / "f", part_size=MIB).run()


@pytest.fixture
def moto_s3(aws_env, moto_s3_client):
    from moto import mock_aws

    with mock_aws():  # the session's client (tests/harness/stores.py), this case's own moto state
        moto_s3_client.create_bucket(Bucket="bucket")
        yield moto_s3_client


@pytest.mark.parametrize("size", [0, 1, MIB - 1, MIB, MIB + 1, 3 * MIB + MIB // 2])
def test_every_boundary_gives_the_same_bytes_and_digest(moto_s3, tmp_path, size):
    data = os.urandom(size)
    moto_s3.put_object(Bucket="bucket", Key="blob", Body=data)
    digest = RangedFetch(moto_s3, "bucket", "blob", tmp_path / "f", part_size=MIB, concurrency=4).run()
    assert digest == hashlib.sha256(data).hexdigest() and (tmp_path / "f").read_bytes() == data


def test_an_object_replaced_during_the_fetch_is_refused(moto_s3, tmp_path):
    moto_s3.put_object(Bucket="bucket", Key="blob", Body=b"a" * (2 * MIB))
    replaced = []

    def on_bytes(n: int) -> None:
        if not replaced:
            replaced.append(True)
            moto_s3.put_object(Bucket="bucket", Key="blob", Body=b"b" * (2 * MIB))

    with pytest.raises(ClientError, match="PreconditionFailed|412"):
        RangedFetch(moto_s3, "bucket", "blob", tmp_path / "f", part_size=MIB, concurrency=1, on_bytes=on_bytes).run()


def test_parallel_gets_are_sized_to_the_instance():
    assert concurrency_for(1) == 8 and concurrency_for(4) == 16 and concurrency_for(48) == 64


def test_the_materialiser_fetches_models_with_ranged_gets_and_times_each_phase(moto_s3, tmp_path, monkeypatch):
    from comfyui_sagemaker.aws import clients
    from comfyui_sagemaker.worker.materialise import Materialiser

    clients.reset()
    fetch._clients.clear()
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    model = os.urandom(3 * MIB + 7)
    sha = hashlib.sha256(model).hexdigest()
    moto_s3.put_object(Bucket="bucket", Key=f"team/blobs/sha256/{sha}", Body=model)
    manifest = {"name": "Env", "version": 1, "custom_nodes": [], "python_packages": [],
                "models": [{"folder": "checkpoints", "name": "big.safetensors", "size": len(model), "sha256": sha}]}
    moto_s3.put_object(Bucket="bucket", Key="team/environments/env/versions/v000001.json", Body=json.dumps(manifest))
    calls = []
    real = RangedFetch.run

    def counting(self):
        calls.append((self.part_size, self.concurrency))
        return real(self)

    monkeypatch.setattr(RangedFetch, "run", counting)
    m = Materialiser("s3://bucket/team/environments/env/versions/v000001.json", tmp_path / "cache",
                     tmp_path / "base", fetch_part=MIB, fetch_concurrency=3)
    activity = []
    m.coldstart.on_change = lambda urgent: activity.append(m.coldstart.activity)
    m.run("eager", install_packages=False)
    assert (tmp_path / "base" / "models" / "checkpoints" / "big.safetensors").read_bytes() == model
    assert calls == [(MIB, 3)]
    phases = {p["name"]: p for p in m.coldstart.to_json()}
    assert list(phases) == ["manifest", "packs", "models", "python_packages"]
    models = phases["models"]
    assert models["bytes"] == len(model) and models["fetched"] == 1 and models["bytes_per_s"] > 0
    assert "3 in parallel" in models["detail"]
    assert "models 3.1 of 3.1 MB" in activity and m.coldstart.activity is None
    clients.reset()
    fetch._clients.clear()
