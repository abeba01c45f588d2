"""Run on a plain canvas (no template loaded) is refused in words of what the page offers: an artist has no
environment to pick, so is not told to choose one (issue 32, point 7)."""

from __future__ import annotations

from comfyui_sagemaker.local.folder_store import FolderStore
from harness.fake_comfy import FakeComfy
from harness.fake_endpoints import FakeEndpoints
from harness.prompts import scale_prompt


def refusal(tmp_path, role: str) -> str:
    store = FolderStore(tmp_path / "store")
    fake = FakeEndpoints(store)
    comfy = FakeComfy(tmp_path / role, store, fake, role=role)
    try:
        r = comfy.post("/sagemaker/executions", json={"prompt": scale_prompt("ex.png", 0.5, "ex", None)})
        assert r.status_code == 400, r.text
        return r.json()["error"]["message"]
    finally:
        comfy.close()
        fake.close()


def test_an_artist_on_a_plain_canvas_is_told_to_load_a_template_not_to_choose_an_environment(tmp_path):
    message = refusal(tmp_path, "artist")
    assert "load a template from the SageMaker templates tab" in message
    assert "environment" not in message


def test_a_designer_on_a_plain_canvas_is_told_to_load_or_publish_a_template(tmp_path):
    message = refusal(tmp_path, "designer")
    assert "load a template" in message and "publish this canvas" in message
