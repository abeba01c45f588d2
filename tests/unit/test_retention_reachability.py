"""Retention by reachability on the folder store and on S3 (moto): a designer's daily retention removes the
expired records, and a blob goes only when no record, synced input, environment, template, asset or async
result refers to it any more and it is older than the grace period (core/retention.py)."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta, timezone

import pytest
from comfyui_sagemaker.core import retention
from comfyui_sagemaker.core.execution_records import ExecutionRecords
from comfyui_sagemaker.core.executions import new_id
from comfyui_sagemaker.core.identity import Owner
from comfyui_sagemaker.core.inputs import put_inputs
from comfyui_sagemaker.core.store import blob_key
from harness.fake_comfy import FakeComfy
from harness.fake_endpoints import FakeEndpoints
from harness.waiting import wait_for

ARTIST = Owner("artist000001", "artist")


@pytest.fixture
def designer(store, tmp_path):
    comfy = FakeComfy(tmp_path / "designer", store, FakeEndpoints(store))
    yield comfy
    comfy.close()


def later(monkeypatch, days: float = 2) -> None:
    """The sweep's clock `days` on: what the test wrote is past the grace period (records expire by their
    id's time, set by each test)."""
    moved = datetime.now(timezone.utc) + timedelta(days=days)

    class Later(datetime):
        @classmethod
        def now(cls, tz=None):
            return moved

    monkeypatch.setattr(retention, "datetime", Later, raising=False)


def blob(store, data: bytes) -> str:
    digest = hashlib.sha256(data).hexdigest()
    store.put(blob_key(digest), data)
    return digest


def run(store, *digests: str, age_days: int = 0, owner: Owner = ARTIST, inputs: dict | None = None) -> dict:
    """A finished run's record with these output digests, made `age_days` ago."""
    made = (datetime.now(timezone.utc) - timedelta(days=age_days)).strftime("%Y%m%dT%H%M%S%f")
    execution_id = new_id(owner.instance)
    if age_days:
        execution_id = made + execution_id[21:]
    record = {"id": execution_id, "prompt_id": "p", "template": "T", "environment": "E1", "endpoint": "E1",
              "owner": owner.to_json(), "client_id": None, "state": "succeeded", "created_at": "x",
              "inputs": inputs or {}, "error": None,
              "outputs": {"9": {"images": [{"filename": f"{d[:8]}.png", "subfolder": "", "type": "output",
                                            "sha256": d} for d in digests]}}}
    records = ExecutionRecords(store)
    records.create(record)
    records.ended(record)
    return record


def test_two_records_with_one_output_keep_it_while_either_lives(store, designer, monkeypatch):
    shared, own = blob(store, b"fixed seed"), blob(store, b"only the old run's")
    old, fresh = run(store, shared, own, age_days=40), run(store, shared)
    later(monkeypatch)
    assert designer.services.apply_retention() == 1
    records = ExecutionRecords(store)
    assert records.read(old["id"]) is None and records.read(fresh["id"]) is not None
    assert store.get(blob_key(shared)).data == b"fixed seed"  # the fresh run's output still opens
    assert not store.exists(blob_key(own))  # what only the expired record named is freed
    records.remove(fresh)
    designer.services.apply_retention()
    assert not store.exists(blob_key(shared))  # and once no record names it, it goes too


def test_an_input_sync_entry_keeps_the_blob_an_expired_record_shares(store, designer, tmp_path, monkeypatch):
    artist = FakeComfy(tmp_path / "artist", store, FakeEndpoints(store), role="artist")
    try:
        image = artist.base / "input" / "mine.png"
        image.write_bytes(b"an output used as an input")  # img2img on one's own output
        sync = artist.services.input_sync
        sync.notify(image, closed=True)
        wait_for(lambda: sync.digest("mine.png") is not None)
        digest = sync.digest("mine.png")
        wait_for(lambda: store.exists(f"{retention.SYNCED_INPUTS}{artist.services.owner.instance}.json"))
        run(store, digest, age_days=40)
        later(monkeypatch)
        assert designer.services.apply_retention() == 1
        assert store.exists(blob_key(digest))
        # Its file removed from the input folder: the synced set is published again without it, and it goes.
        image.unlink()
        sync.removed(image)
        wait_for(lambda: digest not in store.get(f"{retention.SYNCED_INPUTS}"
                                                 f"{artist.services.owner.instance}.json").data.decode())
        designer.services.apply_retention()
        assert not store.exists(blob_key(digest))
    finally:
        artist.close()


def test_a_synced_input_the_store_lost_is_uploaded_again_before_a_run_trusts_the_index(store, tmp_path):
    artist = FakeComfy(tmp_path / "artist", store, FakeEndpoints(store), role="artist")
    try:
        image = artist.base / "input" / "mine.png"
        image.write_bytes(b"synced once")
        sync = artist.services.input_sync
        sync.notify(image, closed=True)
        wait_for(lambda: sync.digest("mine.png") is not None)
        digest = sync.digest("mine.png")
        store.delete(blob_key(digest))  # swept while nothing referred to it (or removed by hand)
        got = put_inputs(store, artist.base / "input", ["mine.png"], artist.services.hash_cache, sync.digest)
        assert got == {"mine.png": digest} and store.get(blob_key(digest)).data == b"synced once"
    finally:
        artist.close()


def test_a_blob_younger_than_the_grace_period_is_never_swept(store, designer, monkeypatch):
    just_written = blob(store, b"a run wrote this a moment ago")
    run(store, just_written, age_days=40)  # named only by an expired record (or by nothing yet)
    assert designer.services.apply_retention() == 1
    assert store.exists(blob_key(just_written))
    later(monkeypatch, days=retention.GRACE.days + 1)
    designer.services.apply_retention()
    assert not store.exists(blob_key(just_written))


@pytest.mark.parametrize("key", ["templates/T.json", "assets/records/0a.json", "async/outputs/x.out",
                                 "environments/e1/versions/1.json", "executions/20260101T000000000000-0000000a.json"])
def test_each_kind_of_referrer_keeps_its_blobs(store, designer, monkeypatch, key):
    kept, lost = blob(store, b"referred to"), blob(store, b"referred to by nothing")
    store.put(key, json.dumps({"somewhere": {"deep": [{"sha256": kept}]}}).encode())
    later(monkeypatch)
    designer.services.apply_retention()
    assert store.exists(blob_key(kept)) and not store.exists(blob_key(lost))


def test_a_comfyui_not_heard_of_for_the_whole_retention_no_longer_keeps_its_inputs(store, designer, monkeypatch):
    digest = blob(store, b"an input of a ComfyUI that is gone")
    store.put(f"{retention.SYNCED_INPUTS}gone00000001.json", retention.synced_inputs_document("gone00000001", [digest]))
    later(monkeypatch)
    designer.services.apply_retention()
    assert store.exists(blob_key(digest))
    later(monkeypatch, days=retention.RETENTION_DAYS + 1)
    designer.services.apply_retention()
    assert not store.exists(blob_key(digest))
