"""Proof runs (core/proofs.py): the rule that compares a run's outputs with a template's proof (count, kind,
format, size, the look within a tolerance), the values a run gave its parameters, and the gate on a redeploy,
through the routes in-process (harness.fake_comfy) on FakeEndpoints and the folder store: a designer makes a
succeeded run the proof; a new version whose proofs pass takes the traffic, one whose proof fails does not (the
old version serves on, the endpoint names the template and its node's error), a rollback is not held to them;
the endpoint and the environment's history carry the results."""

from __future__ import annotations

import io
import json

import httpx
import pytest
from comfyui_sagemaker.core import proofs
from comfyui_sagemaker.core.templates import Template, key_of
from comfyui_sagemaker.local.folder_store import FolderStore
from harness.fake_comfy import FakeComfy, publish
from harness.fake_endpoints import FakeEndpoints
from harness.images import png
from harness.prompts import scale_prompt

ENV = "Env1"


def image(width: int, height: int, fmt: str = "PNG", stripes: int = 0) -> bytes:
    """A grey picture, with `stripes` dark vertical stripes (its look) if any."""
    from PIL import Image, ImageDraw

    picture = Image.new("RGB", (width, height), (128, 128, 128))
    draw = ImageDraw.Draw(picture)
    for n in range(stripes):
        x = (2 * n + 1) * width // (2 * stripes + 1)
        draw.rectangle([x, 0, x + width // (2 * stripes + 1) - 1, height], fill=(0, 0, 0))
    buf = io.BytesIO()
    picture.save(buf, format=fmt)
    return buf.getvalue()


def outputs_of(files: dict[str, bytes], node: str = "9", kind: str = "images") -> tuple[dict, dict[str, bytes]]:
    """(a run's outputs with these files, its blobs by sha256)."""
    import hashlib

    blobs = {hashlib.sha256(data).hexdigest(): data for data in files.values()}
    items = [{"filename": name, "subfolder": "", "type": "output", "sha256": hashlib.sha256(data).hexdigest()}
             for name, data in files.items()]
    return {node: {kind: items}}, blobs


def proof_of(files: dict[str, bytes], tolerance: int | None = 10) -> tuple[dict, dict[str, bytes]]:
    outputs, blobs = outputs_of(files)
    return {"outputs": proofs.expected(outputs, blobs.__getitem__, tolerance is not None),
            "hash_tolerance": tolerance}, blobs


def problems(proof: dict, files: dict[str, bytes], node: str = "9", kind: str = "images") -> list[str]:
    outputs, blobs = outputs_of(files, node, kind)
    return proofs.compare(proof, outputs, blobs.__getitem__)  # type: ignore[arg-type]


def test_a_run_like_its_proof_passes_and_each_difference_is_named():
    proof, _ = proof_of({"a.png": image(64, 32, stripes=2), "b.png": image(64, 32)})
    assert proof["outputs"]["9"]["kind"] == "images" and [f["width"] for f in proof["outputs"]["9"]["files"]] == \
        [64, 64] and proof["outputs"]["9"]["files"][0]["format"] == "PNG"
    assert problems(proof, {"x.png": image(64, 32, stripes=2), "y.png": image(64, 32)}) == []
    assert problems(proof, {"x.png": image(64, 32, stripes=2)}) == \
        ["output node 9 gave 1 images, the proof expects 2"]
    assert problems(proof, {"x.png": image(64, 32, stripes=2), "y.png": image(32, 32)}) == \
        ["output node 9: file 2 is 32x32, the proof expects 64x32"]
    assert problems(proof, {"x.jpg": image(64, 32, "JPEG", stripes=2), "y.png": image(64, 32)}) == \
        ["output node 9: file 1 is JPEG, the proof expects PNG"]
    assert problems(proof, {"x.png": image(64, 32)}, node="7") == ["output node 9 gave no images (the proof expects 2)"]
    assert problems(proof, {"x.png": image(64, 32)}, kind="gifs") == \
        ["output node 9 gave no images (the proof expects 2)"]


def test_the_look_is_compared_within_the_tolerance_in_bits_and_only_when_asked():
    striped = image(90, 80, stripes=3)
    proof, _ = proof_of({"a.png": striped}, tolerance=0)
    assert problems(proof, {"same.png": image(90, 80, "PNG", stripes=3)}) == []
    plain = proofs.file_facts(image(90, 80), "p.png", True)["hash"]
    apart = proofs.bits_apart(str(plain), str(proof["outputs"]["9"]["files"][0]["hash"]))
    assert apart > 0
    assert problems(proof, {"plain.png": image(90, 80)}) == \
        [f"output node 9: file 1 looks different: {apart} of 64 bits of its hash differ (tolerance 0)"]
    assert problems({**proof, "hash_tolerance": apart}, {"plain.png": image(90, 80)}) == []
    unhashed, _ = proof_of({"a.png": striped}, tolerance=None)
    assert "hash" not in unhashed["outputs"]["9"]["files"][0]
    assert problems(unhashed, {"plain.png": image(90, 80)}) == []


def parameterised() -> dict:
    """LoadImage -> SMTestScale(factor: a parameter) -> SaveImage."""
    p = scale_prompt("ex.png", 0.5, "proof")
    p["5"] = {"class_type": "SageMakerParamFloat", "inputs": {"name": "factor", "description": "", "default": 0.5,
                                                             "min": 0.0, "max": 1.0, "step": 0.01}}
    p["2"]["inputs"]["factor"] = ["5", 0]
    return p


def test_the_values_a_run_gave_its_parameters_are_read_on_their_nodes_or_where_the_lowered_prompt_put_them():
    from comfyui_sagemaker.core import parameters

    prompt = parameterised()
    t = Template("T", prompt, prompt, ENV, 1, "", "", parameters.extract(prompt))
    ran = json.loads(json.dumps(prompt))
    ran["5"]["inputs"]["default"] = 0.25
    assert proofs.values_in(t, ran) == {"factor": 0.25}
    assert proofs.values_in(t, parameters.lower(ran)) == {"factor": 0.25}


class Studio:
    """Env1 v1 and v2 published; T bound to it with a parameter; its endpoint serving v1; the designer's routes."""

    def __init__(self, tmp_path):
        self.store = FolderStore(tmp_path / "store")
        self.fake = FakeEndpoints(self.store)
        self.comfy = FakeComfy(tmp_path / "designer", self.store, self.fake, name="Dana")
        self.fake.prover = self.comfy.services.prover
        (self.comfy.base / "input" / "ex.png").write_bytes(png(4, 4, (200, 100, 50)))
        self.v1 = publish(self.store, ENV, ("T",), version=1)
        self.v2 = publish(self.store, ENV, ("T",), version=2)
        self.comfy.template("T", parameterised(), ENV)
        self.fake.deploy(self.v1)
        assert self.fake.wait_state(ENV)["version"] == 1

    def url(self, path: str) -> str:
        return self.comfy.serve().url + path

    def run(self, name: str = "T", **inputs) -> dict:
        r = httpx.post(self.url(f"/sagemaker/templates/{name}/executions"), json={"inputs": inputs, "wait": 60},
                       timeout=90)
        assert r.status_code == 200, r.text
        return r.json()["execution"]

    def use(self, execution_id: str, name: str = "T", **body) -> httpx.Response:
        return httpx.post(self.url(f"/sagemaker/templates/{name}/proof"),
                          json={"execution_id": execution_id, **body}, timeout=60)

    def redeploy(self, manifest: dict) -> dict:
        self.fake.deploy(manifest)
        return self.fake.wait_state(ENV)

    def close(self) -> None:
        self.comfy.close()
        self.fake.close()


@pytest.fixture
def studio(tmp_path):
    s = Studio(tmp_path)
    yield s
    s.close()


def test_a_succeeded_run_becomes_the_proof_and_a_version_that_passes_it_takes_the_traffic(studio):
    run = studio.run(factor=0.25)
    assert run["state"] == "succeeded" and run["parameters"] == {"factor": 0.25}, run
    r = studio.use(run["id"])
    assert r.status_code == 200, r.text
    proof = r.json()["proof"]
    assert proof["execution"] == run["id"] and proof["values"] == {"factor": 0.25} and proof["recorded_by"] == "Dana"
    assert proof["environment_version"] == 1 and "ex.png" in proof["inputs"] and proof["hash_tolerance"] == 10
    assert proof["outputs"]["3"]["kind"] == "images" and proof["outputs"]["3"]["files"][0]["width"] == 2
    listed = httpx.get(studio.url("/sagemaker/templates"), timeout=60).json()["templates"]
    assert [t["proof"] for t in listed] == [True]
    sent = len(studio.fake.invocations)
    endpoint = studio.redeploy(studio.v2)
    assert endpoint["state"] == "InService" and endpoint["version"] == 2 and endpoint["reason"] is None, endpoint
    assert endpoint["proofs"]["passed"] and endpoint["proofs"]["version"] == 2, endpoint
    assert endpoint["proofs"]["results"] == [{"template": "T", "passed": True, "problems": []}]
    assert len(studio.fake.invocations) == sent  # the proof ran on the new worker, not the serving one
    history = httpx.get(studio.url(f"/sagemaker/environments/{ENV}/versions"), timeout=60).json()
    assert history["versions"][0]["proofs"]["passed"] and history["versions"][1]["proofs"] is None
    r = httpx.delete(studio.url(f"/sagemaker/environments/{ENV}?force=true"), timeout=60)
    assert r.status_code == 204, r.text
    assert studio.store.list(proofs.proofs_folder(ENV)) == []  # published again under this name: proven afresh


def test_a_version_whose_proof_fails_is_not_switched_to_and_says_which_template_and_node(studio):
    assert studio.use(studio.run()["id"]).status_code == 200
    studio.fake.lacking[2] = {"SMTestScale"}  # v2's ComfyUI lacks the node the template needs
    endpoint = studio.redeploy(studio.v2)
    assert endpoint["state"] == "InService" and endpoint["version"] == 1, endpoint
    assert endpoint["reason"].startswith("version 2 did not deploy (its proof failed (template T: node 2 "
                                         "(SMTestScale): prompt_invalid: Cannot execute because node SMTestScale "
                                         "does not exist."), endpoint["reason"]
    assert endpoint["reason"].endswith("; still serving version 1"), endpoint["reason"]
    failed = endpoint["proof_failed"]
    assert not failed["passed"] and failed["version"] == 2 and failed["results"][0]["node_type"] == "SMTestScale"
    view = httpx.get(studio.url(f"/sagemaker/endpoints/{ENV}"), timeout=60).json()
    assert view["proof_failed"] == failed and view["version"] == 1
    history = httpx.get(studio.url(f"/sagemaker/environments/{ENV}/versions"), timeout=60).json()
    assert history["serving"] == 1 and history["versions"][0]["proofs"] == failed


def test_outputs_unlike_the_proof_stop_the_switch_and_a_rollback_is_not_held_to_proofs(studio):
    assert studio.use(studio.run()["id"]).status_code == 200
    raw = json.loads(studio.store.get(key_of("T")).data)
    raw["proof"]["outputs"]["3"]["files"][0].update(width=4, height=4)  # what another version of it made
    studio.store.put(key_of("T"), json.dumps(raw).encode())
    endpoint = studio.redeploy(studio.v2)
    assert endpoint["version"] == 1 and "template T: output node 3: file 1 is 2x2, the proof expects 4x4" in \
        endpoint["reason"], endpoint
    raw["proof"]["outputs"]["3"]["files"][0].update(width=2, height=2)
    studio.store.put(key_of("T"), json.dumps(raw).encode())
    endpoint = studio.redeploy(studio.v2)
    assert endpoint["version"] == 2 and endpoint["proof_failed"] is None and endpoint["proofs"]["passed"]
    studio.fake.lacking[1] = {"SMTestScale"}  # v1 would fail it now: a rollback goes back regardless
    r = httpx.post(studio.url(f"/sagemaker/environments/{ENV}/rollback"), json={}, timeout=60)
    assert r.status_code == 202, r.text
    endpoint = studio.fake.wait_state(ENV)
    assert endpoint["version"] == 1 and endpoint["reason"] is None and endpoint["proofs"] is None, endpoint


def test_only_a_designer_makes_a_succeeded_run_of_the_template_its_proof(studio, tmp_path):
    prompt = scale_prompt("ex.png", 0.5, "other")
    prompt["2"]["class_type"] = "SMTestFail"
    prompt["2"]["inputs"] = {"image": ["1", 0], "message": "boom"}
    studio.comfy.template("Bad", prompt, ENV)
    failed = httpx.post(studio.url("/sagemaker/templates/Bad/executions"), json={"wait": 60}, timeout=90).json()
    assert failed["execution"]["state"] == "failed"
    r = studio.use(failed["execution_id"], "Bad")
    assert r.status_code == 409 and "only a run that succeeded" in r.json()["error"]["message"], r.text
    good = studio.run()["id"]
    r = studio.use(good, "Bad")
    assert r.status_code == 400 and r.json()["error"]["message"] == f"run {good} is not a run of template 'Bad'"
    r = studio.use(good, hash_tolerance=65)
    assert r.status_code == 400 and "hash_tolerance" in r.text
    artist = FakeComfy(tmp_path / "artist", studio.store, studio.fake, role="artist", name="Art")
    try:
        r = httpx.post(f"{artist.serve().url}/sagemaker/templates/T/proof", json={"execution_id": good}, timeout=60)
        assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden_for_role", r.text
    finally:
        artist.close()
    assert studio.use(good, hash_tolerance=None).json()["proof"]["hash_tolerance"] is None
    r = httpx.delete(studio.url("/sagemaker/templates/T/proof"), timeout=60)
    assert r.status_code == 200 and r.json()["proof"] is None


def test_the_clis_history_says_each_versions_proofs():
    from comfyui_sagemaker.cli_environments import history_lines

    base = {"created_at": "t", "published_by": {"name": "Dana"}, "serving": False,
            "changes": {"packs": {}, "models": {}, "templates": {}}}
    failed = {"results": [{"template": "T", "passed": False, "problems": ["node 2 (X): boom"]}]}
    passed = {"results": [{"template": "T", "passed": True, "problems": []}]}
    lines = history_lines({"versions": [{**base, "version": 3, "proofs": failed},
                                        {**base, "version": 2, "proofs": passed}, {**base, "version": 1}]})
    same = "t by Dana; no pack, model or template changed"
    assert lines == [f"v3: {same}; proof failed: T (node 2 (X): boom)", f"v2: {same}; proofs passed", f"v1: {same}"]


def test_a_version_with_no_proof_to_run_is_not_kept_as_proven_and_a_proof_that_cannot_run_fails(studio):
    prover = studio.comfy.services.prover
    nothing = prover.run(ENV, 2, lambda body: pytest.fail("no proof to run"))
    assert nothing["passed"] and nothing["results"] == [] and prover.results(ENV, 2) is None

    def broken(body):
        raise RuntimeError("the socket went away")

    assert studio.use(studio.run()["id"]).status_code == 200
    run = prover.run(ENV, 2, broken)
    assert not run["passed"] and "the socket went away" in run["results"][0]["problems"][0], run
    assert prover.results(ENV, 2) == run
