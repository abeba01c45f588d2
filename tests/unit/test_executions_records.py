"""Execution records on a shared store (folder and S3 on moto): owners, compare-and-swap, a restart that
fails only its own runs, lists that cost a page, retention. The service runs without an endpoint here:
records are made with the record layer the service uses."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
from comfyui_sagemaker.core.execution_records import INDEX, INFLIGHT, ExecutionRecords, inverted
from comfyui_sagemaker.core.executions import ExecutionService, new_id
from comfyui_sagemaker.core.identity import Owner

ME = Owner("aaaaaaaaaaaa", "designer box")
ARTIST = Owner("bbbbbbbbbbbb", "artist box")


def record(owner: Owner | None, state: str, template: str | None = "Portrait", execution_id: str | None = None):
    return {"id": execution_id or new_id(), "prompt_id": "p", "template": template, "environment": "E1",
            "endpoint": "E1", "owner": owner.to_json() if owner else None, "client_id": None, "state": state,
            "created_at": "x", "outputs": {}, "error": None}


class Host:
    """Where this ComfyUI keeps output copies."""

    def __init__(self, root):
        self.root = root

    def output_dir(self):
        return self.root


def service(store, owner=ME, host=None) -> ExecutionService:
    return ExecutionService(store, None, None, None, host, None, lambda *a: None, owner=owner)


def test_a_restart_fails_only_its_own_runs_by_compare_and_swap(store):
    records = ExecutionRecords(store)
    mine = [record(ME, "running"), record(ME, "queued")]
    theirs = record(ARTIST, "running")
    for r in [*mine, theirs]:
        records.create(r)
    legacy = {"id": new_id(), "state": "running"}  # an older version's record: no owner, never rewritten
    store.put(f"executions/{legacy['id']}.json", json.dumps(legacy).encode())
    assert service(store).fail_interrupted() == 2
    for r in mine:
        stored = records.read(r["id"])[0]
        assert stored["state"] == "failed" and "restarted" in stored["error"]["message"]
    assert records.read(theirs["id"])[0]["state"] == "running"
    assert records.read(legacy["id"])[0] == legacy
    assert records.inflight(ME.key) == [] and records.inflight(ARTIST.key) == [theirs["id"]]


def test_a_run_that_ends_between_the_scans_read_and_write_keeps_its_end(store):
    records = ExecutionRecords(store)
    r = record(ME, "running")
    etag = records.create(r)
    svc = service(store)
    original = records.swap

    def racing_swap(execution_id, change, attempts=5):  # the run ends after the scan read it
        records.replace({**r, "state": "succeeded"}, etag)
        records.swap = original
        return original(execution_id, change, attempts)

    records.swap = racing_swap
    svc.records = records
    assert svc.fail_interrupted() == 0
    assert records.read(r["id"])[0]["state"] == "succeeded"


def test_lists_are_newest_first_per_owner_paged_and_filtered(store):
    records = ExecutionRecords(store)
    base = datetime(2026, 11, 1, tzinfo=timezone.utc)
    made = []
    for i in range(25):
        t = (base + timedelta(seconds=i)).strftime("%Y%m%dT%H%M%S%f")
        owner = ME if i % 2 == 0 else ARTIST
        r = record(owner, "succeeded", "Portrait" if i % 3 else "Other", f"{t}-{i:08x}")
        records.create(r)
        records.ended(r)
        made.append(r)
    svc = service(store)
    page, cursor = svc.list("me", limit=5)
    mine = [r["id"] for r in reversed(made) if r["owner"]["instance"] == ME.instance]
    assert [p["id"] for p in page] == mine[:5] and all(p["mine"] for p in page)
    page2, _ = svc.list("me", limit=5, after=cursor)
    assert [p["id"] for p in page2] == mine[5:10]
    everyone, _ = svc.list("all", limit=25)
    assert [p["id"] for p in everyone] == [r["id"] for r in reversed(made)]
    others, _ = svc.list("all", template="Other", limit=25)
    assert [p["id"] for p in others] == [r["id"] for r in reversed(made) if r["template"] == "Other"]
    theirs, _ = svc.list(ARTIST.key, state="succeeded", limit=3)
    artists = [r["id"] for r in reversed(made) if r["owner"]["instance"] == ARTIST.instance]
    assert [p["id"] for p in theirs] == artists[:3]
    assert not any(p["mine"] for p in theirs)


def test_a_designer_cancels_someone_elses_run_and_an_artist_cannot(store):
    from comfyui_sagemaker.core.errors import Conflict, Forbidden

    records = ExecutionRecords(store)
    r = record(ME, "running")
    records.create(r)
    with pytest.raises(Forbidden, match="only a designer"):
        service(store, ARTIST).cancel(r["id"], role="artist")
    assert records.read(r["id"])[0]["state"] == "running"
    done = service(store, ARTIST).cancel(r["id"], role="designer")
    assert done["state"] == "cancelled" and "artist box" in records.read(r["id"])[0]["error"]["message"]
    assert records.inflight(ME.key) == []
    with pytest.raises(Conflict, match="cancelled"):
        service(store, ARTIST).cancel(r["id"], role="designer")  # never silent


def test_retention_removes_old_records_their_markers_and_their_output_blobs(store, tmp_path):
    records = ExecutionRecords(store)
    old_time = (datetime.now(timezone.utc) - timedelta(days=40)).strftime("%Y%m%dT%H%M%S%f")
    old = record(ME, "succeeded", execution_id=f"{old_time}-0000000a")
    kept_blob, shared_blob = "a" * 64, "b" * 64
    old["outputs"] = {"3": {"images": [{"filename": "x.png", "sha256": kept_blob},
                                       {"filename": "y.png", "sha256": shared_blob}]}}
    fresh = record(ME, "succeeded")
    for r in (old, fresh):
        records.create(r)
        records.ended(r)
    store.put(f"blobs/sha256/{kept_blob}", b"x")
    store.put(f"blobs/sha256/{shared_blob}", b"y")
    copies = tmp_path / "output" / "sagemaker" / old["id"]
    copies.mkdir(parents=True)
    (copies / "x.png").write_bytes(b"x")
    assert service(store, host=Host(tmp_path / "output")).apply_retention(30, lambda: {shared_blob}) == 1
    assert not copies.exists()
    assert records.read(old["id"]) is None and records.read(fresh["id"]) is not None
    assert not store.exists(f"blobs/sha256/{kept_blob}") and store.exists(f"blobs/sha256/{shared_blob}")
    assert not [k for k in store.list(INDEX) if old["id"] in k]
    assert not [k for k in store.list(INFLIGHT) if old["id"] in k]


def test_markers_sort_newest_first():
    a, b = "20261101T000000000000-00000001", "20261101T000000000001-00000002"
    assert inverted(b) < inverted(a)


def test_ids_sort_by_time():
    first, second = new_id(), new_id()
    assert first < second


class CountingLists:
    """The store, counting the LISTs (list_page calls) made through it and the keys they returned."""

    def __init__(self, store):
        self.store, self.lists, self.keys = store, 0, 0

    def __getattr__(self, name):
        return getattr(self.store, name)

    def list_page(self, *args, **kwargs):
        self.lists += 1
        page = self.store.list_page(*args, **kwargs)
        self.keys += len(page)
        return page


def test_one_owners_runs_in_one_state_are_one_list_however_many_others_have(store):
    """`state=succeeded&owner=me`: the owner's own state folder, not the state folder scanned for the owner's
    markers (9 LISTs for 10 of one's own among 10,000 on S3): the keys listed are the page's, not everyone's. A
    store whose runs ended before these markers lists them by the scan until a designer's maintenance indexes
    them once."""
    records = ExecutionRecords(store)
    base = datetime(2026, 11, 1, tzinfo=timezone.utc)
    made = []
    for i in range(60):
        t = (base + timedelta(seconds=i)).strftime("%Y%m%dT%H%M%S%f")
        r = record(ME if i < 3 else ARTIST, "succeeded", execution_id=f"{t}-{i:08x}")
        made.append(r)
    for r in made:
        store.put(f"{INDEX}state/succeeded/" + _name(r), b"")  # as a version before the owner-state markers
        store.create(records.key(r["id"]), json.dumps(r).encode())
    mine = [r["id"] for r in reversed(made[:3])]
    counting = CountingLists(store)
    svc = service(counting)
    assert [p["id"] for p in svc.list("me", state="succeeded", limit=10)[0]] == mine
    assert counting.keys == 60  # the scan of everyone's markers
    assert ExecutionRecords(store).index_by_owner() == 60
    assert ExecutionRecords(store).index_by_owner() == 0  # once per store
    counting, late = CountingLists(store), record(ME, "succeeded")
    records.create(late)
    records.ended(late)  # a run that ends now is in its owner's folder at once
    svc = service(counting)
    assert [p["id"] for p in svc.list("me", state="succeeded", limit=10)[0]] == [late["id"], *mine]
    assert counting.lists == 1 and counting.keys == 4


def _name(r):
    from comfyui_sagemaker.core.execution_records import marker_name

    return marker_name(r["id"], Owner.from_json(r["owner"]), r.get("template"))
