"""Where a worker's warm-up comes from (core/warmup.py): the designer's choice at publish, written into the
manifest: their own prompt, or a template the environment serves (named, or `true` for the first whose input
files are here) with its parameters' defaults, lowered as a run's prompt is; its input files in the store by
content. None unless asked; a choice that cannot be used is a 400 before anything is written. Through the
real publish route and service on a ComfyUI face without ComfyUI (harness.fake_comfy)."""

from __future__ import annotations

import hashlib

import pytest
from comfyui_sagemaker.core.store import blob_key
from comfyui_sagemaker.local.folder_store import FolderStore
from harness.fake_comfy import FakeComfy
from harness.fake_endpoints import FakeEndpoints

PNG = b"\x89PNG\r\n\x1a\nwarm-up input"


def prompt(image: str, width: int = 4) -> dict:
    return {
        "1": {"class_type": "SageMakerParamInt", "inputs": {"name": "width", "default": width, "min": 1, "max": 64,
                                                            "step": 1, "description": "", "required": True}},
        "2": {"class_type": "LoadImage", "inputs": {"image": image}},
        "3": {"class_type": "EmptyImage", "inputs": {"width": ["1", 0], "height": 3, "batch_size": 1, "color": 0}},
        "4": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": "x"}},
    }


class Designer:
    def __init__(self, tmp_path):
        self.store = FolderStore(tmp_path / "store")
        self.fake = FakeEndpoints(self.store)
        self.comfy = FakeComfy(tmp_path / "designer", self.store, self.fake)
        (self.comfy.base / "input" / "here.png").write_bytes(PNG)
        self.comfy.template("Missing", prompt("gone.png", 5))
        self.comfy.template("First", prompt("here.png", 6))
        self.comfy.template("Second", prompt("here.png", 7))

    def publish(self, name: str, **body) -> dict:
        r = self.comfy.post("/sagemaker/environments", json={"name": name, **body})
        assert r.status_code == 202, r.text
        svc = self.comfy.services.environments
        task = svc.tasks.wait(r.json()["task"]["id"], 120)
        assert task.state == "succeeded", task.to_json()
        return svc.get(name)

    def close(self) -> None:
        self.comfy.close()
        self.fake.close()


@pytest.fixture
def designer(tmp_path):
    d = Designer(tmp_path)
    yield d
    d.close()


def test_the_manifest_carries_the_first_usable_templates_prompt_with_its_defaults_and_inputs(designer):
    manifest = designer.publish("Env1", templates=["Missing", "First", "Second"], warmup=True)
    warmup = manifest["warmup"]
    assert warmup["template"] == "First"  # Missing's input file is not here: passed over, and said
    assert any("Missing" in n and "gone.png" in n for n in manifest["notes"]), manifest["notes"]
    # The template's prompt with its parameter's default written in, the parameter node gone (a run's lowering).
    assert warmup["prompt"]["3"]["inputs"]["width"] == 6 and "1" not in warmup["prompt"]
    sha = hashlib.sha256(PNG).hexdigest()
    assert warmup["inputs"] == {"here.png": sha}
    assert designer.store.get(blob_key(sha)).data == PNG  # the worker fetches it by content


def test_the_designer_names_a_template_or_gives_a_prompt_and_without_a_choice_there_is_none(designer):
    assert designer.publish("Env2", templates=["First", "Second"], warmup="Second")["warmup"]["template"] == "Second"
    own = designer.publish("Env3", templates=["First"], warmup=prompt("here.png", 9))["warmup"]
    assert own["template"] is None and own["prompt"]["3"]["inputs"]["width"] == 9
    assert own["inputs"] == {"here.png": hashlib.sha256(PNG).hexdigest()}
    # A warm-up is a run nobody asked for (a generation per ComfyUI per cold start, and the workflow's side
    # effects): none unless the designer asks.
    assert designer.publish("Env5", templates=["First"])["warmup"] is None
    assert designer.publish("Env6", templates=["First"], warmup=False)["warmup"] is None


@pytest.mark.parametrize(("choice", "says"), [("Nope", "Nope"), ("Missing", "gone.png"),
                                              (prompt("gone.png"), "gone.png"), (3, "warmup must be")])
def test_a_warm_up_that_cannot_be_used_is_refused_before_anything_is_written(designer, choice, says):
    r = designer.comfy.post("/sagemaker/environments", json={"name": "Env4", "templates": ["Missing", "First"],
                                                             "warmup": choice})
    assert r.status_code == 400 and r.json()["error"]["code"] in ("publish_invalid", "bad_request"), r.text
    assert says in r.json()["error"]["message"]
    written = designer.store.list("environments/")
    assert not [k for k in written if "/versions/" in k or k.endswith("claim.json")], written  # no version, no claim
