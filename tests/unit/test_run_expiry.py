"""Runs of a ComfyUI that never comes back are expired by a designer's maintenance (core/run_expiry.py,
ExecutionService.expire_abandoned), on records in the store and a fake clock: only past their endpoint's run time
limit (local 1 h, real-time 60 s, async 7 h, an unreadable version the longest) and only when their follower's
lease (its ComfyUI's heartbeat) is gone or expired; the record says why; a follower that comes back in time, or a
sweep that took the run over, wins; an artist's ComfyUI expires nothing. That a designer's maintenance runs it is
test_extension.py's."""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone

import pytest
from comfyui_sagemaker.core import followers, run_expiry
from comfyui_sagemaker.core.environments import manifest_key
from comfyui_sagemaker.core.execution_records import ExecutionRecords
from comfyui_sagemaker.core.executions import new_id
from comfyui_sagemaker.local.folder_store import FolderStore
from harness.fake_comfy import FakeComfy, publish
from harness.fake_endpoints import FakeEndpoints

T0 = 1_800_000_000.0
GONE = "0a1b2c3d4e5f"  # the instance id of the ComfyUI that never comes back


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def store(tmp_path):
    store = FolderStore(tmp_path / "store")
    publish(store, "Env1")  # local
    for version, endpoint in ((2, {"kind": "sagemaker", "instance_type": "ml.g5.xlarge", "initial_count": 1,
                                   "mode": "realtime", "autoscaling": None}),
                              (3, {"kind": "sagemaker", "instance_type": "ml.g5.xlarge", "initial_count": 1,
                                   "mode": "async", "autoscaling": {"min": 0, "max": 1}})):
        manifest = publish(store, "Env1", version=version)
        store.put(manifest_key("Env1", version), json.dumps({**manifest, "endpoint": endpoint}).encode())
    return store


@pytest.fixture
def designer(store, tmp_path):
    comfy = FakeComfy(tmp_path / "designer", store, FakeEndpoints(store), role="designer", name="dee")
    yield comfy
    comfy.close()


def left(store, version: int | None = 1, state: str = "running", follower: str | None = f"{GONE}-0123456789ab",
         began: float = T0, lease_until: float | None = None) -> str:
    """A run the ComfyUI GONE left in flight (its follower's lease expiring at `lease_until`, or gone)."""
    execution_id = new_id(GONE)
    record = {"id": execution_id, "prompt_id": "p" * 32, "template": None, "template_version": None,
              "follower": follower, "environment": "Env1", "environment_version": version, "endpoint": "Env1",
              "owner": {"instance": GONE, "name": "ana", "user": None}, "client_id": None, "state": state,
              "created_at": iso(began), "started_at": iso(began) if state == "running" else None,
              "finished_at": None, "inputs": {}, "outputs": {}, "error": None, "workflow_saved": False}
    if follower is None:
        del record["follower"]
    ExecutionRecords(store).create(record)
    if follower and lease_until is not None:
        store.put(followers.lease_key(follower), json.dumps({"expires_at": lease_until}).encode())
    return execution_id


def state(store, execution_id: str) -> dict:
    return ExecutionRecords(store).read(execution_id)[0]


@pytest.mark.parametrize("version, limit", [(1, 3600), (2, 60), (3, 7 * 3600), (9, 7 * 3600)])
def test_a_run_left_in_flight_expires_after_its_endpoints_limit_with_the_reason(store, designer, version, limit):
    execution_id = left(store, version)
    clock = Clock()
    clock.now = T0 + limit - 1
    assert designer.executions.expire_abandoned(clock) == 0 and state(store, execution_id)["state"] == "running"
    clock.now = T0 + limit + 1
    assert designer.executions.expire_abandoned(clock) == 1
    record = state(store, execution_id)
    assert record["state"] == "failed" and record["finished_at"]
    assert record["error"] == {"code": "expired", "message": f"expired: ComfyUI {GONE} did not come back within "
                                                             f"{run_expiry.duration(limit)}"}
    assert ExecutionRecords(store).inflight() == []  # its markers went with it
    assert designer.executions.expire_abandoned(clock) == 0


def test_the_limits_read_as_a_person_reads_them():
    assert [run_expiry.duration(s) for s in (60, 3600, 7 * 3600, 5400)] == ["60 s", "1 h", "7 h", "90 min"]


def test_a_run_whose_follower_still_beats_is_never_expired(store, designer):
    execution_id = left(store, lease_until=T0 + 10 * 3600)
    clock = Clock()
    clock.now = T0 + 2 * 3600
    assert designer.executions.expire_abandoned(clock) == 0 and state(store, execution_id)["state"] == "running"
    clock.now = T0 + 10 * 3600 + 1  # its heartbeat stopped since
    assert designer.executions.expire_abandoned(clock) == 1


@pytest.mark.parametrize("follower, run_state", [(None, "running"), (f"{GONE}-0123456789ab", "queued")])
def test_a_queued_run_or_one_naming_no_follower_counts_too(store, designer, follower, run_state):
    execution_id = left(store, follower=follower, state=run_state)
    clock = Clock()
    clock.now = T0 + 3601
    assert designer.executions.expire_abandoned(clock) == 1
    assert state(store, execution_id)["error"]["code"] == "expired"


def test_a_run_taken_over_meanwhile_is_left_to_its_new_follower(store, designer, monkeypatch):
    execution_id = left(store)
    records = designer.executions.records
    real_swap = records.swap

    def swap(eid, change, attempts=5):  # a sweep takes it over between the look and the write
        got = records.read(eid)
        records.replace({**got[0], "follower": "ffffffffffff-0123456789ab"}, got[1])
        return real_swap(eid, change, attempts)

    monkeypatch.setattr(records, "swap", swap)
    clock = Clock()
    clock.now = T0 + 3601
    assert designer.executions.expire_abandoned(clock) == 0 and state(store, execution_id)["state"] == "running"


def test_an_artists_comfyui_expires_nothing(store, tmp_path, designer):
    execution_id = left(store, began=time.time() - 10 * 24 * 3600)  # long ago, by the wall clock
    artist = FakeComfy(tmp_path / "ana2", store, FakeEndpoints(store), role="artist", name="ana2")
    try:
        assert artist.services.expire_runs() == 0 and state(store, execution_id)["state"] == "running"
    finally:
        artist.close()
    assert designer.services.expire_runs() == 1 and state(store, execution_id)["state"] == "failed"

