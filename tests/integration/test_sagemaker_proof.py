"""A SageMaker update proven by its templates, end to end on the AWS rig (issue 30, aws/sagemaker_proofs.py):
SageMaker's control plane on moto, the runtime through the wire-protocol emulator. A template bound to a
real-time environment runs on the rig's worker and its run becomes its proof through the route; version 2's
temporary endpoint is served by a stand-in worker whose ComfyUI fails the template's node, so the proof fails
there: the endpoint keeps serving version 1 and says which template failed with its node error, the temporary
endpoint and version 2's model and config are gone from SageMaker, and runs go on on version 1. (moto has no
UpdateEndpoint, so the passing path, which ends in the guarded update, is tested through botocore's Stubber in
tests/unit/test_sagemaker_proofs.py.)"""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from comfyui_sagemaker.aws import naming
from harness.aws_rig import STORE_URI
from harness.envs import unique, wait_execution, wait_task
from harness.images import png
from harness.prompts import scale_prompt
from harness.waiting import wait_for

pytestmark = pytest.mark.comfyui

MISSING = {"status": "failed", "error": {
    "code": "node_error", "message": "Value not in list: lora_name: 'style.safetensors' not in []", "node_id": "2",
    "node_type": "SMTestScale"}}


class _Failing(BaseHTTPRequestHandler):
    """Version 2's worker: its ComfyUI lacks the template's lora, so the node fails (a streamed answer)."""

    def do_POST(self):  # noqa: N802 (http.server's name)
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.server.calls += 1
        line = json.dumps({"type": "result", "data": MISSING}).encode() + b"\n"
        self.send_response(200)
        self.send_header("Content-Type", "application/x-ndjson")
        self.send_header("Content-Length", str(len(line)))
        self.end_headers()
        self.wfile.write(line)

    def log_message(self, *args):
        pass


@pytest.fixture
def failing_worker():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Failing)
    server.calls = 0
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def ran(client, body) -> dict:
    r = client.post("/sagemaker/executions", json=body)
    assert r.status_code == 202, r.text
    record = wait_execution(client, r.json()["execution_id"], 180)
    assert record["state"] == "succeeded", record
    return record


def test_a_version_whose_proof_fails_on_its_temporary_endpoint_is_not_deployed(aws_rig, failing_worker):
    rig = aws_rig.take()
    client = rig.client()
    client.upload_image("proof.png", png(4, 4, (200, 100, 50)))
    name = unique("T")
    prompt = scale_prompt("proof.png", 0.5, "proof")
    assert client.post("/sagemaker/templates", json={"name": name, "workflow": prompt,
                                                     "prompt": prompt}).status_code == 201
    env = rig.publish([name], "realtime", bind=True)
    run = ran(client, {"prompt": prompt, "template": name})
    r = client.post(f"/sagemaker/templates/{name}/proof", json={"execution_id": run["id"]})
    assert r.status_code == 200, r.text

    temporary = naming.proof_endpoint_name(env, STORE_URI)
    rig.emulator.workers[temporary] = f"http://127.0.0.1:{failing_worker.server_address[1]}"
    r = client.post("/sagemaker/environments", json={"name": env, "templates": [name], "endpoint": {
        "kind": "sagemaker", "mode": "realtime", "instance_type": "ml.g4dn.xlarge", "initial_count": 1}})
    assert r.status_code == 202, r.text
    assert wait_task(client, r.json()["task"]["id"], 300)["state"] == "succeeded"

    def said() -> dict:
        endpoint = client.get(f"/sagemaker/endpoints/{env}").json()
        return endpoint if "did not deploy" in (endpoint.get("reason") or "") else {}

    endpoint = wait_for(said, 300, "the failed proof reported")
    assert endpoint["state"] == "InService" and endpoint["version"] == 1, endpoint
    assert endpoint["reason"] == (
        f"version 2 did not deploy (its proof failed (template {name}: node 2 (SMTestScale): node_error: Value not "
        "in list: lora_name: 'style.safetensors' not in [])); still serving version 1"), endpoint
    failed = endpoint["proof_failed"]
    assert failed["version"] == 2 and [(x["template"], x["passed"], x["node_id"]) for x in failed["results"]] == \
        [(name, False, "2")], failed
    assert ("InvokeEndpointWithResponseStream", temporary) in rig.emulator.calls and failing_worker.calls == 1
    endpoints = {e["EndpointName"] for e in rig.sagemaker.list_endpoints(NameContains="cs-")["Endpoints"]}
    assert temporary not in endpoints and rig.endpoint(env) in endpoints  # deleted; the serving one stays
    configs = {c["EndpointConfigName"] for c in rig.sagemaker.list_endpoint_configs(NameContains=env.lower())[
        "EndpointConfigs"]}
    assert configs == {f"{rig.endpoint(env)}-v1"}, configs  # the temporary config and version 2's are gone
    listed = [e["name"] for e in client.get("/sagemaker/endpoints").json()["endpoints"] if e["name"] == env]
    assert listed == [env]  # the temporary endpoint was never listed as one of the environment's
    history = client.get(f"/sagemaker/environments/{env}/versions").json()
    assert history["serving"] == 1 and history["versions"][0]["proofs"] == failed, history
    ran(client, {"prompt": prompt, "template": name})  # version 1 serves on
