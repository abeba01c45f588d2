"""A node type this ComfyUI does not have: ComfyUI's frontend sends such a node without its class_type
(`class_type: node.comfyClass`, undefined for a missing type, is left out of the JSON). That is a node type
not installed here, never "unknown workflow format"; a run answers it in /prompt's 400 shape (node_errors
per node, ComfyUI's newer `missing_node_type`), naming the pack and environment that have it when the
environment's manifest knows it."""

from __future__ import annotations

import pytest
from comfyui_sagemaker.core import analysis, preflight
from comfyui_sagemaker.core.errors import BadRequest
from comfyui_sagemaker.local.folder_store import FolderStore
from comfyui_sagemaker.server_routes.errors import from_exception
from harness.fake_comfy import FakeComfy, publish
from harness.fake_endpoints import FakeEndpoints
from harness.fixtures import TEST_PACK

# What the frontend sends for a graph whose SMTestScale this ComfyUI lacks, and the graph it comes from.
PROMPT = {
    "1": {"class_type": "EmptyImage", "inputs": {"width": 4, "height": 4, "batch_size": 1, "color": 0}},
    "2": {"inputs": {"image": ["1", 0]}, "_meta": {"title": "Scale it"}},
    "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "x"}},
}
WORKFLOW = {"nodes": [{"id": 1, "type": "EmptyImage"}, {"id": 2, "type": "SMTestScale", "title": "Scale it"},
                      {"id": 3, "type": "SaveImage"}], "links": []}
MANIFEST = {"name": "Studio", "custom_nodes": [{"folder": TEST_PACK, "node_types": ["SMTestScale"]}], "models": []}


def test_a_node_without_its_type_is_api_format_not_a_format_error():
    assert analysis.detect_format(PROMPT) == "api"
    for not_a_graph in ({"a": 1}, [], {"1": {"class_type": 5, "inputs": {}}}):
        with pytest.raises(BadRequest, match="unknown workflow format"):
            analysis.detect_format(not_a_graph)
    with pytest.raises(analysis.NodeTypeUnknown, match="node #2: the node type is not installed here"):
        analysis.flatten_api(PROMPT)


@pytest.mark.parametrize(("manifest", "message"), [
    (MANIFEST, f"node type SMTestScale is not installed here (it is in pack {TEST_PACK} of environment Studio)"),
    ({"name": "Bare", "custom_nodes": [], "models": []}, "node type SMTestScale is not installed here"),
    (None, "node type SMTestScale is not installed here"),
])
def test_the_refusal_names_the_type_and_where_it_is(manifest, message):
    with pytest.raises(preflight.NodeTypeNotInstalled) as refused:
        preflight.not_installed(PROMPT, WORKFLOW, manifest)
    assert refused.value.message == message
    assert refused.value.node_errors == {"2": {
        "errors": [{"type": "missing_node_type", "message": message, "details": "Node ID '#2'",
                    "extra_info": {"node_id": "2", "class_type": "SMTestScale", "node_title": "Scale it"}}],
        "dependent_outputs": [], "class_type": "SMTestScale"}}
    preflight.not_installed({k: v for k, v in PROMPT.items() if k != "2"}, WORKFLOW, manifest)  # all typed: fine


def test_without_the_workflow_the_node_is_named_by_its_id():
    with pytest.raises(preflight.NodeTypeNotInstalled) as refused:
        preflight.not_installed(PROMPT, None, MANIFEST)  # an API caller's prompt, or the v2 face's
    assert refused.value.message == "node #2 has no class_type: a node type not installed here (ComfyUI's " \
                                    "frontend sends those without one)"


def test_a_node_inside_a_subgraph_is_found_by_its_path():
    workflow = {"nodes": [{"id": 7, "type": "sg-1"}],
                "definitions": {"subgraphs": [{"id": "sg-1", "nodes": [{"id": 2, "type": "SMTestScale"}]}]}}
    assert analysis.ui_node(workflow, "7:2") == {"id": 2, "type": "SMTestScale"}
    assert analysis.ui_node(workflow, "7:9") is None and analysis.ui_node(None, "7") is None


def test_it_answers_in_prompts_400_shape():
    try:
        preflight.not_installed(PROMPT, WORKFLOW, MANIFEST)
    except preflight.NodeTypeNotInstalled as err:
        response = from_exception(err)
    assert response.status == 400
    import json

    body = json.loads(response.body)
    assert body["error"]["code"] == "node_type_not_installed" and body["error"]["type"] == "missing_node_type"
    assert body["error"]["message"].startswith("node type SMTestScale is not installed here (it is in pack")
    assert body["error"]["extra_info"]["node_id"] == "2" and set(body["node_errors"]) == {"2"}


def test_a_run_of_the_canvas_says_it_through_the_route(tmp_path):
    store = FolderStore(tmp_path / "store")
    fake = FakeEndpoints(store)
    comfy = FakeComfy(tmp_path / "artist", store, fake)
    try:
        fake.deploy(publish(store, "Studio"))
        fake.wait_state("Studio")
        r = comfy.post("/sagemaker/executions", json={"prompt": PROMPT, "workflow": WORKFLOW,
                                                      "environment": "Studio"})
        assert r.status_code == 400, r.text
        assert r.json()["error"]["message"] == \
            f"node type SMTestScale is not installed here (it is in pack {TEST_PACK} of environment Studio)"
        assert r.json()["node_errors"]["2"]["errors"][0]["type"] == "missing_node_type"
    finally:
        comfy.close()
        fake.close()
