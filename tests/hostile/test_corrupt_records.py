"""One corrupt file in the store breaks only itself, through the HTTP routes of the session's real ComfyUI:
a corrupt template index never fails a publish nor hides a template, one corrupt execution record never
turns a list into a 500 for everyone, a corrupt manifest answers `environment_corrupt` naming its
environment and version, for that environment only, and so do runs on it. What is skipped is said in
the list answer's `skipped`."""

from __future__ import annotations

import json

import pytest
from comfyui_sagemaker.core.execution_records import ExecutionRecords
from comfyui_sagemaker.core.executions import new_id
from comfyui_sagemaker.local.folder_store import FolderStore
from harness.envs import unique

pytestmark = pytest.mark.comfyui

PROMPT = {"1": {"class_type": "EmptyImage", "inputs": {"width": 2, "height": 2, "batch_size": 1, "color": 3}},
          "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "corrupt"}}}


@pytest.fixture
def api(comfyui):
    return comfyui.client(), FolderStore(comfyui.user_dir / "__sagemaker" / "store")


def error(r, status: int, code: str) -> dict:
    assert r.status_code == status, (r.status_code, r.text)
    body = r.json()["error"]
    assert body["code"] == code, body
    return body


def test_a_corrupt_template_index_never_fails_a_publish_nor_hides_a_template(api):
    client, store = api
    before = unique("T")
    assert client.post("/sagemaker/templates", json={"name": before, "workflow": PROMPT, "prompt": PROMPT}) \
        .status_code == 201
    store.put("templates/index.json", b'{"entries": {"x": ')  # cut short (a full disk, a killed writer)
    name = unique("T")
    r = client.post("/sagemaker/templates", json={"name": name, "workflow": PROMPT, "prompt": PROMPT})
    assert r.status_code == 201, r.text  # the publish completes
    listed = client.get("/sagemaker/templates")
    assert listed.status_code == 200 and {before, name} <= {t["name"] for t in listed.json()["templates"]}
    assert listed.json()["skipped"] == []
    json.loads(store.get("templates/index.json").data)  # rebuilt and written back
    error(client.post("/sagemaker/templates", json={"name": name, "workflow": PROMPT, "prompt": PROMPT}), 409,
          "template_exists")  # a retry is told the truth: it is there


def test_one_corrupt_execution_record_is_skipped_in_everyones_list(api):
    client, store = api
    records = ExecutionRecords(store)
    record = {"id": new_id("corrupt00001"), "prompt_id": "p", "template": None, "environment": "E1",
              "endpoint": "E1", "owner": {"instance": "corrupt00001", "name": "a broken box"}, "state": "succeeded",
              "created_at": "2026-01-01T00:00:00.000Z", "outputs": {}, "error": None}
    records.create(record)
    key = records.key(record["id"])
    store.put(key, b'{"id": "' + record["id"].encode() + b'", "state": ')
    try:
        for owner in ("all", "corrupt00001"):
            r = client.get("/sagemaker/executions", params={"owner": owner, "limit": 50})
            assert r.status_code == 200, r.text
            assert record["id"] not in {e["id"] for e in r.json()["executions"]}
            assert [s["key"] for s in r.json()["skipped"]] == [key]
        body = error(client.get(f"/sagemaker/executions/{record['id']}"), 502, "execution_corrupt")
        assert record["id"] in body["message"]
    finally:
        records.remove(record)


def test_a_corrupt_manifest_fails_its_environment_alone_naming_it(api):
    client, store = api
    name, fine = unique("E"), unique("E")
    for env in (name, fine):
        store.create(f"environments/{env.lower()}/claim.json", json.dumps({"name": env}).encode())
    store.create(f"environments/{name.lower()}/versions/v000001.json", b'{"name": "' + name.encode() + b'", "vers')
    store.create(f"environments/{fine.lower()}/versions/v000001.json", json.dumps({
        "name": fine, "version": 1, "size": 0, "created_at": "2026-01-01T00:00:00Z", "custom_nodes": [],
        "models": [], "templates": [], "endpoint": None}).encode())
    try:
        for r in (client.get(f"/sagemaker/environments/{name}"),
                  client.post("/sagemaker/executions", json={"prompt": PROMPT, "environment": name}),
                  client.post(f"/sagemaker/v2/{name}/api/v2/jobs", json={"workflow": PROMPT})):
            body = error(r, 502, "environment_corrupt")
            assert name in body["message"] and "version 1" in body["message"]
        listed = client.get("/sagemaker/environments")
        assert listed.status_code == 200, listed.text
        rows = {e["name"]: e for e in listed.json()["environments"]}
        assert "version 1" in rows[name.lower()]["problem"]
        assert f"environments/{name.lower()}/versions/v000001.json" in {s["key"] for s in listed.json()["skipped"]}
        # Every other environment still answers.
        assert client.get(f"/sagemaker/environments/{fine}").json()["name"] == fine
        assert rows[fine]["version"] == 1 and "problem" not in rows[fine]
    finally:
        for env in (name, fine):
            assert client.delete(f"/sagemaker/environments/{env}?force=true").status_code == 204
