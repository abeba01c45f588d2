"""The extension in a real ComfyUI: it loads, answers, and leaves ComfyUI working."""

import re
import uuid

import pytest
from harness.images import invert_prompt, pixels, png

pytestmark = pytest.mark.comfyui


def test_extension_loads_without_import_failure(comfyui, client):
    log = comfyui.log()
    assert re.search(r"seconds: .*custom_nodes/comfyui-sagemaker", log), log[-3000:]
    assert not re.search(r"IMPORT FAILED.*comfyui-sagemaker", log), log[-3000:]
    assert "comfyui-sagemaker" not in "".join(ln for ln in log.splitlines() if "Traceback" in ln)
    # The web folder is served as an extension.
    assert any("comfyui-sagemaker" in e for e in client.get("/extensions").json())


@pytest.mark.parametrize("prefix", ["", "/api"])
def test_health_and_rules_answer_json(client, prefix):
    health = client.get(f"{prefix}/sagemaker/health")
    assert health.status_code == 200 and health.headers["Content-Type"].startswith("application/json")
    body = health.json()
    assert body["ok"] is True
    assert body["store"]["kind"] == "folder" and body["store"]["path"]
    assert body["comfyui_version"] == "0.3.75" or body["comfyui_version"]
    assert re.fullmatch(r"\d+\.\d+\.\d+", body["version"])
    rules = client.get(f"{prefix}/sagemaker/rules").json()
    assert rules["template_name"]["pattern"] == "^[A-Za-z0-9]{1,20}$"
    assert rules["environment_name"]["case_sensitive"] is False


def test_a_model_free_workflow_runs_with_pixels_checked(client):
    name = f"in{uuid.uuid4().hex[:8]}.png"
    client.upload_image(name, png(8, 6, (10, 100, 200)))
    entry, events = client.run(invert_prompt(name))
    types = [e["type"] for e in events if e["type"] != "status"]
    assert types[0] == "execution_start" and types[-1] == "execution_success", types
    assert "executed" in types
    images = entry["outputs"]["3"]["images"]
    data = client.view(images[0]["filename"], images[0]["subfolder"], images[0]["type"])
    for px in pixels(data):
        assert all(abs(a - b) <= 1 for a, b in zip(px, (245, 155, 55), strict=True)), px


def test_unknown_route_is_json_404(client):
    r = client.get("/sagemaker/no-such-thing")
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "not_found"


def test_wrong_method_is_json_405(client):
    r = client.delete("/sagemaker/rules")
    assert r.status_code == 405 and r.json()["error"]["code"] == "method_not_allowed"


class TestGuard:
    def test_foreign_origin_gets_403_json(self, comfyui, client):
        r = client.post("/sagemaker/names/check", json={"kind": "template", "name": "ok"},
                        headers={"Origin": "http://evil.example"})
        assert r.status_code == 403
        assert r.json()["error"]["code"] == "forbidden"
        assert "Origin" in r.json()["error"]["message"]

    def test_dns_rebinding_host_gets_403_json(self, comfyui, client):
        r = client.post("/sagemaker/names/check", json={"kind": "template", "name": "ok"},
                        headers={"Host": "evil.example", "Origin": "http://evil.example"})
        assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"
        assert "Host" in r.json()["error"]["message"]

    def test_same_origin_post_passes(self, comfyui, client):
        host = comfyui.url.removeprefix("http://")
        r = client.post("/sagemaker/names/check", json={"kind": "template", "name": "ok"},
                        headers={"Origin": comfyui.url, "Host": host})
        assert r.status_code == 200 and r.json()["valid"] is True and r.json()["name"] == "ok"

    def test_oversized_body_gets_413_json_naming_the_limit(self, client):
        r = client.post("/sagemaker/names/check", data=b"{" + b" " * (16 * 1024 * 1024 + 10) + b"}",
                        headers={"Content-Type": "application/json"})
        assert r.status_code == 413
        err = r.json()["error"]
        assert err["code"] == "payload_too_large" and "16 MiB" in err["message"]

    def test_oversized_chunked_body_gets_413_json(self, client):
        def chunks():
            for _ in range(17):
                yield b" " * (1024 * 1024)

        r = client.post("/sagemaker/names/check", data=chunks(), headers={"Content-Type": "application/json"})
        assert r.status_code == 413 and r.json()["error"]["code"] == "payload_too_large"

    @pytest.mark.parametrize("body", [b"not json", b"", b"[1, 2]"])
    def test_bad_json_gets_400_json(self, client, body):
        r = client.post("/sagemaker/names/check", data=body, headers={"Content-Type": "application/json"})
        assert r.status_code == 400 and r.json()["error"]["code"] == "bad_request"

    def test_invalid_name_is_400(self, client):
        r = client.post("/sagemaker/names/check", json={"kind": "template", "name": "a_b"})
        assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_name"
