"""A redeploy proven by its templates on a real local endpoint (issue 30, the proof run): a template's succeeded
run becomes its proof through the route; a new version of the environment that lacks the template's node (the
test pack is not in it) starts its worker beside the serving one, the proof fails there, and traffic never moves:
the old version serves on, the endpoint names the template and ComfyUI's words for the missing node, the new
worker is stopped, and the environment's history keeps the results."""

import pytest
from harness.envs import unique, wait_endpoint, wait_execution, wait_task
from harness.waiting import wait_for

pytestmark = pytest.mark.comfyui


def scaled(prefix: str) -> dict:
    """The test pack's SMTestScale between core nodes: a version without the pack cannot run it."""
    return {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 4, "batch_size": 1, "color": 0x336699}},
        "2": {"class_type": "SMTestScale", "inputs": {"image": ["1", 0], "lora_name": "style.safetensors",
                                                      "factor": 0.5}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": prefix}},
    }


def core_only(prefix: str) -> dict:
    return {"1": {"class_type": "EmptyImage", "inputs": {"width": 2, "height": 2, "batch_size": 1, "color": 7}},
            "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": prefix}}}


def template(client, name: str, prompt: dict) -> None:
    r = client.post("/sagemaker/templates", json={"name": name, "workflow": prompt, "prompt": prompt})
    assert r.status_code == 201, r.text


def publish(client, env: str, templates: list[str], **extra) -> None:
    r = client.post("/sagemaker/environments", json={"name": env, "templates": templates,
                                                      "endpoint": {"kind": "local"}, **extra})
    assert r.status_code == 202, r.text
    assert wait_task(client, r.json()["task"]["id"], 300)["state"] == "succeeded"


def ran(client, name: str, prompt: dict) -> dict:
    r = client.post("/sagemaker/executions", json={"prompt": prompt, "template": name})
    assert r.status_code == 202, r.text
    record = wait_execution(client, r.json()["execution_id"], 300)
    assert record["state"] == "succeeded", record
    return record


def test_a_version_lacking_a_templates_node_is_not_switched_to_and_says_which_template_and_why(client):
    proven, other, env = unique("T"), unique("T"), unique("E")
    template(client, proven, scaled("proof"))
    publish(client, env, [proven], bind=True)
    before = wait_endpoint(client, env, ("InService",))
    try:
        run = ran(client, proven, scaled("proof"))
        r = client.post(f"/sagemaker/templates/{proven}/proof", json={"execution_id": run["id"]})
        assert r.status_code == 200, r.text
        files = r.json()["proof"]["outputs"]["3"]["files"]
        assert [(f["format"], f["width"], f["height"]) for f in files] == [("PNG", 8, 4)], files
        # Version 2 carries another template of core nodes only: the test pack is not in it.
        template(client, other, core_only("other"))
        publish(client, env, [other])

        def said() -> dict:
            endpoint = client.get(f"/sagemaker/endpoints/{env}").json()
            return endpoint if "did not deploy" in (endpoint.get("reason") or "") else {}

        endpoint = wait_for(said, 600, "the failed proof reported")
        assert endpoint["state"] == "InService" and endpoint["version"] == 1, endpoint
        assert endpoint["url"] == before["url"], endpoint  # traffic never moved
        reason = endpoint["reason"]
        assert reason.startswith(f"version 2 did not deploy (its proof failed (template {proven}: ") and \
            "SMTestScale" in reason and reason.endswith("; still serving version 1"), reason
        failed = endpoint["proof_failed"]
        assert failed["version"] == 2 and not failed["passed"], failed
        assert [(r["template"], r["passed"]) for r in failed["results"]] == [(proven, False)], failed
        history = client.get(f"/sagemaker/environments/{env}/versions").json()
        assert history["serving"] == 1 and history["versions"][0]["proofs"] == failed, history
        ran(client, proven, scaled("after"))  # the old version serves on
    finally:
        client.delete(f"/sagemaker/endpoints/{env}")
