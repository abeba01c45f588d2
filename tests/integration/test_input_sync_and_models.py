"""Input sync and model management in the real ComfyUI, on the folder store and on moto's S3 server."""

import hashlib
import json
import time
import uuid

import pytest
from harness.http_server import FileServer
from harness.images import png
from harness.waiting import wait_for

pytestmark = pytest.mark.comfyui


def synced(client, name):
    files = {f["name"]: f for f in client.get("/sagemaker/inputs").json()["files"]}
    entry = files.get(name)
    return entry if entry and entry["state"] == "synced" else None


def test_files_written_into_input_reach_the_folder_store(comfyui, client):
    name = f"w{uuid.uuid4().hex[:8]}.png"
    data = png(3, 3, (9, 8, 7))
    (comfyui.input_dir / name).write_bytes(data)
    entry = wait_for(lambda: synced(client, name))
    assert entry["sha256"] == hashlib.sha256(data).hexdigest()
    blob = comfyui.user_dir / "__sagemaker" / "store" / "blobs" / "sha256" / entry["sha256"]
    assert blob.read_bytes() == data
    status = client.get("/sagemaker/inputs").json()
    assert status["watcher"] == {"enabled": True, "running": True} and status["counts"]["synced"] >= 1


def test_uploads_through_comfyuis_own_route_are_synced(client):
    name = f"u{uuid.uuid4().hex[:8]}.png"
    client.upload_image(name, png(2, 2, (1, 2, 3)))
    assert wait_for(lambda: synced(client, name))["sha256"] == hashlib.sha256(png(2, 2, (1, 2, 3))).hexdigest()


def test_the_watcher_can_be_turned_off_and_on(comfyui, client):
    r = client.post("/sagemaker/inputs/watcher", json={"enabled": False})
    assert r.json() == {"enabled": False, "running": False}
    try:
        name = f"off{uuid.uuid4().hex[:6]}.png"
        (comfyui.input_dir / name).write_bytes(png(2, 2, (5, 5, 5)))
        time.sleep(0.5)
        assert synced(client, name) is None
    finally:
        assert client.post("/sagemaker/inputs/watcher", json={"enabled": True}).json()["running"] is True
    assert wait_for(lambda: synced(client, name))  # the start-up scan finds what came meanwhile
    assert client.post("/sagemaker/inputs/watcher", json={"enabled": "yes"}).status_code == 400


def test_inputs_reach_s3_on_moto(aws_rig):
    """On the session's ComfyUI whose store is S3 on moto (tests/harness/aws_rig.py)."""
    server, s3, bucket, prefix = aws_rig.comfyui, aws_rig.s3, aws_rig.bucket, aws_rig.prefix
    client = server.client()
    assert client.get("/sagemaker/health").json()["store"] == {"kind": "s3", "bucket": bucket, "prefix": prefix}
    name = f"s3{uuid.uuid4().hex[:8]}.png"
    data = png(4, 2, (7, 7, 7))
    (server.input_dir / name).write_bytes(data)
    entry = wait_for(lambda: synced(client, name))
    body = s3.get_object(Bucket=bucket, Key=f"{prefix}/blobs/sha256/{entry['sha256']}")["Body"].read()
    assert body == data
    # Templates go to S3 through the same store.
    template = f"OnS3{uuid.uuid4().hex[:8]}"
    t = {"name": template, "workflow": {"nodes": []}, "prompt": {"1": {"class_type": "EmptyImage", "inputs": {}}}}
    assert client.post("/sagemaker/templates", json=t).status_code == 201
    assert client.post("/sagemaker/templates", json=t).json()["error"]["code"] == "template_exists"
    key = f"{prefix}/templates/_on_s3{template[4:]}.json"
    assert s3.head_object(Bucket=bucket, Key=key)["ContentLength"] > 0


# models


def test_models_are_listed_per_folder(client):
    folders = client.get("/sagemaker/models").json()["folders"]
    assert {m["name"] for m in folders["loras"]} >= {"style.safetensors", "shared.safetensors", "sub/deep.safetensors"}
    assert "custom_nodes" not in folders


def test_upload_a_model_from_the_browser_streamed(comfyui, client):
    data = b"\x01\x02" * 300_000
    name = f"up{uuid.uuid4().hex[:6]}.safetensors"
    r = client.put(f"/sagemaker/models/loras/{name}", data=iter([data[:100_000], data[100_000:]]),
                   headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 201 and r.json()["sha256"] == hashlib.sha256(data).hexdigest()
    assert (comfyui.base / "models" / "loras" / name).read_bytes() == data
    exists = client.put(f"/sagemaker/models/loras/{name}", data=b"x")
    assert exists.status_code == 409 and exists.json()["error"]["code"] == "model_exists"
    r = client.put(f"/sagemaker/models/loras/x{name}?sha256={'0' * 64}", data=b"abc")
    assert r.status_code == 400 and "mismatch" in r.json()["error"]["message"]
    assert not (comfyui.base / "models" / "loras" / f"x{name}").exists()
    assert not [p for p in (comfyui.base / "models" / "loras").iterdir() if p.name.endswith(".upload")]
    assert client.delete(f"/sagemaker/models/loras/{name}").status_code == 204
    assert client.delete(f"/sagemaker/models/loras/{name}").status_code == 404


@pytest.mark.parametrize("folder, name, needle", [
    ("nowhere", "a.safetensors", "unknown model folder"),
    ("custom_nodes", "a.safetensors", "unknown model folder"),
    ("loras", "a%2Fb.safetensors", "plain file name"),
    ("loras", "%2E%2E", "plain file name"),
    ("loras", "a%00b.safetensors", "plain file name"),
    ("loras", ".hidden.safetensors", "plain file name"),
    ("loras", "notes.txt", "would not be listed"),
])
def test_bad_model_targets(client, folder, name, needle):
    r = client.put(f"/sagemaker/models/{folder}/{name}", data=b"x")
    assert r.status_code in (400, 404), r.text
    if r.status_code == 400:
        assert needle in r.json()["error"]["message"]


def test_download_by_url_with_progress_and_sha256(comfyui, client):
    data = bytes(range(256)) * 2000
    with FileServer({"/m.safetensors": data}) as server:
        r = client.post("/sagemaker/models/download", json={"folder": "checkpoints", "name": "dl.safetensors",
                                                             "url": f"{server.url}/m.safetensors"})
        assert r.status_code == 400 and r.json()["error"]["code"] == "download_refused"
        assert "loopback" in r.json()["error"]["message"]
        config = comfyui.user_dir / "__sagemaker" / "config.json"
        config.write_text(json.dumps({"download_allowed_hosts": [f"127.0.0.1:{server.port}"]}))
        try:
            r = client.post("/sagemaker/models/download", json={
                "folder": "checkpoints", "name": "dl.safetensors", "url": f"{server.url}/m.safetensors",
                "sha256": hashlib.sha256(data).hexdigest()})
            assert r.status_code == 202, r.text
            task_id = r.json()["task"]["id"]
            task = wait_for(lambda: (j := client.get(f"/sagemaker/tasks/{task_id}").json())["state"] != "running" and j)
            assert task["state"] == "succeeded" and task["bytes_done"] == len(data), task
            assert (comfyui.base / "models" / "checkpoints" / "dl.safetensors").read_bytes() == data
            r = client.post("/sagemaker/models/download", json={
                "folder": "checkpoints", "name": "bad.safetensors", "url": f"{server.url}/m.safetensors",
                "sha256": "1" * 64})
            task = wait_for(lambda: (j := client.get(f"/sagemaker/tasks/{r.json()['task']['id']}").json())["state"]
                           != "running" and j)
            assert task["state"] == "failed" and "sha256 mismatch" in task["error"]["message"]
            assert not (comfyui.base / "models" / "checkpoints" / "bad.safetensors").exists()
        finally:
            config.unlink()
            (comfyui.base / "models" / "checkpoints" / "dl.safetensors").unlink(missing_ok=True)
    r = client.post("/sagemaker/models/download", json={"folder": "checkpoints", "name": "x.safetensors",
                                                         "url": "file:///etc/passwd"})
    assert r.status_code == 400 and "http and https" in r.json()["error"]["message"]
