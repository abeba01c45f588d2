"""Rollback and the history of an environment's versions (core/environments.py, core/environment_history.py),
through the real routes and services on a ComfyUI face without ComfyUI (harness.fake_comfy), a folder store and
FakeEndpoints: the endpoint serves an older version again and nothing is uploaded; the history says who published
each version, when, what changed and which one serves now."""

from __future__ import annotations

import json

import pytest
from comfyui_sagemaker import cli
from comfyui_sagemaker.core.identity import Owner
from comfyui_sagemaker.core.leases import Leases
from comfyui_sagemaker.local.folder_store import FolderStore
from harness.fake_comfy import FakeComfy, publish
from harness.fake_endpoints import FakeEndpoints


def plain() -> dict:
    return {"1": {"class_type": "EmptyImage", "inputs": {"width": 2, "height": 2, "batch_size": 1, "color": 3}},
            "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "x"}}}


class Studio:
    """A designer and an artist on one folder store; every write to the store is recorded."""

    def __init__(self, tmp_path):
        self.store = FolderStore(tmp_path / "store")
        self.writes: list[str] = []
        for method in ("put", "create", "replace"):
            self._record(method)
        self.fake = FakeEndpoints(self.store)
        self.designer = FakeComfy(tmp_path / "designer", self.store, self.fake, name="Dana")
        self.artist = FakeComfy(tmp_path / "artist", self.store, self.fake, role="artist", name="Art")

    def _record(self, method: str) -> None:
        real = getattr(self.store, method)

        def recorded(key, *args, **kw):
            self.writes.append(key)
            return real(key, *args, **kw)

        setattr(self.store, method, recorded)

    def blob_writes(self) -> list[str]:
        return [k for k in self.writes if k.startswith("blobs/")]

    def deploy(self, name: str = "Env1") -> dict:
        r = self.designer.post("/sagemaker/endpoints", json={"environment": name})
        assert r.status_code == 202, r.text
        return self.fake.wait_state(name)

    def rollback(self, name: str = "Env1", **kw):
        return self.designer.post(f"/sagemaker/environments/{name}/rollback", **kw)

    def close(self) -> None:
        self.designer.close()
        self.artist.close()
        self.fake.close()


@pytest.fixture
def studio(tmp_path):
    s = Studio(tmp_path)
    yield s
    s.close()


def three_versions(studio: Studio) -> None:
    publish(studio.store, "Env1", ("T1",), version=1)
    publish(studio.store, "Env1", ("T1", "T2"), version=2,
            models=("loras/style.safetensors", "checkpoints/tiny.safetensors"))
    publish(studio.store, "Env1", ("T2",), version=3, models=("checkpoints/tiny.safetensors",))


def test_rollback_serves_the_version_before_the_serving_one_and_uploads_nothing(studio):
    three_versions(studio)
    assert studio.deploy()["version"] == 3
    studio.writes.clear()
    r = studio.rollback()
    assert r.status_code == 202, r.text
    assert r.json()["version"] == 2
    assert studio.fake.wait_state("Env1")["version"] == 2
    # ?to= and {"to": n} name the version; forward again is a rollback too (to a newer one)
    assert studio.rollback(params={"to": "1"}).status_code == 202
    assert studio.fake.wait_state("Env1")["version"] == 1
    assert studio.rollback(json={"to": 3}).json()["version"] == 3
    assert studio.fake.wait_state("Env1")["version"] == 3
    assert studio.blob_writes() == []  # the versions' blobs are in the store: none written again
    assert not [k for k in studio.writes if "/versions/" in k]  # and no version is published by a rollback


def test_rollback_refusals_say_why(studio):
    three_versions(studio)
    r = studio.rollback()
    assert r.status_code == 409 and r.json()["error"]["code"] == "no_endpoint", r.text
    assert "no endpoint serves environment 'Env1'" in r.json()["error"]["message"]
    studio.deploy()
    r = studio.rollback(params={"to": "7"})
    assert r.status_code == 404 and r.json()["error"]["code"] == "environment_not_found", r.text
    assert "no version 7" in r.json()["error"]["message"]
    r = studio.rollback(params={"to": "3"})
    assert r.status_code == 409 and r.json()["error"]["code"] == "rollback_refused", r.text
    r = studio.rollback(json={"to": 2}, params={"to": "1"})
    assert r.status_code == 400 and "say it once" in r.json()["error"]["message"], r.text
    for bad in ({"to": "2"}, {"to": 0}, {"version": 2}):
        r = studio.rollback(json=bad)
        assert r.status_code == 400 and r.json()["error"]["code"] == "bad_request", (bad, r.text)
    assert studio.rollback(params={"to": "x"}).status_code == 400
    assert studio.rollback("Nope").status_code == 404
    studio.rollback(params={"to": "1"})
    assert studio.fake.wait_state("Env1")["version"] == 1
    r = studio.rollback()
    assert r.status_code == 409 and r.json()["error"]["code"] == "rollback_refused", r.text
    assert "version 1, its oldest" in r.json()["error"]["message"]


def test_only_a_designer_rolls_back(studio):
    three_versions(studio)
    studio.deploy()
    r = studio.artist.post("/sagemaker/environments/Env1/rollback")
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden_for_role", r.text
    assert studio.fake.get("Env1")["version"] == 3


def test_rollback_waits_for_the_environments_lease(studio):
    three_versions(studio)
    studio.deploy()
    elsewhere = Leases(studio.store, Owner("ffffffffffff", "another designer"))
    lease = elsewhere.acquire("Env1", "publishing")
    try:
        r = studio.rollback()
        assert r.status_code == 409 and r.json()["error"]["code"] == "deploy_in_progress", r.text
        assert "another designer" in r.json()["error"]["message"]
    finally:
        elsewhere.release(lease)
    assert studio.fake.get("Env1")["version"] == 3
    assert studio.rollback().status_code == 202


def test_the_history_says_what_changed_and_which_version_serves(studio):
    three_versions(studio)
    r = studio.artist.get("/sagemaker/environments/Env1/versions")
    assert r.status_code == 200, r.text
    history = r.json()
    assert history["name"] == "Env1" and history["serving"] is None
    assert [v["version"] for v in history["versions"]] == [3, 2, 1]
    v3, v2, v1 = history["versions"]
    assert v1["changes"]["templates"] == {"added": ["T1"], "removed": []} and v1["compared_with"] is None
    assert v2["changes"]["models"]["added"] == ["checkpoints/tiny.safetensors"]
    assert v2["changes"]["templates"] == {"added": ["T2"], "removed": []}
    assert v3["changes"]["models"] == {"added": [], "removed": ["loras/style.safetensors"], "changed": []}
    assert v3["changes"]["templates"] == {"added": [], "removed": ["T1"]} and v3["compared_with"] == 2
    assert v3["changes"]["packs"] == {"added": [], "removed": [], "changed": []}
    assert all(v["created_at"] for v in history["versions"])
    studio.deploy()
    studio.rollback()
    studio.fake.wait_state("Env1")
    history = studio.artist.get("/sagemaker/environments/Env1/versions").json()
    assert history["serving"] == 2 and [v["serving"] for v in history["versions"]] == [False, True, False]
    assert studio.artist.get("/sagemaker/environments/Nope/versions").status_code == 404


def test_a_publish_records_who_published_the_version(studio):
    studio.designer.template("T1", plain())
    r = studio.designer.post("/sagemaker/environments", json={"name": "Env2", "templates": ["T1"]})
    assert r.status_code == 202, r.text
    svc = studio.designer.services.environments
    assert svc.tasks.wait(r.json()["task"]["id"], 120).state == "succeeded"
    [version] = studio.designer.get("/sagemaker/environments/Env2/versions").json()["versions"]
    assert version["published_by"]["name"] == "Dana"
    assert version["published_by"]["instance"] == studio.designer.services.owner.instance


def test_the_openapi_document_lists_rollback_and_versions(studio):
    paths = studio.designer.get("/sagemaker/openapi.json").json()["paths"]
    rollback = paths["/sagemaker/environments/{name}/rollback"]["post"]
    assert [p["name"] for p in rollback["parameters"] if p["in"] == "query"] == ["to"]
    assert rollback["requestBody"]["required"] is False  # an empty POST takes the default
    ref = rollback["requestBody"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]
    components = studio.designer.get("/sagemaker/openapi.json").json()["components"]["schemas"]
    assert list(components[ref]["properties"]) == ["to"]
    assert "get" in paths["/sagemaker/environments/{name}/versions"]


def test_the_cli_rolls_back_through_a_running_comfyui(studio, capsys):
    three_versions(studio)
    studio.deploy()
    url = studio.designer.serve().url
    assert cli.main(["rollback", "Env1", "--url", url]) == 0
    assert "goes back to version 2" in capsys.readouterr().out
    assert studio.fake.wait_state("Env1")["version"] == 2
    assert cli.main(["rollback", "Env1", "--to", "1", "--url", url, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["version"] == 1
    studio.fake.wait_state("Env1")
    assert cli.main(["rollback", "Env1", "--to", "9", "--url", url]) == 1
    assert "error (environment_not_found)" in capsys.readouterr().err
    assert cli.main(["versions", "Env1", "--url", url]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("v3: ") and "-loras/style.safetensors" in out[0] and "-T1" in out[0]
    assert out[2].startswith("v1 (serving): ")
