"""DELETE /assets/{id} on S3 under IAM enforcement (moto, the policies as the stack makes them): the gateway,
which serves the Comfy API v2 to apps, deletes an uploaded asset's record through the real store and asset
code; an artist's ComfyUI may not (an asset record's key names no owner, so IAM could not keep an artist to
their own; the route is designer-only there, server_routes/policy.py), and the bytes stay for anyone."""

from __future__ import annotations

import hashlib

import pytest
from botocore.exceptions import ClientError
from comfyui_sagemaker.aws.s3_store import S3Store
from comfyui_sagemaker.core.identity import Owner
from comfyui_sagemaker.core.store import blob_key
from comfyui_sagemaker.core.v2.assets import AssetNotFound, AssetService
from harness.iam_semantics import BUCKET, PREFIX, allows, hand_policy, object_arn, stack_policy
from harness.moto_iam import enforced

GATEWAY = Owner("0123456789ab", "gateway")
RECORD = "assets/records/0b6f4c1e-5d7a-4e8b-9c2d-3f4a5b6c7d8e.json"


def test_the_gateway_deletes_an_asset_record_and_the_bytes_stay(aws_env, tmp_path):
    with enforced({"gateway": stack_policy("gateway")}) as clients:
        store = S3Store(BUCKET, PREFIX, s3_client=clients["gateway"])
        assets = AssetService(store, lambda user: GATEWAY, lambda execution_id: None)
        data = b"an input the app uploaded"
        path = tmp_path / "in.png"
        path.write_bytes(data)
        asset, _ = assets.ingest(str(path), hashlib.sha256(data).hexdigest(), "d" * 64, len(data), "image/png",
                                 "in.png")
        assets.delete(asset.id, None, lambda sha256: None)
        with pytest.raises(AssetNotFound):
            assets.get(asset.id)
        assert store.exists(blob_key(hashlib.sha256(data).hexdigest()))
        with pytest.raises(ClientError) as err:  # the bytes are not the gateway's to delete
            clients["gateway"].delete_object(Bucket=BUCKET, Key=f"{PREFIX}/{blob_key(asset.sha256)}")
        assert err.value.response["Error"]["Code"] == "AccessDenied"


@pytest.mark.parametrize("policy", [hand_policy("artist", "abc123def456"), stack_policy("artist")],
                         ids=["artist", "artist-stack"])
def test_an_artist_cannot_delete_asset_records(policy):
    assert not allows(policy, "s3:DeleteObject", object_arn(RECORD))


def test_the_gateway_may_delete_asset_records():
    assert allows(stack_policy("gateway"), "s3:DeleteObject", object_arn(RECORD))
    assert allows(hand_policy("gateway"), "s3:DeleteObject", object_arn(RECORD))
