"""Pinning a template to an environment version (core/pinning.py, core/templates.py): through the template
routes in-process (harness.fake_comfy) on FakeEndpoints, on the folder store. A pinned template runs while its
endpoint serves its version and is refused (409 endpoint_version_mismatch, with what to do) when it serves
another; an unpinned one follows what the endpoint serves; every face that runs a template obeys the pin; the
pin is in the template's record, its summary and the template index; the route's schema lists it."""

from __future__ import annotations

import json

import httpx
import pytest
from comfyui_sagemaker.core.environments import manifest_key
from comfyui_sagemaker.core.templates import INDEX_KEY, TemplateService
from comfyui_sagemaker.local.folder_store import FolderStore
from comfyui_sagemaker.server_routes import ROUTE_TABLES, openapi
from harness.fake_comfy import FakeComfy, publish
from harness.fake_endpoints import FakeEndpoints
from harness.images import png
from harness.prompts import scale_prompt

ENV = "Env1"
MISMATCH = ("template 'T1' is pinned to version 1 of Env1; its endpoint serves version 2: roll back, or unpin "
            "the template")


def prompt(prefix: str = "pin") -> dict:
    return scale_prompt("ex.png", 0.5, prefix)


class Studio:
    """Env1 published twice (v1, v2), its endpoint serving v1; T1 and T2 bound to it, unpinned."""

    def __init__(self, tmp_path):
        self.store = FolderStore(tmp_path / "store")
        self.fake = FakeEndpoints(self.store)
        self.comfy = FakeComfy(tmp_path / "designer", self.store, self.fake)
        (self.comfy.base / "input" / "ex.png").write_bytes(png(4, 4, (200, 100, 50)))
        self.v1 = publish(self.store, ENV, ("T1", "T2"), version=1)
        self.v2 = publish(self.store, ENV, ("T1", "T2"), version=2)
        for name in ("T1", "T2"):
            self.comfy.template(name, prompt(), ENV)
        self.serve(self.v1)

    def serve(self, manifest: dict) -> None:
        self.fake.deploy(manifest)
        assert self.fake.wait_state(ENV)["version"] == manifest["version"]

    def pin(self, name: str, version: int | None) -> httpx.Response:
        return httpx.put(f"{self.comfy.serve().url}/sagemaker/templates/{name}",
                         json={"environment_version": version}, timeout=60)

    def run(self, name: str) -> httpx.Response:
        return httpx.post(f"{self.comfy.serve().url}/sagemaker/executions",
                          json={"prompt": prompt(), "template": name}, timeout=60)

    def ran(self, name: str) -> dict:
        r = self.run(name)
        assert r.status_code == 202, r.text
        return self.comfy.wait(r.json()["execution_id"])

    def close(self) -> None:
        self.comfy.close()
        self.fake.close()


@pytest.fixture
def studio(tmp_path):
    s = Studio(tmp_path)
    yield s
    s.close()


def error(r: httpx.Response, status: int, code: str) -> str:
    assert r.status_code == status, r.text
    assert r.json()["error"]["code"] == code, r.text
    return r.json()["error"]["message"]


def test_a_pinned_template_runs_on_its_version_and_is_refused_on_another_and_an_unpinned_one_follows(studio):
    s = studio
    r = s.pin("T1", 1)
    assert r.status_code == 200, r.text
    assert r.json()["environment_version"] == 1 and r.json()["version"] == 3  # published, bound, pinned
    record = s.ran("T1")
    assert (record["state"], record["environment_version"]) == ("succeeded", 1)

    s.serve(s.v2)  # a new version reaches the endpoint
    invoked = len(s.fake.invocations)
    assert error(s.run("T1"), 409, "endpoint_version_mismatch") == MISMATCH
    assert len(s.fake.invocations) == invoked, "refused before anything reached the endpoint"
    record = s.ran("T2")  # unpinned: runs on what the endpoint serves
    assert (record["state"], record["environment_version"]) == ("succeeded", 2)

    # Unpinned, T1 follows the newest again.
    r = s.pin("T1", None)
    assert r.status_code == 200 and r.json()["environment_version"] is None, r.text
    record = s.ran("T1")
    assert (record["state"], record["environment_version"]) == ("succeeded", 2)
    s.pin("T1", 2)
    assert s.ran("T1")["environment_version"] == 2


def test_the_template_api_and_the_v2_face_obey_the_pin(studio):
    s = studio
    s.pin("T1", 1)
    s.serve(s.v2)
    url = s.comfy.serve().url
    # POST /templates/{name}/executions: the same refusal.
    r = httpx.post(f"{url}/sagemaker/templates/T1/executions", json={"inputs": {}}, timeout=60)
    assert error(r, 409, "endpoint_version_mismatch") == MISMATCH
    # A Comfy API v2 job of the template: its own face, the same service, the same code.
    r = httpx.post(f"{url}/sagemaker/v2/{ENV}/api/v2/jobs", json={"template": "T1", "inputs": {}}, timeout=60)
    assert error(r, 409, "endpoint_version_mismatch") == MISMATCH
    assert not s.fake.invocations


def test_pinning_answers_and_refusals(studio):
    s = studio
    message = error(s.pin("T1", 7), 404, "environment_not_found")
    assert "has no version 7" in message and "1, 2" in message
    for bad in (0, -1, "1", 1.5, True, {"v": 1}):
        assert "environment_version" in error(s.pin("T1", bad), 400, "bad_request"), bad
    assert s.comfy.services.templates.get("T1").environment_version is None, "nothing refused was written"
    # Pinning a template bound to no environment says to bind it first.
    s.comfy.template("Loose", prompt())
    assert "bind it" in error(s.pin("Loose", 1), 400, "bad_request")
    # A stale `version` is the usual 409 conflict.
    r = httpx.put(f"{s.comfy.serve().url}/sagemaker/templates/T1", json={"environment_version": 1, "version": 1},
                  timeout=60)
    error(r, 409, "conflict")


def test_rebinding_elsewhere_unpins_and_the_same_request_may_pin_again(studio):
    s = studio
    publish(s.store, "Env2", version=1)
    s.pin("T1", 2)
    url = f"{s.comfy.serve().url}/sagemaker/templates/T1"
    same = httpx.put(url, json={"environment": "ENV1"}, timeout=60).json()  # environments ignore case
    assert same["environment_version"] == 2
    moved = httpx.put(url, json={"environment": "Env2"}, timeout=60).json()
    assert (moved["environment"], moved["environment_version"]) == ("Env2", None)
    both = httpx.put(url, json={"environment": ENV, "environment_version": 1}, timeout=60).json()
    assert (both["environment"], both["environment_version"]) == (ENV, 1)
    unbound = httpx.put(url, json={"environment": None}, timeout=60).json()
    assert (unbound["environment"], unbound["environment_version"]) == (None, None)


def test_a_pin_whose_version_was_deleted_is_refused_saying_so(studio):
    s = studio
    s.pin("T1", 2)
    s.store.delete(manifest_key(ENV, 2))  # gone since (an environment deleted by force and published again)
    message = error(s.run("T1"), 404, "environment_not_found")
    assert "pinned to version 2 of Env1, which no longer exists" in message and "unpin" in message
    # Unpinning (or pinning a published version) is the way out.
    s.pin("T1", None)
    assert s.ran("T1")["environment_version"] == 1


def test_the_record_the_summary_and_the_index_carry_the_pin(studio):
    s = studio
    s.pin("T1", 1)
    stored = json.loads(s.store.get("templates/_t1.json").data)
    assert stored["environment_version"] == 1
    index = json.loads(s.store.get(INDEX_KEY).data)
    assert index["entries"]["_t1"]["environment_version"] == 1
    assert index["entries"]["_t2"]["environment_version"] is None
    listed = {t["name"]: t for t in httpx.get(f"{s.comfy.serve().url}/sagemaker/templates", timeout=60)
              .json()["templates"]}
    assert (listed["T1"]["environment_version"], listed["T2"]["environment_version"]) == (1, None)
    # Rebuilt from the templates themselves, the index keeps it.
    s.store.delete(INDEX_KEY)
    fresh = TemplateService(s.store, lambda name: True)
    assert {t["name"]: t["environment_version"] for t in fresh.list()} == {"T1": 1, "T2": None}


def test_an_index_and_templates_written_before_pins_read_as_following(tmp_path):
    store = FolderStore(tmp_path)
    svc = TemplateService(store, lambda name: True)
    svc.create("Old", {"nodes": []}, prompt(), environment=ENV)
    record = json.loads(store.get("templates/_old.json").data)
    del record["environment_version"]
    store.put("templates/_old.json", json.dumps(record).encode())
    index = json.loads(store.get(INDEX_KEY).data)
    del index["entries"]["_old"]["environment_version"]
    store.put(INDEX_KEY, json.dumps(index).encode())
    assert svc.list()[0]["environment_version"] is None
    assert svc.get("Old").environment_version is None


def test_the_openapi_document_lists_the_pin():
    doc = openapi.document(ROUTE_TABLES)
    body = doc["paths"]["/sagemaker/templates/{name}"]["put"]["requestBody"]["content"]["application/json"]["schema"]

    def resolve(schema: dict) -> dict:
        ref = schema.get("$ref")
        return doc["components"]["schemas"][ref.rsplit("/", 1)[1]] if ref else schema

    pin = resolve(body)["properties"]["environment_version"]
    assert pin["type"] == ["integer", "null"] and "endpoint_version_mismatch" in pin["description"]
    answer = doc["paths"]["/sagemaker/templates/{name}"]["put"]["responses"]["2XX"]["content"]["application/json"]
    assert "environment_version" in resolve(answer["schema"])["properties"]
