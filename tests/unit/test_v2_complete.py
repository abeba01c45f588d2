"""The Comfy API v2 routes and refusals that comfy-sdk calls beyond submitting and following a job: the
workflow a job ran (GET /jobs/{id}/workflow), deleting an asset (DELETE /assets/{id}: 204, 404 on the
second, 409 asset_in_use), the job list's status filter, and an Idempotency-Key still in flight (a reuse,
422, as the protocol lists no 409). In-process on FakeEndpoints, driven by the SDK's own client and models
where a client would be (tests/unit/test_jobs_v2.py holds the rest of the surface)."""

from __future__ import annotations

import hashlib
import uuid

import httpx
import pytest
from comfyui_sagemaker.core.identity import Owner
from comfyui_sagemaker.core.store import blob_key
from comfyui_sagemaker.core.v2.assets import AssetNotFound, AssetService
from comfyui_sagemaker.local.folder_store import FolderStore
from harness.fake_endpoints import FakeEndpoints
from harness.images import png
from harness.prompts import scale_prompt
from harness.v2_rig import V2Rig, error, held, sdk_on

ENV = "V2Done"


@pytest.fixture
def v2(tmp_path):
    with V2Rig(tmp_path, ENV) as v:  # closed also when the test fails
        yield v


@pytest.fixture
def sdk(v2, monkeypatch):
    yield from sdk_on(v2.base, monkeypatch)


# GET /jobs/{id}/workflow

def test_the_sdk_reads_back_the_graph_a_job_ran(sdk, v2):
    from comfy_low import ComfyLow
    from comfy_low.errors import NotFound
    from comfy_low.models import JobWorkflowResponse

    image = png(5, 3, (10, 200, 30))
    asset = sdk.assets.from_bytes(image, filename="in.png", content_type="image/png")
    workflow = sdk.workflows.from_json(scale_prompt("placeholder.png", factor=0.3, prefix="wf"))
    workflow.set_input("1", "image", asset)
    job = sdk.submit(workflow).result()
    got = job.get_workflow()
    # The executed graph: what the endpoint ran, the asset reference become the input file it was sent as.
    assert got.format == "api" and got.graph == v2.fake.invocations[-1]["prompt"]
    assert got.graph["1"]["inputs"]["image"] in v2.fake.invocations[-1]["inputs"]
    # Unknown, of another environment, or a run not queued through the v2 API: 404 in the protocol's envelope.
    with ComfyLow(v2.base, None) as low:  # the generated model validates the answer as the spec writes it
        assert isinstance(low.get_job_workflow(job.id), JobWorkflowResponse)
        with pytest.raises(NotFound):
            low.get_job_workflow("20250101T000000000000-00000000")
    other = f"{v2.comfy.url}/sagemaker/v2/Elsewhere/api/v2/jobs/{job.id}/workflow"
    error(httpx.get(other), 404, "not_found")
    sidebar = v2.comfy.post("/sagemaker/executions", json={"prompt": scale_prompt("v2-seed.png"), "environment": ENV})
    assert sidebar.status_code == 202, sidebar.text
    v2.comfy.wait(sidebar.json()["execution_id"])
    assert "no workflow" in error(httpx.get(f"{v2.jobs}/{sidebar.json()['execution_id']}/workflow"), 404,
                                  "not_found")["message"]


def test_a_workflow_whose_blob_was_rewritten_is_not_served(sdk, v2):
    job = sdk.run(sdk.workflows.from_json(scale_prompt("v2-seed.png", prefix="rw")), timeout=120)
    stored = v2.comfy.services.executions.get(job.id, localise=False)["v2"]["prompt"]
    assert v2.store.exists(blob_key(stored))
    v2.store.put(blob_key(stored), b'{"1": {"class_type": "Other", "inputs": {}}}')  # someone rewrote the blob
    error(httpx.get(f"{v2.jobs}/{job.id}/workflow"), 404, "not_found")


# DELETE /assets/{id}

def test_an_asset_is_deleted_once_and_refused_while_a_job_reads_it(sdk, v2):
    from comfy_sdk.exceptions import ComfyError, NotFound

    image = png(4, 6, (90, 90, 250))
    asset = sdk.assets.from_bytes(image, filename="keep.png", content_type="image/png")
    workflow = sdk.workflows.from_json(held("inuse"))
    workflow.set_input("1", "image", asset)
    job = sdk.submit(workflow)
    run = v2.fake.run(job.id).wait_started()
    with pytest.raises(ComfyError) as refused:
        sdk.assets.delete(asset.id)
    assert refused.value.code == "asset_in_use" and refused.value.http_status == 409
    assert job.id in str(refused.value)
    run.release()
    job.wait(timeout=120)
    assert sdk.assets.delete(asset.id) is None  # 204
    with pytest.raises(NotFound):
        sdk.assets.delete(asset.id)  # the second: 404
    error(httpx.get(f"{v2.assets}/{asset.id}"), 404, "not_found")
    # The bytes stay: the job's record still names them (retention by reachability removes them later).
    assert v2.store.exists(blob_key(hashlib.sha256(image).hexdigest()))
    # An output is kept as long as its job: refused, and still served.
    (output,) = job.refresh().outputs
    error(httpx.delete(f"{v2.assets}/{output.id}"), 409, "asset_in_use")
    assert httpx.get(f"{v2.assets}/{output.id}").status_code == 200
    error(httpx.delete(f"{v2.assets}/{uuid.uuid4()}"), 404, "not_found")


def test_an_asset_is_deleted_only_by_its_owner(tmp_path):
    store = FolderStore(tmp_path / "store")
    owners = {None: Owner("aaaaaaaaaaaa", "me"), "bob": Owner("aaaaaaaaaaaa", "me", "bob")}
    assets = AssetService(store, lambda user: owners[user], lambda execution_id: None)
    data = b"bytes of mine"
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    asset, _ = assets.ingest(str(path), hashlib.sha256(data).hexdigest(), "c" * 64, len(data), None, "f.bin")
    with pytest.raises(AssetNotFound):  # another user of the same ComfyUI: as if it never was
        assets.delete(asset.id, "bob", lambda sha256: None)
    assets.delete(asset.id, None, lambda sha256: None)
    with pytest.raises(AssetNotFound):
        assets.get(asset.id)


def test_an_artist_cannot_delete_assets():
    from comfyui_sagemaker.server_routes import policy
    from comfyui_sagemaker.server_routes.policy import ForbiddenForRole

    with pytest.raises(ForbiddenForRole):
        policy.check("artist", "DELETE", "/v2/{environment}/api/v2/assets/{id}")


# GET /jobs?status=

def test_the_job_list_filters_by_status(sdk, v2):
    done = sdk.run(sdk.workflows.from_json(scale_prompt("v2-seed.png", prefix="done")), timeout=120)
    running = sdk.submit(sdk.workflows.from_json(held("running")))
    run = v2.fake.run(running.id).wait_started()
    try:
        def listed(status: str) -> list[str]:
            r = httpx.get(v2.jobs, params={"status": status})
            assert r.status_code == 200, r.text
            assert all(j["status"] == status for j in r.json()["jobs"])
            return [j["id"] for j in r.json()["jobs"]]

        assert listed("succeeded") == [done.id]
        assert listed("running") == [running.id]
        assert listed("canceled") == [] and listed("expired") == [] and listed("queued") == []
        assert [j["id"] for j in httpx.get(v2.jobs).json()["jobs"]] == [running.id, done.id]  # no filter: all
        assert "queued" in error(httpx.get(v2.jobs, params={"status": "done"}), 400, "invalid_status_filter")["message"]
    finally:
        run.release()
        running.wait(timeout=120)


# Idempotency-Key

def test_a_key_still_in_flight_is_a_reuse_not_a_conflict(v2):
    from comfyui_sagemaker.core.v2.idempotency import fingerprint

    services = v2.comfy.services
    key, body = str(uuid.uuid4()), {"workflow": scale_prompt("v2-seed.png")}
    scope = f"jobs.{ENV.lower()}.{services.executions.owner_for(None).key}"
    services.idempotency.begin(scope, key, fingerprint(body))  # the same request, its first still being handled
    r = httpx.post(v2.jobs, json=body, headers={"Idempotency-Key": key})
    error(r, 422, "idempotency_key_reuse")
    assert "Retry-After" not in r.headers and v2.fake.invocations == []


# errors

def test_the_store_or_aws_failing_is_upstream_error_naming_nothing_inside(sdk, v2, monkeypatch, caplog):
    from comfy_sdk.exceptions import ComfyError
    from comfyui_sagemaker.aws.errors import AwsError
    from comfyui_sagemaker.core.errors import StoreUnavailable

    job = sdk.run(sdk.workflows.from_json(scale_prompt("v2-seed.png", prefix="up")), timeout=120)
    services = v2.comfy.services

    def store_down(*args, **kwargs):
        raise StoreUnavailable("bucket studio-secret-bucket refused GetObject: AccessDenied")

    def aws_down(*args, **kwargs):
        raise AwsError("sagemaker-runtime.eu-west-1.amazonaws.com: ThrottlingException")

    monkeypatch.setattr(services.jobs_v2, "get", store_down)
    monkeypatch.setattr(services.assets, "get", aws_down)
    with pytest.raises(ComfyError) as failed:
        sdk.jobs.get(job.id)
    assert failed.value.code == "upstream_error" and failed.value.http_status == 500
    for r in (httpx.get(f"{v2.jobs}/{job.id}"), httpx.get(f"{v2.assets}/{uuid.uuid4()}")):
        message = error(r, 500, "upstream_error")["message"]
        assert "secret" not in r.text and "amazonaws" not in r.text and "retry" in message
    assert "studio-secret-bucket" in caplog.text  # the operator finds what failed in the log
    # The extension's own routes keep their codes and words.
    monkeypatch.setattr(services.executions, "get", store_down)
    assert v2.comfy.get(f"/sagemaker/executions/{job.id}").json()["error"]["code"] == "store_unavailable"


def test_the_openapi_document_says_where_the_v2_routes_extend_the_protocol():
    from comfyui_sagemaker.server_routes import ROUTE_TABLES, openapi

    paths = openapi.document(ROUTE_TABLES)["paths"]
    v2 = "/sagemaker/v2/{environment}/api/v2"
    said = {(method, path) for path, ops in paths.items() if path.startswith(v2) for method, op in ops.items()
            if "x-comfyui-sagemaker-extension" in op}
    assert said == {("post", v2 + "/jobs"), ("get", v2 + "/jobs"), ("get", v2 + "/jobs/{id}"),
                    ("post", v2 + "/jobs/{id}/cancel")}
    assert "status" in paths[v2 + "/jobs"]["get"]["x-comfyui-sagemaker-extension"]
    assert "template" in paths[v2 + "/jobs"]["post"]["x-comfyui-sagemaker-extension"]
    assert {"workflow", "format"} <= set(
        openapi.document(ROUTE_TABLES)["components"]["schemas"]["JobWorkflow"]["properties"])


def test_a_designers_maintenance_removes_idempotency_keys_past_24_hours(tmp_path):
    """Not a new behaviour: extension.py's hourly maintenance (here every 20 ms) already sweeps them
    (Idempotency.remove_expired); checked end to end, a key of a day and a second ago gone, a fresh one kept."""
    import json
    import time

    from comfyui_sagemaker.core import config as config_mod
    from comfyui_sagemaker.core.host_facts import ComfyFacts
    from comfyui_sagemaker.core.local_supervisor import LocalSupervisor
    from comfyui_sagemaker.core.v2.idempotency import TTL_S, Idempotency
    from comfyui_sagemaker.extension import Extension
    from harness.waiting import wait_for

    base = tmp_path / "comfy"
    for sub in ("input", "output", "config"):
        (base / sub).mkdir(parents=True)
    (base / "config" / config_mod.CONFIG_FILE).write_text(json.dumps({"store": "folder",
                                                                      "store_path": str(tmp_path / "store")}))
    store = FolderStore(tmp_path / "store")
    old = Idempotency(store, clock=lambda: time.time() - TTL_S - 1).begin("jobs.env.me", "old", "fp")
    fresh = Idempotency(store).begin("jobs.env.me", "fresh", "fp")
    facts = ComfyFacts(version="0.3.75", listen=("127.0.0.1",), config_dir=base / "config", input_dir=base / "input",
                       output_dir=base / "output", extension_dir=base)
    made: list[FakeEndpoints] = []
    ext = Extension.load(facts, lambda event, data, sid=None: None, maintenance_every=0.02,
                         local=LocalSupervisor(lambda uri, on_change: made.append(FakeEndpoints(on_change=on_change))
                                               or made[-1]))
    try:
        ext.start(wait=True)
        wait_for(lambda: not store.exists(old.key), 30, "the maintenance's sweep of the expired key")
        assert store.exists(fresh.key)
    finally:
        ext.stop()
        for endpoints in made:
            endpoints.close()


# An event stream whose store fails says so in the protocol's generic words, as an answer does (upstream_error)

def test_a_store_failing_mid_stream_is_said_without_its_detail(v2, monkeypatch, caplog):
    from comfyui_sagemaker.core.errors import StoreUnavailable
    from comfyui_sagemaker.core.v2 import job_events
    from comfyui_sagemaker.server_routes import v2 as v2_routes
    from comfyui_sagemaker.server_routes.errors import UPSTREAM_MESSAGE

    job = httpx.post(v2.jobs, json={"workflow": held("stream")}).json()["id"]
    v2.fake.run(job).wait_started()
    secret = "s3://studio-secret-bucket/executions/records/x.json: AccessDenied for role arn:aws:iam::1:role/R"

    polled = job_events.JobEvents.poll
    calls = []

    def failing(self):  # the stream's first look answers; a later one meets the store failing
        calls.append(1)
        if len(calls) > 1:
            raise StoreUnavailable(secret)
        return polled(self)

    monkeypatch.setattr(job_events.JobEvents, "poll", failing)
    monkeypatch.setattr(v2_routes, "HEARTBEAT_S", 0.1)  # the held run says nothing: the stream's next look is soon
    with httpx.stream("GET", f"{v2.jobs}/{job}/events", timeout=60) as r:
        text = "".join(r.iter_text())
    assert "event: log" in text and UPSTREAM_MESSAGE in text, text
    assert "studio-secret-bucket" not in text and "arn:aws" not in text, text
    assert "studio-secret-bucket" in caplog.text  # the detail goes to the log
    v2.fake.run(job).release()
