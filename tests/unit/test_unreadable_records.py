"""One object in the store that cannot be read breaks only itself (core/unreadable.py), on both stores: lists
skip it and say so in `skipped`, a read of it by name answers its own error, an index is rebuilt from the
records and written back, a write whose index update fails still succeeds, a lease or an idempotency record
nobody can read is taken over."""

from __future__ import annotations

import json
import time

import pytest
from comfyui_sagemaker.core import errors, unreadable
from comfyui_sagemaker.core.environments import EnvironmentService, manifest_key
from comfyui_sagemaker.core.execution_records import ExecutionRecords
from comfyui_sagemaker.core.executions import ExecutionService, new_id
from comfyui_sagemaker.core.identity import Owner
from comfyui_sagemaker.core.leases import Leases, lease_key
from comfyui_sagemaker.core.templates import INDEX_KEY, TemplateService, key_of, parse_index
from comfyui_sagemaker.core.v2.assets import AssetCorrupt, AssetService
from comfyui_sagemaker.core.v2.idempotency import Claim, Idempotency

ME = Owner("aaaaaaaaaaaa", "designer box")
GARBAGE = [b"{not json", b"[1, 2]", b"", b'{"entries": 5}', b"\xff\xfe"]
PROMPT = {"1": {"class_type": "EmptyImage", "inputs": {}}}


@pytest.fixture(autouse=True)
def fresh_log_memory(monkeypatch):
    """Each object is logged once per process: each test starts with a process that logged nothing yet."""
    monkeypatch.setattr(unreadable, "_reported", set())


def templates(store) -> TemplateService:
    return TemplateService(store, lambda name: True)


@pytest.mark.parametrize("garbage", GARBAGE)
def test_an_unreadable_template_index_is_rebuilt_and_written_back_and_publish_completes(store, garbage, caplog):
    svc = templates(store)
    svc.create("Old", {}, PROMPT)
    store.put(INDEX_KEY, garbage)
    assert [t["name"] for t in svc.list()] == ["Old"]  # rebuilt from the templates on read...
    assert list(parse_index(store.get(INDEX_KEY).data)["entries"]) == ["_old"]  # ...and written back
    store.put(INDEX_KEY, garbage)
    assert svc.create("New", {}, PROMPT).version == 1  # the publish completes, its index entry included
    assert [t["name"] for t in svc.list()] == ["New", "Old"]
    with pytest.raises(errors.TemplateExists):
        svc.create("New", {}, PROMPT)
    assert caplog.text.count("templates/index.json cannot be read") == 1  # once, however often it was met


def test_a_publish_whose_index_update_fails_succeeds_and_the_next_list_has_it(store):
    svc = templates(store)
    svc.create("Old", {}, PROMPT)
    real = store.replace

    def refuse_the_index(key, data, if_match):
        if key == INDEX_KEY:
            raise errors.StoreUnavailable("the store refused the index")
        return real(key, data, if_match)

    store.replace = refuse_the_index
    assert svc.create("New", {}, PROMPT).name == "New"  # the template is the truth: success
    assert not store.exists(INDEX_KEY)  # stale index removed, so that...
    store.replace = real
    assert [t["name"] for t in svc.list()] == ["New", "Old"]  # ...its next reader rebuilds it


def test_an_unreadable_template_is_skipped_and_reported_and_fails_alone(store):
    svc = templates(store)
    svc.create("Good", {}, PROMPT)
    svc.create("Bad", {}, PROMPT)
    store.put(key_of("Bad"), b'{"name": "Bad", "workflow": 3}')
    store.delete(INDEX_KEY)
    listed, skipped = svc.listing()
    assert [t["name"] for t in listed] == ["Good"]
    assert skipped == [{"key": key_of("Bad"), "reason": "workflow is not a dict"}]
    assert svc.listing()[1] == skipped  # kept in the index: every list says so until it is mended
    with pytest.raises(errors.TemplateCorrupt) as err:
        svc.get("Bad")
    assert "'Bad'" in err.value.message and err.value.code == "template_corrupt"
    svc.delete("Bad")  # a designer can remove it; then it is no longer skipped
    assert svc.listing() == ([t for t in listed], [])


def execution(owner: Owner, state: str = "succeeded") -> dict:
    return {"id": new_id(owner.instance), "prompt_id": "p", "template": "T", "environment": "E1", "endpoint": "E1",
            "owner": owner.to_json(), "state": state, "created_at": "x", "outputs": {}, "error": None}


@pytest.mark.parametrize("garbage", [*GARBAGE, b'{"id": "someone else", "state": "succeeded"}'])
def test_an_unreadable_execution_record_is_skipped_by_every_list(store, garbage):
    records = ExecutionRecords(store)
    runs = [execution(ME) for _ in range(3)]
    for run in runs:
        records.create(run)
    bad = runs[1]
    store.put(records.key(bad["id"]), garbage)
    svc = ExecutionService(store, None, None, None, None, None, lambda *a: None, owner=ME)
    for owner in ("all", "me"):
        page, _, skipped = svc.listing(owner, limit=10)
        assert sorted(r["id"] for r in page) == sorted(r["id"] for r in runs if r is not bad)
        assert [s["key"] for s in skipped] == [records.key(bad["id"])] and skipped[0]["reason"]
    with pytest.raises(errors.ExecutionCorrupt) as err:
        svc.get(bad["id"])
    assert bad["id"] in err.value.message and err.value.code == "execution_corrupt"


def test_an_unreadable_run_in_flight_does_not_stop_a_restart(store):
    records = ExecutionRecords(store)
    good, bad = execution(ME, "running"), execution(ME, "running")
    records.create(good)
    records.create(bad)
    store.put(records.key(bad["id"]), b"{cut sho")
    svc = ExecutionService(store, None, None, None, None, None, lambda *a: None, owner=ME)
    assert svc.fail_interrupted() == 1
    assert records.read(good["id"])[0]["state"] == "failed" and records.inflight(ME.key) == []


def environment(store, name: str, version: int = 1, body: bytes | None = None) -> None:
    manifest = {"name": name, "version": version, "size": 1, "created_at": "x", "custom_nodes": [], "models": [],
                "templates": [], "endpoint": None}
    store.create(f"environments/{name.lower()}/claim.json", json.dumps({"name": name}).encode()) \
        if version == 1 else None
    store.create(manifest_key(name, version), body if body is not None else json.dumps(manifest).encode())


@pytest.mark.parametrize("garbage", [*GARBAGE, b'{"name": "Other", "version": 2, "custom_nodes": [], "models": []}',
                                     b'{"name": "Broken", "version": 2, "custom_nodes": [], "models": 5}'])
def test_an_unreadable_manifest_fails_its_environment_alone_naming_it(store, garbage):
    svc = EnvironmentService(store, templates(store), None, None, None, 1)
    environment(store, "Fine")
    environment(store, "Broken")
    environment(store, "Broken", 2, garbage)
    with pytest.raises(errors.EnvironmentCorrupt) as err:
        svc.get("Broken")
    assert err.value.code == "environment_corrupt" and "'Broken' version 2" in err.value.message
    assert svc.get("Broken", 1)["version"] == 1 and svc.get("Fine")["name"] == "Fine"
    listed, skipped = svc.listing()
    assert [e["name"] for e in listed] == ["broken", "Fine"] and "version 2" in listed[0]["problem"]
    assert [s["key"] for s in skipped] == [manifest_key("Broken", 2)]
    assert svc.canonical("Broken") == "Broken"


def test_an_unreadable_claim_is_taken_from_the_manifests(store):
    svc = EnvironmentService(store, templates(store), None, None, None, 1)
    environment(store, "Named")
    store.put("environments/named/claim.json", b"\x00")
    assert svc.canonical("named") == "Named"


def test_an_unreadable_lease_counts_as_expired(store):
    leases = Leases(store, ME, renew_every=3600)
    store.put(lease_key("E1"), b'{"holder": "x", "expires_at": "never"}')
    assert leases.current("E1") is None
    lease = leases.acquire("E1", "deploying")  # taken over, by compare-and-swap
    try:
        assert leases.current("E1")["what"] == "deploying"
    finally:
        leases.release(lease)


def test_an_unreadable_idempotency_record_is_taken_over(store):
    keys = Idempotency(store, clock=time.time)
    first = keys.begin("jobs", "k1", "fp")
    store.put(first.key, b"nonsense")
    assert isinstance(keys.begin("jobs", "k1", "fp"), Claim)


def test_an_unreadable_asset_record_fails_alone(store):
    assets = AssetService(store, lambda user: ME, lambda execution_id: None)
    asset_id = "0" * 8 + "-0000-0000-0000-" + "0" * 12
    store.put(f"assets/records/{asset_id}.json", b'{"sha256": "../../x"}')
    with pytest.raises(AssetCorrupt) as err:
        assets.get(asset_id)
    assert err.value.code == "asset_corrupt" and asset_id in err.value.message
