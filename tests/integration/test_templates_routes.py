"""Template routes on the real ComfyUI (folder store)."""

import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

pytestmark = pytest.mark.comfyui

WORKFLOW = {"nodes": [{"id": 1, "type": "EmptyImage"}], "links": [], "extra": {}}
PROMPT = {"1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}}}
BAD_NAMES = ["", "a" * 21, "a b", "a_b", "a-b", "../x", "a/b", "a\\b", "a\0b", "é", "中文", "ａ", " ab", "ab ", "ab\n"]


def unique(prefix="T"):
    return prefix + uuid.uuid4().hex[:10]


def publish(client, name, **extra):
    return client.post("/sagemaker/templates", json={"name": name, "workflow": WORKFLOW, "prompt": PROMPT, **extra})


def error(r, status, code):
    assert r.status_code == status, (r.status_code, r.text)
    body = r.json()
    assert body["error"]["code"] == code and body["error"]["message"], body
    return body["error"]["message"]


def test_publish_get_list_put_delete(client):
    name = unique()
    r = publish(client, name)
    assert r.status_code == 201
    t = r.json()
    assert (t["name"], t["version"], t["environment"], t["prompt"]) == (name, 1, None, PROMPT)
    listed = {x["name"]: x for x in client.get("/sagemaker/templates").json()["templates"]}
    summary = ("name", "environment", "environment_version", "version", "created_at", "updated_at")
    assert listed[name] == {**{k: t[k] for k in summary}, "proof": False}  # no proof yet (core/proofs.py)
    assert t["environment_version"] is None and t["proof"] is None  # follows the newest
    assert client.get(f"/sagemaker/templates/{name}").json()["workflow"] == WORKFLOW
    r = client.put(f"/sagemaker/templates/{name}", json={"workflow": WORKFLOW, "prompt": PROMPT, "version": 1})
    assert r.status_code == 200 and r.json()["version"] == 2
    assert client.delete(f"/sagemaker/templates/{name}").status_code == 204
    error(client.get(f"/sagemaker/templates/{name}"), 404, "not_found")


@pytest.mark.parametrize("name", BAD_NAMES, ids=repr)
def test_bad_names_are_400(client, name):
    error(publish(client, name), 400, "invalid_name")


def test_twenty_characters_is_fine(client):
    assert publish(client, unique("T")[:1] + "x" * 19).status_code == 201


def test_duplicate_is_409_and_case_variants_are_distinct(client):
    name = unique("Abc")
    assert publish(client, name).status_code == 201
    error(publish(client, name), 409, "template_exists")
    assert publish(client, name.lower()).status_code == 201
    assert publish(client, name.upper()).status_code == 201


@pytest.mark.parametrize("body, status, code", [
    (b"not json", 400, "bad_request"),
    (b"[]", 400, "bad_request"),
    (b'{"name": "X1", "workflow": {}}', 400, "bad_request"),          # prompt missing
    (b'{"workflow": {}, "prompt": {}}', 400, "bad_request"),          # name missing
    (b'{"name": "X1", "workflow": [], "prompt": {"1": {"class_type": "A"}}}', 400, "bad_request"),
    (b'{"name": "X1", "workflow": {}, "prompt": {"1": {"class_type": "A"}}, "surprise": 1}', 400, "bad_request"),
])
def test_bad_bodies(client, body, status, code):
    error(client.post("/sagemaker/templates", data=body, headers={"Content-Type": "application/json"}), status, code)


def test_body_over_limit_is_413_saying_the_limit(client):
    big = {"name": unique(), "workflow": {"blob": "x" * (16 * 1024 * 1024)}, "prompt": PROMPT}
    message = error(client.post("/sagemaker/templates", json=big), 413, "payload_too_large")
    assert "16 MiB" in message


def test_unknown_environment_is_404(client):
    error(publish(client, unique(), environment="Nowhere"), 404, "environment_not_found")


def test_missing_template_put_delete_404(client):
    error(client.put("/sagemaker/templates/Missing1", json={"environment": None}), 404, "not_found")
    error(client.delete("/sagemaker/templates/Missing1"), 404, "not_found")
    error(client.get("/sagemaker/templates/bad_name"), 400, "invalid_name")


def test_two_concurrent_updates_one_conflict(client):
    name = unique()
    publish(client, name)
    body = {"workflow": WORKFLOW, "prompt": PROMPT, "version": 1}
    with ThreadPoolExecutor(2) as pool:
        statuses = sorted(pool.map(lambda _: client.put(f"/sagemaker/templates/{name}", json=body).status_code,
                                   range(2)))
    assert statuses == [200, 409]
    assert client.get(f"/sagemaker/templates/{name}").json()["version"] == 2


def test_cross_origin_publish_is_refused(client):
    r = client.post("/sagemaker/templates", json={"name": unique(), "workflow": WORKFLOW, "prompt": PROMPT},
                    headers={"Origin": "http://evil.example"})
    error(r, 403, "forbidden")


def test_a_name_differing_only_in_case_from_a_template_is_flagged(client):
    base = f"Slow{uuid.uuid4().hex[:6]}"
    prompt = {"1": {"class_type": "EmptyImage", "inputs": {"width": 2, "height": 2, "batch_size": 1, "color": 0}}}
    assert client.post("/sagemaker/templates", json={"name": base, "workflow": prompt, "prompt": prompt}).ok
    r = client.post("/sagemaker/names/check", json={"kind": "template", "name": base.lower()})
    assert r.json() == {"valid": True, "name": base.lower(), "exists": False, "similar": [base]}
    same = client.post("/sagemaker/names/check", json={"kind": "template", "name": base}).json()
    assert same["exists"] is True and same["similar"] == []
