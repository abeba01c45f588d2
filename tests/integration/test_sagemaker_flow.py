"""The whole artist flow on the SageMaker path: S3 store and SageMaker control plane on moto,
the runtime through the wire-protocol emulator, the prompt on a real worker."""

import uuid

import pytest
from harness.envs import unique, wait_execution
from harness.images import pixels, png
from harness.prompts import scale_prompt
from harness.waiting import wait_for

pytestmark = pytest.mark.comfyui


def prompt(factor=0.5, prefix="sm", wait_for=None, image="flow.png"):
    """Held (with `wait_for`) until the test writes that file: a hold never ends by itself mid-test."""
    return scale_prompt(image, factor, prefix, wait_for, timeout=300)


@pytest.fixture(scope="module")
def rig(aws_rig):
    """The session's AWS rig (tests/harness/aws_rig.py) with a template published into two environments, one
    on a real-time endpoint, one on an async endpoint. Yields (client, template, {mode: environment}, rig)."""
    aws_rig.take()
    client = aws_rig.client()
    client.upload_image("flow.png", png(4, 4, (200, 100, 50)))
    template = unique("T")
    assert client.post("/sagemaker/templates", json={"name": template, "workflow": prompt(wait_for="/x"),
                                                     "prompt": prompt()}).status_code == 201
    envs = {mode: aws_rig.publish([template], mode) for mode in ("realtime", "async")}
    return client, template, envs, aws_rig


def run(client, body, timeout=180):
    r = client.post("/sagemaker/executions", json=body)
    assert r.status_code == 202, r.text
    return wait_execution(client, r.json()["execution_id"], timeout)


def check_output(client, record, expected=(100, 50, 25)):
    image = record["outputs"]["3"]["images"][0]
    assert image["subfolder"] == f"sagemaker/{record['id']}"
    data = client.view(image["filename"], image["subfolder"], "output")
    assert all(abs(a - b) <= 1 for px in pixels(data) for a, b in zip(px, expected, strict=True))


@pytest.mark.parametrize("mode", ["realtime", "async"])
def test_prompt_on_aws_end_to_end(rig, mode):
    client, _, envs, aws = rig
    client_id = uuid.uuid4().hex
    ws = client.websocket(client_id)
    try:
        record = run(client, {"prompt": prompt(prefix=mode), "environment": envs[mode], "client_id": client_id})
    finally:
        ws.close()
    assert record["state"] == "succeeded", record
    check_output(client, record)
    operation = "InvokeEndpointWithResponseStream" if mode == "realtime" else "InvokeEndpointAsync"
    assert (operation, aws.endpoint(envs[mode])) in aws.emulator.calls


def test_realtime_streams_comfyuis_events_live(rig):
    import json

    client, _, envs, _ = rig
    client_id = uuid.uuid4().hex
    ws = client.websocket(client_id)
    try:
        r = client.post("/sagemaker/executions", json={"prompt": prompt(prefix="live", factor=0.25),
                                                       "environment": envs["realtime"], "client_id": client_id})
        prompt_id, types = r.json()["prompt_id"], []
        while "execution_success" not in types and "execution_error" not in types:
            event = json.loads(ws.recv())
            if not event["type"].startswith("sagemaker.") and event["data"].get("prompt_id") == prompt_id:
                types.append(event["type"])
    finally:
        ws.close()
    assert types[0] == "execution_start" and "executed" in types and types[-1] == "execution_success"


def test_realtime_limit_is_reported_and_suggests_async(rig, tmp_path):
    """The prompt is held until the limit has passed (the limit is short here; the hold lasts until released)."""
    client, _, envs, aws = rig
    release = tmp_path / "release"
    aws.emulator.realtime_limit = 1.0
    try:
        record = run(client, {"prompt": prompt(prefix="slow", wait_for=str(release)),
                              "environment": envs["realtime"]})
    finally:
        aws.emulator.realtime_limit = 60.0
        release.write_text("go")  # the worker's prompt ends; the worker is free for whatever comes next
        aws.wait_worker_idle()
    assert record["state"] == "failed"
    assert "60 s" in record["error"]["message"] and "async" in record["error"]["message"]


def test_async_failure_object_becomes_the_error(rig):
    """The extension refuses a prompt ComfyUI would refuse before it is sent (tests/integration/
    test_native_run.py); a caller that sends one anyway (another program, an older extension) gets the
    worker's refusal through SageMaker's failure object, read by the same runtime code."""
    import boto3
    from comfyui_sagemaker.aws.runtime import invoke_async
    from comfyui_sagemaker.aws.s3_store import S3Store
    from comfyui_sagemaker.core.endpoints import InvocationFailed
    from comfyui_sagemaker.core.executions import new_id

    client, _, envs, aws = rig
    bad = {"1": {"class_type": "EmptyImage", "inputs": {"width": 4, "height": 4, "batch_size": 1, "color": 0}},
           "2": {"class_type": "SMTestScale", "inputs": {"image": ["1", 0], "lora_name": "style.safetensors",
                                                         "factor": 5.0}},  # over SMTestScale's max
           "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "bad"}}}
    r = client.post("/sagemaker/executions", json={"prompt": bad, "environment": envs["async"]})
    assert r.status_code == 400 and r.json()["error"]["code"] == "prompt_invalid", r.text
    runtime = boto3.client("sagemaker-runtime", endpoint_url=aws.emulator.url, region_name="us-east-1",
                           aws_access_key_id="testing", aws_secret_access_key="testing")
    with pytest.raises(InvocationFailed) as failed:
        invoke_async(runtime, aws.s3, S3Store(aws.bucket, aws.prefix, s3_client=aws.s3), aws.store_uri,
                     aws.endpoint(envs["async"]),
                     {"execution_id": new_id("test"), "prompt": bad, "inputs": {}}, lambda event: None, timeout=180)
    assert "reported a failure" in failed.value.message and "factor" in failed.value.message


def test_endpoint_deleted_while_an_async_run_waits(rig, tmp_path):
    client, _, envs, aws = rig
    release = tmp_path / "release"
    endpoint = aws.endpoint(envs["async"])
    calls = aws.emulator.calls.count(("InvokeEndpointAsync", endpoint))
    try:
        r = client.post("/sagemaker/executions", json={"prompt": prompt(prefix="gone", wait_for=str(release)),
                                                       "environment": envs["async"]})
        execution_id = r.json()["execution_id"]
        wait_for(lambda: aws.emulator.calls.count(("InvokeEndpointAsync", endpoint)) > calls,
                 what="the run to wait on SageMaker")
        aws.sagemaker.delete_endpoint(EndpointName=endpoint)
        record = wait_execution(client, execution_id)
        assert record["state"] == "failed" and "deleted" in record["error"]["message"], record
        r = client.post("/sagemaker/executions", json={"prompt": prompt(), "environment": envs["async"]})
        assert r.status_code == 404 or r.json()["error"]["code"] in ("endpoint_not_ready", "endpoint_not_found")
    finally:
        release.write_text("go")
        aws.wait_worker_idle()  # the released prompt ends on the rig's worker before anything else runs there
