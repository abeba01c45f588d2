"""The sidebar's Analysis panel in the real ComfyUI frontend: selecting a template shows what it
needs (node packs, models, input files) and what is missing; a node id selects that node."""

from __future__ import annotations

import json
import re
import uuid

import pytest
from harness.browser import close_host_dialogs, open_sidebar
from harness.fixtures import TEST_PACK
from playwright.sync_api import Page, expect

pytestmark = pytest.mark.browser

APP = "window.comfyAPI.app.app"
EXPECTED_HTTP: list[tuple[int, str]] = []  # no 4xx is expected here

# LoadImage -> SMTestScale -> SaveImage, built by the frontend itself so every node loads back.
BUILD_GRAPH = f"""async (image) => {{
    const app = {APP};
    app.graph.clear();
    const add = (type, pos, values) => {{
        const node = window.LiteGraph.createNode(type);
        node.pos = pos;
        app.graph.add(node);
        for (const [name, value] of Object.entries(values)) node.widgets.find((w) => w.name === name).value = value;
        return node;
    }};
    const load = add("LoadImage", [0, 0], {{ image }});
    const scale = add("SMTestScale", [400, 0], {{ lora_name: "style.safetensors" }});
    const save = add("SaveImage", [700, 0], {{}});
    load.connect(0, scale, 0);
    scale.connect(0, save, 0);
    const {{ workflow, output }} = await app.graphToPrompt();
    // As JSON: Playwright would turn the workflow's undefined fields into nulls, which ComfyUI rejects.
    return JSON.stringify({{ workflow, output, ids: {{ load: load.id, scale: scale.id, save: save.id }} }});
}}"""

SELECTED = f"() => Object.keys({APP}.canvas.selected_nodes)"


def console_errors(page: Page) -> list[str]:
    def expected(error: str) -> bool:
        return "Failed to load resource" in error and any(
            f"status of {status} " in error and error.endswith(f"{path})") for status, path in EXPECTED_HTTP
        )

    return [e for e in page.console.errors_from("sagemaker") if not expected(e)]


@pytest.fixture
def template(page: Page, client):
    """A template with a missing input, a present lora, and a missing node type that declares a
    missing checkpoint and names a model found in two folders."""
    name = "A" + uuid.uuid4().hex[:12]
    missing_input = f"gone{uuid.uuid4().hex[:8]}.png"
    missing_model = f"absent{uuid.uuid4().hex[:8]}.safetensors"
    built = json.loads(page.evaluate(BUILD_GRAPH, missing_input))
    workflow, ids = built["workflow"], built["ids"]
    mystery_id = max(n["id"] for n in workflow["nodes"]) + 1
    workflow["nodes"].append({
        "id": mystery_id, "type": "MysteryNode", "pos": [1800, 1400], "size": [300, 120], "flags": {},
        "order": len(workflow["nodes"]), "mode": 0, "inputs": [], "outputs": [],
        "widgets_values": ["shared.safetensors", 3],
        "properties": {"models": [{"name": missing_model, "directory": "checkpoints",
                                   "url": "https://example.invalid/absent.safetensors"}]},
    })
    workflow["last_node_id"] = mystery_id
    page.evaluate(f"() => {APP}.loadGraphData()")  # back to the default graph: the template is not loaded
    body = {"name": name, "workflow": workflow, "prompt": built["output"]}
    r = client.post("/sagemaker/templates", json=body)
    assert r.status_code == 201, r.text
    yield {"name": name, "input": missing_input, "model": missing_model, "mystery": mystery_id, **ids}
    client.delete(f"/sagemaker/templates/{name}")


def open_templates(page: Page, name: str):
    open_sidebar(page)
    page.get_by_test_id("sagemaker-templates-refresh").click()
    row = page.locator(f'[data-testid="sagemaker-template-row"][data-template="{name}"]')
    expect(row).to_have_count(1)
    return row


def test_selecting_a_template_shows_its_analysis(page: Page, template):
    row = open_templates(page, template["name"])
    panel = page.get_by_test_id("sagemaker-analysis")
    expect(panel).to_be_hidden()
    row.get_by_test_id("sagemaker-template-name").click()
    expect(panel).to_be_visible()
    expect(panel.get_by_test_id("sagemaker-analysis-title")).to_contain_text(template["name"])
    expect(panel.get_by_test_id("sagemaker-analysis-summary")).to_have_text("3 missing on this ComfyUI")
    close_host_dialogs(page)

    packs = panel.get_by_test_id("sagemaker-analysis-pack")
    expect(packs.and_(page.locator(f'[data-pack="{TEST_PACK}"]'))).to_contain_text("SMTestScale")
    expect(packs.and_(page.locator('[data-pack="core"]'))).to_contain_text("LoadImage")

    models = panel.get_by_test_id("sagemaker-analysis-model")
    lora = models.and_(page.locator('[data-model="loras/style.safetensors"]'))
    expect(lora).to_have_attribute("data-present", "true")
    expect(lora).to_contain_text("present")
    expect(lora.get_by_test_id("sagemaker-analysis-node-id")).to_have_count(0)  # only missing things list ids
    absent = models.and_(page.locator(f'[data-model="checkpoints/{template["model"]}"]'))
    expect(absent).to_have_attribute("data-present", "false")
    expect(absent).to_contain_text("MISSING")
    expect(absent.get_by_test_id("sagemaker-analysis-url")).to_have_attribute(
        "href", "https://example.invalid/absent.safetensors")
    expect(absent.get_by_test_id("sagemaker-analysis-node-id")).to_have_text([f"#{template['mystery']}"])

    shared = models.and_(page.locator('[data-model="shared.safetensors"]'))
    expect(shared.get_by_test_id("sagemaker-analysis-candidates")).to_have_text("ambiguous: in loras, vae")
    expect(shared.get_by_test_id("sagemaker-analysis-node-id")).to_have_text([f"#{template['mystery']}"])

    missing_input = panel.get_by_test_id("sagemaker-analysis-input").and_(
        page.locator(f'[data-input="{template["input"]}"]'))
    expect(missing_input).to_contain_text("MISSING")
    expect(missing_input.get_by_test_id("sagemaker-analysis-node-id")).to_have_text([f"#{template['load']}"])

    mystery = panel.get_by_test_id("sagemaker-analysis-missing-node")
    expect(mystery).to_have_attribute("data-type", "MysteryNode")
    node_id = mystery.get_by_test_id("sagemaker-analysis-node-id")
    expect(node_id).to_have_text([f"#{template['mystery']}"])

    offset_before = page.evaluate(f"() => [...{APP}.canvas.ds.offset]")
    node_id.click()
    assert page.evaluate(SELECTED) == [str(template["mystery"])]
    assert page.evaluate(f"() => [...{APP}.canvas.ds.offset]") != offset_before, "the canvas centers on the node"

    # The input's id selects the LoadImage instead (the selection is replaced, not extended).
    missing_input.get_by_test_id("sagemaker-analysis-node-id").click()
    assert page.evaluate(SELECTED) == [str(template["load"])]

    expect(row).to_have_class(re.compile("sagemaker-analyzed"))
    panel.get_by_test_id("sagemaker-analysis-close").click()
    expect(panel).to_be_hidden()
    expect(row).not_to_have_class(re.compile("sagemaker-analyzed"))
    assert console_errors(page) == []


def test_a_node_id_while_another_graph_is_shown_loads_the_template_first(page: Page, template, client):
    row = open_templates(page, template["name"])
    row.get_by_test_id("sagemaker-template-name").click()
    panel = page.get_by_test_id("sagemaker-analysis")
    node_id = panel.get_by_test_id("sagemaker-analysis-missing-node").get_by_test_id("sagemaker-analysis-node-id")
    expect(node_id).to_have_count(1)
    close_host_dialogs(page)
    page.evaluate(f"() => {APP}.loadGraphData()")  # another graph: the ids would name other nodes
    expect(row.get_by_test_id("sagemaker-template-loaded")).to_be_hidden()
    node_id.click()
    expect(row.get_by_test_id("sagemaker-template-loaded")).to_be_visible()
    close_host_dialogs(page)
    page.wait_for_function(f"() => Object.keys({APP}.canvas.selected_nodes).length === 1")
    assert page.evaluate(SELECTED) == [str(template["mystery"])]

    # An id inside a subgraph ("outer:inner") selects its outer node: the root graph holds only that one.
    page.evaluate("""async (id) => {
        const { focusNode } = await import("/extensions/comfyui-sagemaker/js/analysis.js");
        if (!focusNode(`${id}:7`)) throw new Error("not focused");
    }""", template["save"])
    assert page.evaluate(SELECTED) == [str(template["save"])]

    # Another template in the canvas (its tab, a load): the open analysis follows it (issue 32).
    other = "B" + uuid.uuid4().hex[:12]
    workflow = page.evaluate(f"() => {APP}.graph.serialize()")
    workflow["extra"] = {**(workflow.get("extra") or {}), "sagemaker": {"template": other, "version": 1}}
    assert client.post("/sagemaker/templates", json={"name": other, "workflow": workflow, "prompt": {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}}},
        "environment": None}).status_code == 201
    try:
        page.get_by_test_id("sagemaker-templates-refresh").click()
        expect(page.locator(f'[data-testid="sagemaker-template-row"][data-template="{other}"]')).to_have_count(1)
        page.evaluate(f"(w) => {APP}.loadGraphData(w)", workflow)
        expect(panel.get_by_test_id("sagemaker-analysis-title")).to_have_text(f"Analysis: {other}")
    finally:
        client.delete(f"/sagemaker/templates/{other}")
    assert console_errors(page) == []
