"""The Comfy API v2 on S3 under IAM enforcement: an artist uploads an asset with an Idempotency-Key, creates
a job's idempotency key and frees one (a failed request), and reads the old webhook-secret key as missing;
the gateway does the same for its runs and any owner's. Run through the real store code (S3Store, the asset
service, Idempotency) with moto's IAM enforcement and the policies as written and as the stack makes them;
what moto does not evaluate (the s3:if-none-match condition, 404 against 403) is held against AWS's
documented semantics (tests/harness/iam_semantics.py).

The webhook secret is not in the store any more (core/webhook_secret.py): a webhook needs no store write;
the old `webhooks/secret.json` is only looked for (a HEAD), which must answer 404, not 403."""

from __future__ import annotations

import hashlib

import pytest
from botocore.exceptions import ClientError
from comfyui_sagemaker.aws import stack
from comfyui_sagemaker.aws.s3_store import S3Store
from comfyui_sagemaker.core.identity import Owner
from comfyui_sagemaker.core.v2.assets import AssetService
from comfyui_sagemaker.core.v2.idempotency import Claim, Idempotency, Replay
from comfyui_sagemaker.core.webhook_secret import LEGACY_KEY
from harness.iam_semantics import BUCKET, PREFIX, allows, hand_policy, missing_key_status, object_arn, stack_policy
from harness.moto_iam import enforced

ME = Owner("abc123def456", "artist")
OTHER = Owner("fff000fff000", "someone else")
WRITE_ONCE = {"s3:if-none-match": "*"}


def policies() -> dict[str, dict]:
    return {"artist": hand_policy("artist", ME.instance), "artist-stack": stack_policy("artist"),
            "gateway": stack_policy("gateway")}


def v2_flows(store: S3Store, owner: Owner, tmp_path) -> None:
    """What an artist's ComfyUI (or the gateway) writes for the v2 surface, as server_routes/v2.py does it."""
    keys = Idempotency(store)
    claim = keys.begin(f"assets.{owner.key}", "upload-1", "fp")
    assert isinstance(claim, Claim)
    data = b"an input image"
    path = tmp_path / "in.png"
    path.write_bytes(data)
    assets = AssetService(store, lambda user: owner, lambda execution_id: None)
    asset, _ = assets.ingest(str(path), hashlib.sha256(data).hexdigest(), "b" * 64, len(data), "image/png", "in.png")
    keys.finish(claim, 201, {"id": asset.id})
    assert isinstance(keys.begin(f"assets.{owner.key}", "upload-1", "fp"), Replay)
    job = keys.begin(f"jobs.studio.{owner.key}", "job-1", "fp")  # a v2 POST /jobs whose run then failed
    keys.abandon(job)
    assert not store.exists(LEGACY_KEY)  # the old webhook secret, looked for: missing, not forbidden


@pytest.mark.parametrize("role", ["artist", "artist-stack", "gateway"])
def test_the_v2_surface_works_on_s3_under_iam(aws_env, tmp_path, role):
    owner = ME if role.startswith("artist") else Owner("0123456789ab", "gateway")
    with enforced(policies(), {"artist-stack": {stack.INSTANCE_TAG: ME.instance}}) as clients:
        v2_flows(S3Store(BUCKET, PREFIX, s3_client=clients[role]), owner, tmp_path)


def test_an_artist_cannot_write_another_owners_keys(aws_env):
    other = [f"idempotency/assets.{OTHER.key}/{'0' * 64}.json", f"idempotency/jobs.studio.{OTHER.key}/{'0' * 64}.json",
             f"idempotency/expiry/20261207T000000.assets.{OTHER.key}.{'0' * 64}",
             f"executions/records/{OTHER.instance}/20261207T000000000000-deadbeef-{OTHER.instance}.json"]
    with enforced(policies()) as clients:
        s3 = clients["artist"]
        for key in other:
            with pytest.raises(ClientError) as err:
                s3.put_object(Bucket=BUCKET, Key=f"{PREFIX}/{key}", Body=b"{}")
            assert err.value.response["Error"]["Code"] == "AccessDenied", key
            with pytest.raises(ClientError) as err:
                s3.delete_object(Bucket=BUCKET, Key=f"{PREFIX}/{key}")
            assert err.value.response["Error"]["Code"] == "AccessDenied", key


@pytest.mark.parametrize("role", ["artist", "artist-stack", "gateway"])
def test_asset_records_are_created_never_overwritten(role):
    """Their key names no owner, so the grant is for a create only: the request must carry If-None-Match
    (the s3:if-none-match key not null: S3 User Guide, "Enforce conditional writes on Amazon S3 buckets",
    example 1), which S3Store.create sends; a plain PUT over someone's record is refused. moto does not
    evaluate this key."""
    policy = policies()[role]
    record = object_arn("assets/records/0b6f4c1e-5d7a-4e8b-9c2d-3f4a5b6c7d8e.json")
    assert allows(policy, "s3:PutObject", record, WRITE_ONCE)
    assert not allows(policy, "s3:PutObject", record)
    assert not allows(policy, "s3:PutObject", record, {"s3:if-match": '"etag"'})


@pytest.mark.parametrize("role", ["artist", "artist-stack", "gateway"])
def test_the_old_webhook_secret_key_reads_as_missing(role):
    assert missing_key_status(policies()[role], LEGACY_KEY) == 404


def test_the_gateway_serves_every_owners_runs_but_publishes_nothing(aws_env):
    gateway = stack_policy("gateway")
    assert allows(gateway, "s3:PutObject", object_arn(f"executions/records/{OTHER.instance}/x.json"))
    assert allows(gateway, "s3:DeleteObject", object_arn(f"executions/inflight/{OTHER.key}/x"))
    for key in ("templates/index.json", "environments/studio/manifest.json", f"blobs/sha256/{'0' * 64}"):
        assert not allows(gateway, "s3:DeleteObject", object_arn(key)), key
    for key in ("templates/index.json", "environments/studio/manifest.json", "changes/templates.json"):
        assert not allows(gateway, "s3:PutObject", object_arn(key)), key
    assert not any(allows(gateway, action, "*") for action in (
        "sagemaker:CreateEndpoint", "sagemaker:DeleteEndpoint", "iam:PassRole",
        "application-autoscaling:RegisterScalableTarget"))
    with enforced({"gateway": gateway}) as clients:
        with pytest.raises(ClientError) as err:
            clients["gateway"].put_object(Bucket=BUCKET, Key=f"{PREFIX}/templates/index.json", Body=b"{}")
        assert err.value.response["Error"]["Code"] == "AccessDenied"


def test_the_gateway_is_granted_the_artists_actions_only():
    """The gateway runs what an artist's ComfyUI runs (the same handlers: docs/http-api.md), for every owner, but
    the sidebar's Costs section (the endpoints' CloudWatch metrics), which it does not serve."""
    def actions(policy: dict) -> set[str]:
        return {a for s in policy["Statement"] for a in s["Action"]}  # each an array in aws/iam/*.json
    costs = {"cloudwatch:GetMetricData"}
    artist = actions(hand_policy("artist", ME.instance)) | actions(hand_policy("artist-notices", ME.instance))
    assert actions(hand_policy("gateway")) == artist - costs
