"""Runs never stay `running` for good (issue 25, point 8): a process that follows runs (a ComfyUI, a gateway
replica) holds a lease in the store, renewed while it lives; when it is killed outright, another process on
the store (or the same one started again) takes its runs over where the endpoint can still answer for them,
and fails the others with the reason, once the lease has expired. The sweep that finds them costs a listing
of the runs in flight, never the records. First on the service every face calls (processes simulated: the
killed one stops renewing), then with real gateway processes and a SIGKILL."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
import requests
from comfyui_sagemaker.core.execution_records import INFLIGHT, ExecutionRecords
from comfyui_sagemaker.core.executions import ExecutionService, new_id
from comfyui_sagemaker.core.followers import lease_key
from comfyui_sagemaker.core.identity import Owner
from comfyui_sagemaker.core.leases import expired
from comfyui_sagemaker.gateway.host import HeadlessHost
from comfyui_sagemaker.local.folder_store import FolderStore
from harness.gateway import Gateway
from harness.waiting import wait_for

ARTIST = Owner("aaaaaaaaaaaa", "artist box")
DESIGNER = Owner("dddddddddddd", "designer box")
OTHER_ARTIST = Owner("cccccccccccc", "another artist")
PROMPT = {"1": {"class_type": "EmptyImage", "inputs": {"width": 2, "height": 2, "batch_size": 1, "color": 1}},
          "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "f"}}}


class Endpoint:
    """An endpoint whose invocation is held until the test ends (the killed process never hears back); a
    resumable one says so as SageMaker's async endpoints do, and answers a process that takes the run over."""

    kind = "fake"

    def __init__(self, resumable: bool = False):
        self.resumable = resumable
        self.started, self.release = threading.Event(), threading.Event()
        self.cancelled: list[str] = []
        self.resumed: list[tuple[str, dict]] = []

    def check_ready(self, name):
        return {"name": name, "state": "InService"}

    def invoke(self, name, body, on_event):
        if self.resumable:
            on_event({"type": "sagemaker.resumable", "data": {"resume": {"output": "s3://b/out/x.out"}}})
        self.started.set()
        self.release.wait(300)
        return {"status": "failed", "outputs": {}, "error": {"code": "worker_error", "message": "too late"}}

    def resume(self, name, execution_id, resume, on_event):
        self.resumed.append((execution_id, resume))
        return {"status": "succeeded", "outputs": {}}

    def cancel(self, name, execution_id, token):
        self.cancelled.append(execution_id)


class Environments:
    def get(self, name, version=None):
        return {"name": "E1", "version": 1, "custom_nodes": [], "models": [], "core_node_types": None}


def service(store, owner: Owner, endpoint, role="designer", ttl=1.0) -> ExecutionService:
    return ExecutionService(store, None, Environments(), endpoint, HeadlessHost(Path(".")), None,
                            lambda *a: None, owner=owner, role=role, follow_ttl=ttl)


def killed(svc: ExecutionService) -> None:
    """The process dies: nothing renews its lease any more (its threads, held by the endpoint, never write)."""
    svc.follower._lease.stop.set()
    svc.sweeper.stop()


@pytest.fixture
def store(tmp_path):
    return FolderStore(tmp_path / "store")


def started(svc: ExecutionService, endpoint: Endpoint, user: str | None = None) -> dict:
    record = svc.create(PROMPT, environment="E1", user=user)
    assert endpoint.started.wait(120)
    return record


@pytest.mark.slow  # waits out a follower's lease: the whole suite runs it, the fast tier does not
def test_a_run_whose_follower_was_killed_is_failed_once_its_lease_expires(store):
    endpoint = Endpoint()
    # A lease of 3 s: "alive" below must not depend on a renewal arriving within a second on a busy machine.
    artist = service(store, ARTIST, endpoint, role="artist", ttl=3.0)
    try:
        run = started(artist, endpoint)
        records = ExecutionRecords(store)
        follower = records.read(run["id"])[0]["follower"]
        designer = service(store, DESIGNER, Endpoint())
        other = service(store, OTHER_ARTIST, Endpoint(), role="artist")
        assert designer.sweeper.sweep() == 0  # alive: its lease is renewed
        killed(artist)
        wait_for(lambda: expired(json.loads(store.get(lease_key(follower)).data)), 120,
                 "the killed follower's lease to expire")
        # Someone else's run: an artist's ComfyUI leaves it (its record is not theirs to rewrite) ...
        assert other.sweeper.sweep() == 0 and records.read(run["id"])[0]["state"] == "running"
        # ... a designer's fails it, with the reason, and clears what the dead follower left.
        assert wait_for(lambda: designer.sweeper.sweep(), 120, "the designer's sweep to fail it") == 1
        record = records.read(run["id"])[0]
        assert record["state"] == "failed" and record["error"]["code"] == "interrupted"
        assert record["error"]["message"] == "the process following this run (artist box) stopped before it ended: " \
            "the result was lost with the connection"
        # Its cancel token died with its follower: the endpoint is not asked to stop it (it runs to its end there).
        assert designer.endpoints.cancelled == []
        assert records.inflight() == [] and not store.exists(lease_key(follower))
        assert [k for k in store.list(INFLIGHT)] == []
    finally:
        endpoint.release.set()
        artist.pool.shutdown(wait=True)
    assert records.read(run["id"])[0]["state"] == "failed"  # the killed process's late answer changes nothing


@pytest.mark.slow  # waits out a follower's lease: the whole suite runs it, the fast tier does not
def test_a_run_the_endpoint_can_still_answer_for_is_taken_over_and_completes(store):
    endpoint = Endpoint(resumable=True)
    gateway = Owner("9999aaaa9999", "gateway")
    first = service(store, gateway, endpoint, role="artist")  # a replica; the other replica is the same owner
    try:
        run = started(first, endpoint)
        # The endpoint said it can answer for the run; the record says so once the run has lived a second.
        wait_for(lambda: ExecutionRecords(store).read(run["id"])[0].get("resume"), 120, "the record's resume")
        killed(first)
        second_endpoint = Endpoint()
        second = service(store, gateway, second_endpoint, role="artist")
        assert wait_for(lambda: second.sweeper.sweep(), 120, "the other replica to take it over") == 1
        done = wait_for(lambda: (r := second.get(run["id"]))["state"] in ("succeeded", "failed") and r, 120,
                        "the run taken over to end")
        assert done["state"] == "succeeded", done
        assert second_endpoint.resumed == [(run["id"], {"output": "s3://b/out/x.out"})]
        assert done["follower"] == second.follower.id and "followed again" in done["note"]
        wait_for(lambda: not store.list(INFLIGHT), 120, "the in-flight folder to be empty")
    finally:
        endpoint.release.set()
        first.pool.shutdown(wait=True)
    assert ExecutionRecords(store).read(run["id"])[0]["state"] == "succeeded"


def test_a_restarted_comfyui_fails_the_runs_its_previous_life_followed_at_once(store):
    endpoint = Endpoint()
    before = service(store, ARTIST, endpoint, role="artist", ttl=3600)
    try:
        run = started(before, endpoint)
        endpoint.started.clear()
        users = started(before, endpoint, user="alice")  # --multi-user: a user's run is this ComfyUI's too
        killed(before)
        after = service(store, ARTIST, Endpoint(), role="artist", ttl=3600)
        assert after.fail_interrupted() == 2  # no waiting for the lease: its previous life is gone
        for r in (run, users):
            record = ExecutionRecords(store).read(r["id"])[0]
            assert record["state"] == "failed" and "restarted" in record["error"]["message"]
    finally:
        endpoint.release.set()
        before.pool.shutdown(wait=True)


class Counting(FolderStore):
    def __init__(self, root):
        super().__init__(root)
        self.calls: list[str] = []

    def __getattribute__(self, name):
        if name in ("get", "list", "list_page", "list_stamps", "get_if_changed", "put", "create", "replace",
                    "delete"):
            object.__getattribute__(self, "calls").append(name)
        return object.__getattribute__(self, name)


def test_the_sweep_costs_a_listing_of_the_runs_in_flight_not_the_records(tmp_path):
    store = Counting(tmp_path / "store")
    records = ExecutionRecords(store)
    for _ in range(300):  # a store with history: ended runs are not looked at
        r = {"id": new_id(DESIGNER.instance), "owner": DESIGNER.to_json(), "template": None, "state": "succeeded"}
        records.create(r)
        records.ended(r)
    designer = service(store, DESIGNER, Endpoint())
    store.calls.clear()
    assert designer.sweeper.sweep() == 0
    assert store.calls == ["list_stamps"]  # idle: one listing (one LIST on S3), nothing read
    endpoint = Endpoint()
    artist = service(store, ARTIST, endpoint, role="artist", ttl=3600)
    try:
        started(artist, endpoint)
        store.calls.clear()
        designer.sweeper.sweep()
        designer.sweeper.sweep()
        # A live follower's lease is read once, then again only when its listing stamp changes (a renewal).
        assert store.calls == ["list_stamps", "get", "list_stamps"]
    finally:
        endpoint.release.set()
        artist.pool.shutdown(wait=True)


def test_an_async_sagemaker_run_says_where_its_result_lands_and_another_process_reads_it(aws_env, tmp_path):
    """What makes a SageMaker async run resumable: the invocation tells its follower where the result lands
    (the record keeps it), and a process that takes it over reads the result from there."""
    import io

    import boto3
    from botocore.response import StreamingBody
    from botocore.stub import Stubber
    from comfyui_sagemaker.aws import runtime

    store = FolderStore(tmp_path / "store")
    sm_runtime = boto3.client("sagemaker-runtime", region_name="us-east-1")
    s3 = boto3.client("s3", region_name="us-east-1")
    events: list[dict] = []

    class Killed(Exception):
        pass

    def on_event(event):
        events.append(event)
        raise Killed  # the invoking process dies right after SageMaker accepted the request

    with Stubber(sm_runtime) as rt:
        rt.add_response("invoke_endpoint_async", {"InferenceId": "x", "OutputLocation": "s3://bkt/out/x.out",
                                                  "FailureLocation": "s3://bkt/fail/x.out"})
        with pytest.raises(Killed):
            runtime.invoke_async(sm_runtime, s3, store, "s3://bkt/pre", "ep", {"execution_id": "x", "prompt": {}},
                                 on_event, timeout=600)
    (resumable,) = events
    assert resumable["type"] == "sagemaker.resumable"
    resume = resumable["data"]["resume"]
    assert resume["output"] == "s3://bkt/out/x.out" and resume["failure"] == "s3://bkt/fail/x.out"
    with Stubber(s3) as s3_stub:
        s3_stub.add_response("get_object", {"Body": StreamingBody(io.BytesIO(b'{"status": "succeeded"}'), 23)},
                             {"Bucket": "bkt", "Key": "out/x.out"})
        assert runtime.follow_async(s3, store, "ep", "x", json.loads(json.dumps(resume)), lambda e: None) == {
            "status": "succeeded"}


# The gateway as deployed: a replica SIGKILLed while it follows a v2 job on a local endpoint; another replica
# (started after it died, as a restart would be) fails the job once the lease expires.

def held(signal: str) -> dict:
    return {"1": {"class_type": "EmptyImage", "inputs": {"width": 2, "height": 2, "batch_size": 1, "color": 7}},
            "2": {"class_type": "SMTestWait", "inputs": {"image": ["1", 0], "signal": signal, "timeout": 600}},
            "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "followers"}}}


@pytest.fixture(scope="module")
def environment(local_environment):
    """The session's shared environment on a local endpoint (tests/conftest.py): it carries the test pack."""
    return local_environment.name


@pytest.mark.comfyui
def test_a_v2_job_of_a_sigkilled_gateway_is_finished_by_another_replica(comfyui, environment, tmp_path):
    """Once the local endpoint has said it can answer for the run (the record's `resume`), the replica that takes
    the run over follows it to its end: nothing done is thrown away. (Killed before that, the run is failed with
    the reason: the tests above, on the service every face calls; with a real gateway that moment is a race.)"""
    signal = tmp_path / "release"
    config = comfyui.user_dir / "__sagemaker"
    store = FolderStore(config / "store")
    first = Gateway(tmp_path, config_dir=config, args=["--run-lease-seconds", "3"]).start()
    second = None
    try:
        r = first.post(f"/sagemaker/v2/{environment}/api/v2/jobs", json={"workflow": held(str(signal))})
        assert r.status_code == 201, r.text
        job = r.json()["id"]
        wait_for(lambda: (got := ExecutionRecords(store).read(job)) is not None and got[0].get("resume"), 120,
                 "the endpoint saying it can answer for the run")
        killed = ExecutionRecords(store).read(job)[0]["follower"]
        first.proc.kill()  # SIGKILL: no drain, nothing written on the way out
        first.proc.wait(60)
        second = Gateway(tmp_path, config_dir=config, args=["--run-lease-seconds", "3"]).start()
        wait_for(lambda: ExecutionRecords(store).read(job)[0].get("follower") not in (killed, None), 180,
                 "another replica to take the killed replica's run over")
        signal.write_text("go")
        url = f"/sagemaker/v2/{environment}/api/v2/jobs/{job}"
        ended = wait_for(lambda: (j := second.get(url).json())["status"] not in ("queued", "running") and j, 180,
                         "the run to end, followed by the other replica")
        assert ended["status"] == "succeeded", ended
        record = comfyui.client().get(f"/sagemaker/executions/{job}").json()
        assert record["state"] == "succeeded", record
        assert requests.get(second.url + "/health", timeout=30).ok
    finally:
        signal.write_text("go")
        first.stop()
        if second is not None:
            second.stop()
