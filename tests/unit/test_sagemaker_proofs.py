"""The proof run of a SageMaker update (issue 30, aws/sagemaker_proofs.py): the proofs of the templates bound to
the environment run on a temporary endpoint of the new version before the guarded update; a failing one stops
the update (the old version serves on) and the endpoint says which template failed with its node error, as a
local endpoint says it. Every SageMaker request through botocore's Stubber (checked against the installed
service model, none unasked, none left over); the real Prover (core/proofs.py) on a folder store holding the
template and its proof. The async runs' results come from a stand-in for the process's async watch; the
real-time proof goes through the runtime emulator (tests/harness/runtime_emulator.py: AWS's wire protocol and
event-stream frames) to a stand-in worker."""

from __future__ import annotations

import io
import json
import threading
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import boto3
import botocore.session
import pytest
from botocore.stub import ANY
from comfyui_sagemaker.aws import naming, runtime
from comfyui_sagemaker.aws.errors import QuotaExceeded
from comfyui_sagemaker.core.endpoints import EndpointBusy
from comfyui_sagemaker.core.proofs import Prover, proofs_key
from comfyui_sagemaker.core.store import blob_key
from comfyui_sagemaker.core.templates import TemplateService
from comfyui_sagemaker.local.folder_store import FolderStore
from harness.runtime_emulator import RuntimeEmulator
from harness.sagemaker_stub import ENDPOINT, SERVICES, STORE, stubbed_endpoints
from harness.service_quotas import listed
from harness.service_quotas import quota as service_quota
from PIL import Image
from unit.test_deploy_guardrails import ERRORS_ALARM, ROLLBACK, manifest, quota, running, v

pytestmark = pytest.mark.stubber

ENV = "Portraits"
TYPE = "ml.g5.xlarge"
ARN = "arn:aws:sagemaker:us-east-1:123456789012:"
T0 = datetime(2026, 1, 1)
TEMP = naming.proof_endpoint_name(ENV, STORE)
TEMP_CONFIG = f"{TEMP}-v2"
PROMPT = {"9": {"class_type": "SaveImage", "inputs": {"images": ["8", 0], "filename_prefix": "x"}},
          "8": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}}}
PROOF = {"execution": "e1", "template_version": 1, "environment_version": 1, "values": {}, "inputs": {},
         "outputs": {"9": {"kind": "images", "files": [{"format": "PNG", "width": 8, "height": 8}]}},
         "hash_tolerance": None, "recorded_at": "2026-01-01T00:00:00+00:00"}
NODE_ERROR = {"status": "failed", "error": {
    "code": "node_error", "message": "Error while deserializing header: MetadataIncompleteBuffer", "node_id": "3",
    "node_type": "CheckpointLoaderSimple"}}
STATUSES = set(botocore.session.get_session().get_service_model("sagemaker").shape_for("EndpointStatus").enum)


def status(name: str) -> str:
    """An EndpointStatus as botocore's service model spells it (a test of a state AWS does not have fails)."""
    assert name in STATUSES, (name, STATUSES)
    return name


def png(width: int = 8, height: int = 8) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height)).save(out, "PNG")
    return out.getvalue()


class Watch:
    """The process's async watch (SageMakerEndpoints.watch), answering each followed run with `answer()`."""

    def __init__(self, answer):
        self.answer, self.followed = answer, []

    def follow(self, endpoint, execution_id, resume, on_event):
        self.followed.append(endpoint)
        return self.answer()


class Studio:
    """A store with template Portrait bound to the environment, carrying a proof, and the provider on Stubbers."""

    def __init__(self, tmp_path, cloud, store):
        self.cloud, self.store = cloud, store
        self.endpoints, self.events = cloud.endpoints, cloud.events
        self.sm, self.cw, self.sq = (cloud.stubs[s] for s in ("sagemaker", "cloudwatch", "service-quotas"))
        self.rt = cloud.stubs["sagemaker-runtime"]

    def outputs(self, width: int = 8) -> dict:
        data = png(width)
        import hashlib

        digest = hashlib.sha256(data).hexdigest()
        self.store.put(blob_key(digest), data)
        return {"status": "succeeded", "outputs": {"9": {"images": [{"filename": "x_00001_.png", "sha256": digest}]}}}

    def answering(self, answer) -> Watch:
        watch = Watch(answer)
        self.endpoints.__dict__["watch"] = watch  # a cached_property: the provider's one watch
        return watch


@pytest.fixture
def studio(aws_env, tmp_path):
    store = FolderStore(tmp_path / "store")
    templates = TemplateService(store, lambda name: True)
    templates.create("Portrait", {"nodes": [], "links": []}, PROMPT, ENV)
    templates.update("Portrait", proof=PROOF)
    prover = Prover(store, templates)
    with stubbed_endpoints((*SERVICES, "sagemaker-runtime"), store=store, prover=lambda: prover) as cloud:
        yield Studio(tmp_path, cloud, store)


def not_found(sm, name):
    sm.add_client_error("describe_endpoint", "ValidationException", f'Could not find endpoint "{name}".',
                        expected_params={"EndpointName": name})


def new_version(sm, mode="async"):
    sm.add_response("create_model", {"ModelArn": ARN + "model/m"},
                    {"ModelName": v(2), "ExecutionRoleArn": ANY, "PrimaryContainer": ANY, "Tags": ANY})
    request = {"EndpointConfigName": v(2), "ProductionVariants": ANY, "Tags": ANY}
    if mode == "async":
        request["AsyncInferenceConfig"] = ANY
    sm.add_response("create_endpoint_config", {"EndpointConfigArn": ARN + "endpoint-config/c"}, request)


def described(name, state, config, reason=None):
    d = {"EndpointName": name, "EndpointArn": ARN + f"endpoint/{name}", "EndpointConfigName": config,
         "EndpointStatus": status(state), "CreationTime": T0, "LastModifiedTime": T0,
         "ProductionVariants": [{"VariantName": "AllTraffic", "CurrentInstanceCount": 1}]}
    if reason:
        d["FailureReason"] = reason
    return d


TAGS = [{"Key": naming.TAG_STORE, "Value": naming.store_digest(STORE)}, {"Key": naming.TAG_ENVIRONMENT, "Value": ENV}]


def temporary_made(sm, mode="async", state="InService", reason=None):
    """No leftover; the temporary config (the new version's model, one instance) and endpoint made, then
    described in `state`."""
    not_found(sm, TEMP)
    variant = {"VariantName": "AllTraffic", "ModelName": v(2), "InstanceType": TYPE, "InitialInstanceCount": 1,
               "ContainerStartupHealthCheckTimeoutInSeconds": ANY, "InferenceAmiVersion": ANY}
    request = {"EndpointConfigName": TEMP_CONFIG, "Tags": [*TAGS, {"Key": naming.TAG_VERSION, "Value": "2"}]}
    if mode == "async":
        request["AsyncInferenceConfig"] = ANY
    else:
        variant["RoutingConfig"] = {"RoutingStrategy": "LEAST_OUTSTANDING_REQUESTS"}
    sm.add_response("create_endpoint_config", {"EndpointConfigArn": ARN + "endpoint-config/t"},
                    {**request, "ProductionVariants": [variant]})
    sm.add_response("create_endpoint", {"EndpointArn": ARN + f"endpoint/{TEMP}"},
                    {"EndpointName": TEMP, "EndpointConfigName": TEMP_CONFIG, "Tags": TAGS})
    sm.add_response("describe_endpoint", described(TEMP, state, TEMP_CONFIG, reason), {"EndpointName": TEMP})


def async_invoked(rt):
    rt.add_response("invoke_endpoint_async", {
        "InferenceId": "p", "OutputLocation": f"{STORE}/async/outputs/p.out",
        "FailureLocation": f"{STORE}/async/failures/p-error.out"}, {
        "EndpointName": TEMP, "ContentType": "application/json", "Accept": "application/json",
        "InferenceId": ANY, "InvocationTimeoutSeconds": 3600, "RequestTTLSeconds": ANY,
        ("Body" if runtime.takes_inline(rt.client) else "InputLocation"): ANY})


def temporary_deleted(sm, already_gone=False):
    """DeleteEndpoint, DeleteEndpointConfig, and waited for until SageMaker no longer has it."""
    if already_gone:
        sm.add_client_error("delete_endpoint", "ValidationException", f'Could not find endpoint "{TEMP}".',
                            expected_params={"EndpointName": TEMP})
    else:
        sm.add_response("delete_endpoint", {}, {"EndpointName": TEMP})
    sm.add_response("delete_endpoint_config", {}, {"EndpointConfigName": TEMP_CONFIG})
    not_found(sm, TEMP)


def guarded_update(sm, cw):
    cw.add_response("put_metric_alarm", {}, ERRORS_ALARM)
    sm.add_response("update_endpoint", {"EndpointArn": ARN + "e"}, {
        "EndpointName": ENDPOINT, "EndpointConfigName": v(2), "RetainAllVariantProperties": True,
        "DeploymentConfig": {"BlueGreenUpdatePolicy": ANY, **ROLLBACK}})


def version_removed(sm):
    sm.add_response("delete_endpoint_config", {}, {"EndpointConfigName": v(2)})
    sm.add_response("delete_model", {}, {"ModelName": v(2)})


SCALING = {"min": 1, "max": 1}


def test_a_version_whose_proofs_pass_on_its_temporary_endpoint_is_then_updated_with_the_guardrails(studio):
    sm, cw, sq, rt = studio.sm, studio.cw, studio.sq, studio.rt
    running(sm, 1)
    quota(sq, 2)  # the serving instance and the temporary one (or the blue/green update's new fleet of 1)
    new_version(sm)
    temporary_made(sm)
    async_invoked(rt)
    seen = {}

    def answer():  # while the proof runs, the endpoint (any ComfyUI's look at it) says what it does
        sm.add_response("describe_endpoint", described(ENDPOINT, "InService", v(1)), {"EndpointName": ENDPOINT})
        seen["view"] = studio.endpoints.get(ENV)
        temporary_deleted(sm)  # what follows the proof (the Stubber answers in the order it was told)
        guarded_update(sm, cw)
        return studio.outputs()

    watch = studio.answering(answer)
    answered = studio.endpoints.deploy(manifest(scaling=SCALING))

    assert answered["state"] == "Updating" and answered["version"] == 2
    assert answered["activity"].startswith("proving version 2 on a temporary endpoint (about $")
    assert "ml.g5.xlarge at $1.41/h for about" in answered["activity"]  # core/prices.json's us-east-1 price
    assert studio.events[0] == answered
    assert watch.followed == [TEMP]
    assert seen["view"]["state"] == "Updating" and seen["view"]["activity"] == answered["activity"]
    assert seen["view"]["version"] == 1  # still the serving one
    run = json.loads(studio.store.get(proofs_key(ENV, 2)).data)
    assert run["passed"] and run["results"][0]["template"] == "Portrait"
    assert studio.cloud.monitored == [(manifest(scaling=SCALING), ENDPOINT, False)]  # then followed as any update
    assert not studio.store.exists("endpoints/portraits/proof.json")


def test_a_failing_proof_stops_the_update_and_says_which_template_failed_with_its_node_error(studio):
    sm, sq, rt = studio.sm, studio.sq, studio.rt
    running(sm, 1)
    quota(sq, 2)
    new_version(sm)
    temporary_made(sm)
    async_invoked(rt)
    studio.answering(lambda: NODE_ERROR)
    temporary_deleted(sm)
    version_removed(sm)  # and no PutMetricAlarm, no UpdateEndpoint: the Stubber refuses any call not queued
    sm.add_response("describe_endpoint", described(ENDPOINT, "InService", v(1)), {"EndpointName": ENDPOINT})
    studio.endpoints.deploy(manifest(scaling=SCALING))

    said = studio.events[-1]
    reason = ("version 2 did not deploy (its proof failed (template Portrait: node 3 (CheckpointLoaderSimple): "
              "node_error: Error while deserializing header: MetadataIncompleteBuffer)); still serving version 1")
    assert said["state"] == "InService" and said["version"] == 1 and said["reason"] == reason
    failed = said["proof_failed"]
    assert not failed["passed"] and failed["version"] == 2
    assert failed["results"] == [{"template": "Portrait", "passed": False, "node_id": "3",
                                  "node_type": "CheckpointLoaderSimple", "problems": [
                                      "node 3 (CheckpointLoaderSimple): node_error: Error while deserializing header: "
                                      "MetadataIncompleteBuffer"]}]
    # The API says it too, at any later look (SageMaker's description knows nothing of it).
    sm.add_response("describe_endpoint", described(ENDPOINT, "InService", v(1)), {"EndpointName": ENDPOINT})
    view = studio.endpoints.get(ENV)
    assert view["reason"] == reason and view["proof_failed"] == failed and view["state"] == "InService"
    assert json.loads(studio.store.get(proofs_key(ENV, 2)).data) == failed  # the version's history


def test_the_temporary_endpoint_is_deleted_when_it_cannot_start_and_the_old_version_serves_on(studio):
    sm, sq = studio.sm, studio.sq
    running(sm, 1)
    quota(sq, 2)
    new_version(sm)
    temporary_made(sm, state="Failed", reason="The primary container for production variant AllTraffic did not pass "
                                               "the ping health check.")
    temporary_deleted(sm)
    version_removed(sm)
    sm.add_response("describe_endpoint", described(ENDPOINT, "InService", v(1)), {"EndpointName": ENDPOINT})
    studio.endpoints.deploy(manifest(scaling=SCALING))
    assert studio.events[-1]["reason"] == (
        "version 2 did not deploy (its temporary endpoint did not start: Failed (The primary container for "
        "production variant AllTraffic did not pass the ping health check.)); still serving version 1")
    assert studio.events[-1]["proof_failed"] is None


def test_the_temporary_endpoint_is_deleted_when_sagemaker_refuses_it_midway(studio):
    sm, sq = studio.sm, studio.sq
    running(sm, 1)
    quota(sq, 2)
    new_version(sm)
    not_found(sm, TEMP)
    sm.add_response("create_endpoint_config", {"EndpointConfigArn": ARN + "endpoint-config/t"},
                    {"EndpointConfigName": TEMP_CONFIG, "ProductionVariants": ANY, "Tags": ANY,
                     "AsyncInferenceConfig": ANY})
    sm.add_client_error("create_endpoint", "ResourceLimitExceeded", "The account-level service limit "
                        "'ml.g5.xlarge for endpoint usage' is 1 Instances, with current utilization of 1 Instances "
                        "and a request delta of 1 Instances.", expected_params={
                            "EndpointName": TEMP, "EndpointConfigName": TEMP_CONFIG, "Tags": TAGS})
    temporary_deleted(sm, already_gone=True)
    version_removed(sm)
    sm.add_response("describe_endpoint", described(ENDPOINT, "InService", v(1)), {"EndpointName": ENDPOINT})
    studio.endpoints.deploy(manifest(scaling=SCALING))
    reason = studio.events[-1]["reason"]
    assert reason.startswith("version 2 did not deploy (proving it failed: ") and "ml.g5.xlarge" in reason
    assert reason.endswith("still serving version 1")


def test_a_delete_while_the_proofs_run_cancels_them_and_the_temporary_endpoint_goes(studio):
    sm, sq, rt = studio.sm, studio.sq, studio.rt
    running(sm, 1)
    quota(sq, 2)
    new_version(sm)
    temporary_made(sm)
    async_invoked(rt)
    settled = []

    def delete_arrives():
        sm.add_response("delete_endpoint", {}, {"EndpointName": TEMP})  # cancel() deletes it at once
        studio.endpoints.proofs.cancel(ENV)
        studio.endpoints.when_settled(ENV, lambda: settled.append(True))
        assert settled == []  # the environment's lease is held until the proof run has ended
        with pytest.raises(EndpointBusy, match="proving a new version"):  # and this process deploys nothing else
            running(sm, 1)
            quota(sq, 2)
            studio.endpoints.deploy(manifest(version=3, scaling=SCALING))
        temporary_deleted(sm, already_gone=True)  # the proof run's end deletes it again, and waits until gone
        version_removed(sm)  # not deployed: its model and config go; no update
        return {"status": "failed", "error": {"code": "endpoint_gone", "message": "the endpoint was deleted"}}

    studio.answering(delete_arrives)
    studio.endpoints.deploy(manifest(scaling=SCALING))
    assert settled == [True]
    assert not studio.store.exists("endpoints/portraits/proof.json")


def test_a_quota_that_cannot_hold_the_temporary_endpoint_is_refused_before_anything_is_created(studio):
    """Scaled to zero, the update itself needs no instance; the proof needs one, and the quota is 0."""
    sm, sq = studio.sm, studio.sq
    running(sm, 0)
    listed(sq, [service_quota(TYPE, 0, "L-2")])
    with pytest.raises(QuotaExceeded) as refused:
        studio.endpoints.deploy(manifest(scaling={"min": 0, "max": 2}))
    assert "needs 1 at once (0 running and a temporary endpoint of 1 to prove version 2)" in refused.value.message
    assert studio.events == []  # and the Stubber saw no create of any kind


def test_a_first_deploy_and_a_rollback_are_not_proven(studio):
    sm, cw, sq = studio.sm, studio.cw, studio.sq
    not_found(sm, ENDPOINT)
    listed(sq, [service_quota(TYPE, 1, "L-2")])
    new_version(sm)
    sm.add_response("create_endpoint", {"EndpointArn": ARN + "e"}, {"EndpointName": ENDPOINT,
                                                                    "EndpointConfigName": v(2), "Tags": TAGS})
    assert studio.endpoints.deploy(manifest(scaling=SCALING))["state"] == "Creating"

    kept = {"EndpointConfigArn": ARN + "c", "CreationTime": T0, "AsyncInferenceConfig": {"OutputConfig": {
        "S3OutputPath": f"{STORE}/async/outputs/"}}, "ProductionVariants": [{
            "VariantName": "AllTraffic", "ModelName": v(1), "InstanceType": TYPE, "InitialInstanceCount": 1}]}
    sm.add_response("describe_endpoint_config", {**kept, "EndpointConfigName": v(1)},
                    {"EndpointConfigName": v(1)})  # kept: the rollback creates nothing
    sm.add_response("describe_endpoint", described(ENDPOINT, "InService", v(2)), {"EndpointName": ENDPOINT})
    sm.add_response("describe_endpoint_config", {**kept, "EndpointConfigName": v(2)}, {"EndpointConfigName": v(2)})
    quota(sq, 2)
    cw.add_response("put_metric_alarm", {}, ERRORS_ALARM)
    sm.add_response("update_endpoint", {"EndpointArn": ARN + "e"}, {
        "EndpointName": ENDPOINT, "EndpointConfigName": v(1), "RetainAllVariantProperties": True,
        "DeploymentConfig": ANY})
    assert studio.endpoints.rollback(manifest(version=1, scaling=SCALING))["state"] == "Updating"


def test_with_no_template_proof_to_run_the_update_goes_as_before(studio):
    TemplateService(studio.store, lambda n: True).update("Portrait", proof=None)
    sm, cw, sq = studio.sm, studio.cw, studio.sq
    running(sm, 1)
    quota(sq, 2)
    new_version(sm)
    guarded_update(sm, cw)  # at once: no temporary endpoint
    assert "activity" not in studio.endpoints.deploy(manifest(scaling=SCALING))


# real-time: the proof through the runtime emulator (AWS's wire protocol) to a stand-in worker


class _Worker(BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 (http.server's name)
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
        self.server.bodies.append(body)
        line = json.dumps({"type": "result", "data": self.server.result}).encode() + b"\n"
        self.send_response(200)
        self.send_header("Content-Type", "application/x-ndjson")
        self.send_header("Content-Length", str(len(line)))
        self.end_headers()
        self.wfile.write(line)

    def log_message(self, *args):
        pass


class _Described:
    """The control plane the emulator asks whether an endpoint exists: the temporary one does."""

    class meta:  # noqa: N801 (boto3's attribute)
        region_name = "us-east-1"

    def describe_endpoint(self, EndpointName):  # noqa: N803 (boto3's argument name)
        if EndpointName != TEMP:
            raise KeyError(EndpointName)
        return {"EndpointConfigName": TEMP_CONFIG}


@pytest.fixture
def emulated(studio):
    worker = ThreadingHTTPServer(("127.0.0.1", 0), _Worker)
    worker.bodies, worker.result = [], None
    threading.Thread(target=worker.serve_forever, daemon=True).start()
    emulator = RuntimeEmulator(_Described(), None).start()
    emulator.workers[TEMP] = f"http://127.0.0.1:{worker.server_address[1]}"
    studio.endpoints._clients["sagemaker-runtime"] = boto3.client("sagemaker-runtime", region_name="us-east-1",
                                                                  endpoint_url=emulator.url)
    yield worker, emulator
    emulator.stop()
    worker.shutdown()
    worker.server_close()


def test_a_realtime_endpoints_version_is_proven_on_its_temporary_endpoint_through_the_runtime(studio, emulated):
    worker, emulator = emulated
    sm, cw, sq = studio.sm, studio.cw, studio.sq
    worker.result = NODE_ERROR
    running(sm, 1, mode="realtime")
    quota(sq, 2)
    new_version(sm, mode="realtime")
    temporary_made(sm, mode="realtime")
    temporary_deleted(sm)
    version_removed(sm)
    sm.add_response("describe_endpoint", described(ENDPOINT, "InService", v(1)), {"EndpointName": ENDPOINT})
    studio.endpoints.deploy(manifest(mode="realtime", scaling=SCALING))
    assert emulator.calls == [("InvokeEndpointWithResponseStream", TEMP)]
    assert worker.bodies[0]["prompt"]["8"]["inputs"]["width"] == 8  # the template's prompt, as its proof runs it
    assert "node 3 (CheckpointLoaderSimple)" in studio.events[-1]["reason"]

    worker.result = studio.outputs()
    running(sm, 1, mode="realtime")
    quota(sq, 2)
    new_version(sm, mode="realtime")
    temporary_made(sm, mode="realtime")
    temporary_deleted(sm)
    guarded_update(sm, cw)
    studio.endpoints.deploy(manifest(mode="realtime", scaling=SCALING))
    assert emulator.calls[-1] == ("InvokeEndpointWithResponseStream", TEMP)
    assert studio.cloud.monitored[-1][1] == ENDPOINT


# a temporary endpoint is no environment's endpoint, and teardown finds one a dead process left


def test_a_leftover_temporary_endpoint_is_not_listed_as_an_endpoint_and_teardown_removes_it(studio):
    from botocore.stub import Stubber
    from comfyui_sagemaker.aws import teardown
    from comfyui_sagemaker.aws.setup import Aws

    sm = studio.sm
    listing = {"Endpoints": [
        {"EndpointName": n, "EndpointArn": ARN + f"endpoint/{n}", "CreationTime": T0, "LastModifiedTime": T0,
         "EndpointStatus": status("InService")} for n in (ENDPOINT, TEMP)]}
    sm.add_response("list_endpoints", listing, {"NameContains": "cs-"})
    sm.add_response("list_tags", {"Tags": TAGS}, {"ResourceArn": ARN + f"endpoint/{ENDPOINT}"})
    sm.add_response("describe_endpoint", described(ENDPOINT, "InService", v(1)), {"EndpointName": ENDPOINT})
    assert [e["endpoint_name"] for e in studio.endpoints.list()] == [ENDPOINT]

    client = boto3.client("sagemaker", region_name="us-east-1")
    with Stubber(client) as stub:
        stub.add_response("list_endpoints", listing, {"NameContains": "cs-"})
        for name in (ENDPOINT, TEMP):
            stub.add_response("list_tags", {"Tags": TAGS}, {"ResourceArn": ARN + f"endpoint/{name}"})
        digest = naming.store_digest(STORE)
        stub.add_response("list_endpoint_configs", {"EndpointConfigs": [
            {"EndpointConfigName": TEMP_CONFIG, "EndpointConfigArn": ARN + "endpoint-config/t", "CreationTime": T0}]},
            {"NameContains": f"-{digest}-v"})
        stub.add_response("list_tags", {"Tags": TAGS}, {"ResourceArn": ARN + "endpoint-config/t"})
        stub.add_response("list_models", {"Models": []}, {"NameContains": f"-{digest}-v"})
        inv = teardown.Inventory()
        teardown._sagemaker_inventory(Aws("us-east-1", lambda service: client), STORE, inv)
    assert set(inv.endpoints) == {ENDPOINT, TEMP} and inv.configs == [TEMP_CONFIG]
