"""A redeploy of a local endpoint with runs in flight, through the routes, on real workers (issue 31, point 4):
the new version's worker starts beside the serving one (held in its warm-up until the test says), the six runs
in flight and the runs sent during the update all succeed on the old one, traffic moves once the new one is
ready, and a new version that cannot start leaves the endpoint serving the old one with SageMaker's words.
Orderings, never timings: runs are held by the test pack's SMTestWait until their signal file exists."""

import uuid

import pytest
from harness.envs import unique, wait_endpoint, wait_execution, wait_task
from harness.waiting import wait_for

pytestmark = pytest.mark.comfyui

HOLD_S = 600  # an SMTestWait's own limit; every test releases its holds


def held(signal, prefix: str = "redeploy") -> dict:
    """The test pack's lora scaled, held until `signal` exists; a colour of its own (no cache answers it)."""
    return {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 2, "height": 2, "batch_size": 1,
                                                     "color": uuid.uuid4().int % 0xFFFFFF}},
        "2": {"class_type": "SMTestWait", "inputs": {"image": ["1", 0], "signal": str(signal), "timeout": HOLD_S}},
        "3": {"class_type": "SMTestScale", "inputs": {"image": ["2", 0], "lora_name": "style.safetensors",
                                                      "factor": 0.5}},
        "4": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": prefix}},
    }


def publish(client, env: str, template: str, **extra) -> dict:
    r = client.post("/sagemaker/environments", json={"name": env, "templates": [template], **extra})
    assert r.status_code == 202, r.text
    task = wait_task(client, r.json()["task"]["id"], 300)
    assert task["state"] == "succeeded", task
    return task


def run(client, template: str, prompt: dict) -> str:
    r = client.post("/sagemaker/executions", json={"prompt": prompt, "template": template})
    assert r.status_code == 202, r.text
    return r.json()["execution_id"]


@pytest.fixture
def serving(client, tmp_path):
    """An environment of its own on a local endpoint, in service on version 1; (env, template)."""
    template, env = unique("T"), unique("E")
    prompt = held(tmp_path / "never-needed-by-the-template")
    r = client.post("/sagemaker/templates", json={"name": template, "workflow": prompt, "prompt": prompt})
    assert r.status_code == 201, r.text
    publish(client, env, template, endpoint={"kind": "local"}, bind=True)
    assert wait_endpoint(client, env)["state"] == "InService"
    yield env, template
    for path in tmp_path.iterdir():
        path.touch()  # nothing stays held
    (tmp_path / "never-needed-by-the-template").touch()
    client.delete(f"/sagemaker/endpoints/{env}")


def test_a_redeploy_during_six_runs_loses_none_and_runs_sent_meanwhile_succeed(client, serving, tmp_path):
    env, template = serving
    go, gate = tmp_path / "go", tmp_path / "new-worker-ready"
    before = client.get(f"/sagemaker/endpoints/{env}").json()
    in_flight = [run(client, template, held(go)) for _ in range(6)]
    for execution_id in in_flight:
        wait_execution(client, execution_id, 120, states=("running",))
    # Version 2, its worker held in its warm-up until `gate` exists: the update stays under way meanwhile.
    publish(client, env, template, endpoint={"kind": "local"}, warmup=held(gate, "warmup"))
    during = client.get(f"/sagemaker/endpoints/{env}").json()
    assert during["state"] == "Updating" and during["version"] == 1 and during["url"] == before["url"], during
    sent_during = [run(client, template, held(go)) for _ in range(2)]
    for execution_id in sent_during:
        wait_execution(client, execution_id, 120, states=("running",))
    assert client.get(f"/sagemaker/endpoints/{env}").json()["state"] == "Updating"
    gate.touch()
    after = wait_endpoint(client, env, ("InService",))
    assert after["version"] == 2 and after["url"] != before["url"] and after["reason"] is None, after
    go.touch()
    for execution_id in in_flight + sent_during:
        record = wait_execution(client, execution_id, 300)
        assert record["state"] == "succeeded", record
    record = wait_execution(client, run(client, template, held(go)), 300)  # on the new worker
    assert record["state"] == "succeeded", record
    assert client.get(f"/sagemaker/endpoints/{env}").json()["state"] == "InService"


def test_a_new_version_that_cannot_start_leaves_the_old_one_serving_and_says_so(comfyui, client, serving, tmp_path):
    env, template = serving
    go = tmp_path / "go"
    # Version 2 needs a lora whose blob is then taken from the store and the workers' cache: its worker fails.
    other = held(go, "other")
    other["3"]["inputs"]["lora_name"] = "shared.safetensors"
    template2 = unique("T")
    r = client.post("/sagemaker/templates", json={"name": template2, "workflow": other, "prompt": other})
    assert r.status_code == 201, r.text
    publish(client, env, template2)  # published only: deployed below, once its blob is gone
    manifest = client.get(f"/sagemaker/environments/{env}").json()
    assert manifest["version"] == 2
    lora = next(m for m in manifest["models"] if m["name"] == "shared.safetensors")
    state = comfyui.user_dir / "__sagemaker"
    blob = state / "store" / "blobs" / "sha256" / lora["sha256"]
    data = blob.read_bytes()
    blob.unlink()
    (state / "worker-cache" / "blobs" / "sha256" / lora["sha256"]).unlink(missing_ok=True)
    try:
        in_flight = run(client, template, held(go))
        wait_execution(client, in_flight, 120, states=("running",))
        r = client.post("/sagemaker/endpoints", json={"environment": env})
        assert r.status_code == 202 and r.json()["state"] == "Updating", r.text

        def said() -> dict:
            endpoint = client.get(f"/sagemaker/endpoints/{env}").json()
            return endpoint if "did not deploy" in (endpoint.get("reason") or "") else {}

        endpoint = wait_for(said, 300, "the failed update reported")
        assert endpoint["state"] == "InService" and endpoint["version"] == 1, endpoint
        assert endpoint["reason"].startswith("version 2 did not deploy (") and "missing from the store" in \
            endpoint["reason"] and endpoint["reason"].endswith("; still serving version 1"), endpoint["reason"]
        go.touch()
        assert wait_execution(client, in_flight, 300)["state"] == "succeeded"
        assert wait_execution(client, run(client, template, held(go)), 300)["state"] == "succeeded"
    finally:
        blob.write_bytes(data)
