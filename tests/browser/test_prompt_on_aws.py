"""Prompt on AWS in the real ComfyUI frontend, as a user clicks: with the box ticked, ComfyUI's own Run
(batch count, Ctrl+Enter, queue-front) runs the canvas on the template's local endpoint and the canvas
shows the remote image; unticked, ComfyUI runs it as before. The box is per browser, refusals are toasts,
model combos offer the environment's models, and the Executions list follows every run."""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass

import pytest
from harness.browser import (
    APP,
    close_host_dialogs,
    dismiss_toasts,
    host_dialogs,
    new_page,
    open_sidebar,
    set_batch_count,
    toast_count,
    toasts,
)
from harness.envs import unique, wait_endpoint, wait_task
from harness.images import pixels
from playwright.sync_api import Page, expect

from .test_parameter_form import RED, param, publish_template, select, the_result
from .test_templates import unique_name

pytestmark = pytest.mark.browser

API = "window.comfyAPI.api.api"

# A chain of nodes built by the frontend itself (so the canvas loads it back): each node's first
# output feeds the next node's first input. Returns the UI workflow, the API prompt and the node ids.
BUILD_CHAIN = f"""async (chain) => {{
    const app = {APP};
    app.graph.clear();
    const ids = [];
    let previous = null;
    chain.forEach(([type, values], i) => {{
        const node = window.LiteGraph.createNode(type);
        node.pos = [320 * i, 0];
        app.graph.add(node);
        for (const [name, value] of Object.entries(values)) node.widgets.find((w) => w.name === name).value = value;
        if (previous) previous.connect(0, node, 0);
        previous = node;
        ids.push(node.id);
    }});
    const {{ workflow, output }} = await app.graphToPrompt();
    // As JSON: Playwright would turn the workflow's undefined fields into nulls, which ComfyUI rejects.
    return JSON.stringify({{ workflow, output, ids }});
}}"""

WIDGET_VALUES = f"""([node, name]) => {{
    const widget = {APP}.graph.getNodeById(node).widgets.find((w) => w.name === name);
    return {{ value: widget.value, values: [...widget.options.values] }};
}}"""


@dataclass
class Aws:
    environment: str
    plain: str  # EmptyImage -> ImageInvert -> SaveImage
    plain_ids: list[int]
    held: str  # EmptyImage -> SMTestScale (a lora only the environment has) -> SMTestWait -> SaveImage
    held_ids: list[int]
    loose: str  # the plain graph, bound to no environment
    bare: str  # an environment of `loose` without an endpoint
    own_lora: str
    form: str  # the parameter form's template (width and color -> EmptyImage -> its output "result")


@pytest.fixture(scope="module")
def aws(module_page, comfyui, tmp_path_factory):
    """Three templates in one environment with a local endpoint (a second ComfyUI, started once for the
    module); a fourth one unbound, in an environment without an endpoint. The held template uses a lora the
    environment holds and this ComfyUI no longer has. Built in the module's page (the tests get it reset)."""
    client = comfyui.client()
    own_lora = f"own{uuid.uuid4().hex[:8]}.safetensors"
    own_path = comfyui.base / "models" / "loras" / own_lora
    own_path.write_bytes(uuid.uuid4().bytes)
    never = tmp_path_factory.mktemp("signals") / "never"  # SMTestWait holds until cancelled
    plain = json.loads(module_page.evaluate(BUILD_CHAIN, [
        ["EmptyImage", {"width": 64, "height": 48, "color": 0x204060}], ["ImageInvert", {}],
        ["SaveImage", {"filename_prefix": "poa"}]]))
    held = json.loads(module_page.evaluate(BUILD_CHAIN, [
        ["EmptyImage", {"width": 16, "height": 16}], ["SMTestScale", {"lora_name": own_lora}],
        ["SMTestWait", {"signal": str(never), "timeout": 120}], ["SaveImage", {"filename_prefix": "poaheld"}]]))
    names = {"plain": unique("T"), "held": unique("T"), "loose": unique("T"), "form": unique_name()}
    publish_template(client, names["form"])
    for key, built in (("plain", plain), ("held", held), ("loose", plain)):
        r = client.post("/sagemaker/templates", json={"name": names[key], "workflow": built["workflow"],
                                                       "prompt": built["output"]})
        assert r.status_code == 201, r.text
    environment, bare = unique("E"), unique("E")
    tasks = [client.post("/sagemaker/environments", json=body) for body in (
        {"name": environment, "templates": [names["plain"], names["held"], names["form"]],
         "endpoint": {"kind": "local"}},
        {"name": bare, "templates": [names["loose"]]})]
    try:
        for r in tasks:
            assert r.status_code == 202, r.text
            task = wait_task(client, r.json()["task"]["id"])
            assert task["state"] == "succeeded", task
        own_path.unlink()  # the artist's machine lacks it: only the environment has it
        for key in ("plain", "held", "form"):
            r = client.put(f"/sagemaker/templates/{names[key]}", json={"environment": environment})
            assert r.status_code == 200, r.text
        assert wait_endpoint(client, environment)["state"] == "InService"
        yield Aws(environment, names["plain"], plain["ids"], names["held"], held["ids"], names["loose"], bare, own_lora,
                  names["form"])
    finally:
        own_path.unlink(missing_ok=True)
        for env in (environment, bare):
            client.delete(f"/sagemaker/endpoints/{env}")
            client.delete(f"/sagemaker/environments/{env}?force=true")
        for name in names.values():
            client.delete(f"/sagemaker/templates/{name}")


def console_errors(page: Page, *expected: tuple[int, str]) -> list[str]:
    """The page's errors about the extension, minus the expected HTTP statuses (status, URL path)."""

    def expected_status(error: str) -> bool:
        return "Failed to load resource" in error and any(
            f"status of {status} " in error and error.endswith(f"{path})") for status, path in expected
        )

    return [e for e in page.console.errors_from("sagemaker") if not expected_status(e)]


def is_execution_post(response) -> bool:
    return response.url.endswith("/api/sagemaker/executions") and response.request.method == "POST"


def is_prompt_post(response) -> bool:
    return response.url.endswith("/api/prompt") and response.request.method == "POST"


def record_posts(page: Page) -> list[str]:
    """The paths of the page's POSTs to /api/prompt and /api/sagemaker/executions, from now on."""
    posts: list[str] = []

    def record(request):
        path = request.url.split("?")[0]
        if request.method == "POST" and (path.endswith("/api/prompt") or path.endswith("/api/sagemaker/executions")):
            posts.append(path[path.index("/api/"):])

    page.on("request", record)
    return posts


def load_template(page: Page, name: str):
    """Open the SageMaker tab, load `name` from the Templates list; the Prompt on AWS section."""
    open_sidebar(page)
    page.get_by_test_id("sagemaker-templates-refresh").click()
    row = page.locator(f'[data-testid="sagemaker-template-row"][data-template="{name}"]')
    row.get_by_test_id("sagemaker-template-name").click()
    expect(row.get_by_test_id("sagemaker-template-loaded")).to_be_visible()
    section = page.get_by_test_id("sagemaker-prompt-on-aws")
    expect(section.get_by_test_id("sagemaker-target-template")).to_have_text(name)
    return section


def execution_row(page: Page, execution_id: str):
    return page.locator(f'[data-testid="sagemaker-execution-row"][data-execution="{execution_id}"]')


def save_image_src(page: Page, node: int) -> str:
    """The SaveImage node's shown image, once loaded."""
    page.wait_for_function(f"""() => {{
        const img = {APP}.graph.getNodeById({node})?.imgs?.[0];
        return img && img.complete && img.naturalWidth > 0;
    }}""", timeout=30_000)
    return page.evaluate(f"() => {APP}.graph.getNodeById({node}).imgs[0].src")


def wait_output_subfolder(page: Page, node: int, subfolder: str) -> dict:
    page.wait_for_function(f"([n, s]) => {APP}.nodeOutputs[String(n)]?.images?.[0]?.subfolder === s",
                           arg=[node, subfolder], timeout=60_000)
    return page.evaluate(f"(n) => {APP}.nodeOutputs[String(n)].images[0]", node)


def executions_of(client, template: str) -> list[str]:
    return [e["id"] for e in client.get(f"/sagemaker/executions?template={template}&limit=500").json()["executions"]]


def test_run_goes_to_the_endpoint_when_ticked_and_stays_local_when_not(page: Page, client, aws, frontend):
    # The one wrapper is in place: if the host stopped queueing through api.queuePrompt, the Run below
    # would post /prompt and this test would fail.
    assert page.evaluate(f"() => {API}.queuePrompt.__sagemakerWrapped && {API}.interrupt.__sagemakerWrapped")
    section = load_template(page, aws.plain)
    expect(section.get_by_test_id("sagemaker-target-environment")).to_have_text(aws.environment)
    expect(section.get_by_test_id("sagemaker-target-state")).to_have_attribute("data-state", "InService")
    note = section.get_by_test_id("sagemaker-prompt-on-aws-note")
    expect(note).to_have_text("Off: Run queues on this ComfyUI.")
    box = section.get_by_test_id("sagemaker-prompt-on-aws-check")
    box.check()
    expect(note).to_have_text(f"Run sends the canvas to {aws.environment}.")
    assert page.evaluate("() => localStorage.getItem('sagemaker.promptOnAws')") == "1"

    posts = record_posts(page)
    with page.expect_response(is_execution_post) as answer:
        page.get_by_test_id("queue-button").click()
    assert answer.value.status == 202, answer.value.text()
    sent = answer.value.request.post_data_json
    assert sent["template"] == aws.plain
    assert sent["client_id"] == page.evaluate(f"() => {API}.clientId")
    assert {n["class_type"] for n in sent["prompt"].values()} == {"EmptyImage", "ImageInvert", "SaveImage"}
    assert sent["workflow"]["extra"]["sagemaker"]["template"] == aws.plain
    execution_id = answer.value.json()["execution_id"]

    # The relayed events reach the canvas under the execution's prompt_id: the SaveImage node shows the
    # remote image, copied under output/sagemaker/<execution id>.
    save = aws.plain_ids[-1]
    image = wait_output_subfolder(page, save, f"sagemaker/{execution_id}")
    src = save_image_src(page, save)
    assert f"subfolder=sagemaker%2F{execution_id}" in src and image["filename"] in src
    assert set(pixels(client.view(image["filename"], image["subfolder"]))) == {(0xDF, 0xBF, 0x9F)}  # inverted
    row = execution_row(page, execution_id)
    expect(row).to_have_attribute("data-state", "succeeded", timeout=60_000)
    expect(row.get_by_test_id("sagemaker-execution-template")).to_have_text(aws.plain)
    expect(row.get_by_test_id("sagemaker-execution-duration")).to_have_text(re.compile(r"^\d+(\.\d)? s$"))
    expect(row.get_by_test_id("sagemaker-execution-thumb")).to_have_attribute("src", re.compile(image["filename"]))
    row.click()
    detail = page.locator(f'[data-testid="sagemaker-execution-detail"][data-execution="{execution_id}"]')
    expect(detail.get_by_test_id("sagemaker-execution-image")).to_have_count(1)
    expect(detail.get_by_test_id("sagemaker-execution-folder")).to_have_text(
        f"In ComfyUI's output folder, under sagemaker/{execution_id}/")
    expect(detail.get_by_test_id("sagemaker-execution-error")).to_have_count(0)
    assert posts == ["/api/sagemaker/executions"], "a ticked Run must not reach ComfyUI's /prompt"

    # ComfyUI's own history has the run, with its outputs, as a local one; the queue panel lists it with
    # its image. (The newest frontend's panel reads /api/jobs, which this ComfyUI has not: it lists no run
    # there, local or remote; the history above is what it would read.)
    prompt_id = answer.value.json()["prompt_id"]
    entry = client.get(f"/history/{prompt_id}").json()[prompt_id]
    assert entry["status"]["status_str"] == "success" and entry["outputs"][str(save)]["images"][0] == image
    if frontend == "pinned":
        page.evaluate(f"() => {APP}.extensionManager.command.execute('Workspace.ToggleSidebarTab.queue')")
        listed = page.locator(f'img[src*="subfolder=sagemaker%2F{execution_id}"]:visible')
        expect(listed.first).to_be_visible(timeout=30_000)
        open_sidebar(page)

    # Unticked: ComfyUI runs it in its own queue, exactly as before; no execution is created.
    box.uncheck()
    expect(note).to_have_text("Off: Run queues on this ComfyUI.")
    before = executions_of(client, aws.plain)
    with page.expect_response(is_prompt_post) as queued:
        page.get_by_test_id("queue-button").click()
    entry = client.history(queued.value.json()["prompt_id"], timeout=60)
    assert entry["status"]["status_str"] == "success", entry["status"]
    assert wait_output_subfolder(page, save, "")["type"] == "output"
    assert executions_of(client, aws.plain) == before
    assert posts == ["/api/sagemaker/executions", "/api/prompt"]
    assert console_errors(page) == []


# The host's batch loop (app.queuePrompt) is running. The wrapper in web/js/queue.js reads the same flag.
BATCH_DONE = f"() => {APP}.processingQueue === false"
# ComfyUI's own events as the page's API object receives them (what the canvas and the queue follow), from
# now on (one listener per page, however often a test asks).
RECORD_ERRORS = f"""() => {{
    window.__executionErrors = [];
    if (window.__recordingErrors) return;
    window.__recordingErrors = true;
    {API}.addEventListener("execution_error", (e) => window.__executionErrors.push(e.detail));
}}"""

ADD_NODE = f"""([type, values, between]) => {{
    const app = {APP};
    const node = window.LiteGraph.createNode(type);
    node.pos = [300, 300];
    app.graph.add(node);
    for (const [name, value] of Object.entries(values)) node.widgets.find((w) => w.name === name).value = value;
    if (between) {{
        const [before, after] = between.map((id) => app.graph.getNodeById(id));
        before.connect(0, node, 0);
        node.connect(0, after, 0);
    }}
    return node.id;
}}"""


def focus_canvas(page: Page) -> None:
    """Keyboard shortcuts go to the canvas, not to a sidebar input."""
    page.locator("#graph-canvas").click(position={"x": 700, "y": 600})


# The frontend's execution store (Pinia): which prompt the canvas follows. Read only, to check; the
# one host internal these tests read (1.32 calls the followed prompt activePromptId, newer ones activeJobId).
EXECUTION = "document.querySelector('#vue-app').__vue_app__.config.globalProperties.$pinia._s.get('execution')"


def is_idle(page: Page) -> bool:
    return page.evaluate(f"() => {EXECUTION}.isIdle")


def wait_following(page: Page, prompt_id: str) -> None:
    """The canvas follows this prompt (its execution_start arrived under that prompt_id)."""
    page.wait_for_function(f"(id) => ({EXECUTION}.activePromptId ?? {EXECUTION}.activeJobId) === id",
                           arg=prompt_id, timeout=30_000)


def test_a_refused_run_is_a_toast_and_comfyui_stays_idle(page: Page, client, aws):
    section = load_template(page, aws.plain)
    section.get_by_test_id("sagemaker-prompt-on-aws-check").check()
    # A checkpoint the environment lacks, in a batch of two: one request, one toast, nothing runs.
    page.evaluate(ADD_NODE, ["CheckpointLoaderSimple", {"ckpt_name": "tiny.safetensors"}, None])
    set_batch_count(page, 2)
    posts = record_posts(page)
    before = executions_of(client, aws.plain)
    with page.expect_response(is_execution_post) as answer:
        page.get_by_test_id("queue-button").click()
    assert answer.value.status == 400 and answer.value.json()["error"]["code"] == "environment_lacks"
    message = answer.value.json()["error"]["message"]
    assert "tiny.safetensors" in message
    expect(toasts(page, "tiny.safetensors")).to_be_visible()
    page.wait_for_function(BATCH_DONE)
    assert toast_count(page, "tiny.safetensors") == 1
    dismiss_toasts(page)  # on 1.32 it stands over Run, whose next click would wait until it goes
    assert posts == ["/api/sagemaker/executions"], "the batch's second item is not sent again"
    assert executions_of(client, aws.plain) == before
    queue = client.get("/queue").json()
    assert queue["queue_running"] == [] and queue["queue_pending"] == []
    assert is_idle(page), "the frontend follows no run"
    expect(host_dialogs(page)).to_have_count(0)

    # The refusal covered only its batch: the next Run (Ctrl+Enter) is sent and refused again.
    set_batch_count(page, 1)
    focus_canvas(page)
    with page.expect_response(is_execution_post) as answer:
        page.keyboard.press("Control+Enter")
    assert answer.value.status == 400
    page.wait_for_function(BATCH_DONE)
    assert posts == ["/api/sagemaker/executions"] * 2
    dismiss_toasts(page)

    # A template bound to no environment: the server's words, and the sidebar says so before Run.
    load_template(page, aws.loose)
    expect(section.get_by_test_id("sagemaker-prompt-on-aws-note")).to_have_text(
        f"{aws.loose} is bound to no environment: rebind it below.")
    expect(section.get_by_test_id("sagemaker-target-environment")).to_have_count(0)
    with page.expect_response(is_execution_post) as answer:
        page.get_by_test_id("queue-button").click()
    assert answer.value.status == 400
    expect(toasts(page, "bound to no environment")).to_be_visible()
    page.wait_for_function(BATCH_DONE)
    assert toast_count(page, "bound to no environment") == 1
    dismiss_toasts(page)
    assert posts == ["/api/sagemaker/executions"] * 3

    # Bound (from the sidebar) to an environment without an endpoint: the target follows at once.
    page.locator(f'[data-template="{aws.loose}"]').get_by_test_id("sagemaker-template-rebind").click()
    page.get_by_test_id("sagemaker-rebind-environment").select_option(aws.bare)
    page.get_by_test_id("sagemaker-rebind-dialog").get_by_test_id("sagemaker-dialog-ok").click()
    state = section.get_by_test_id("sagemaker-target-state")
    expect(section.get_by_test_id("sagemaker-target-environment")).to_have_text(aws.bare)
    expect(state).to_have_attribute("data-state", "none")
    dismiss_toasts(page)  # "Template updated"
    with page.expect_response(is_execution_post) as answer:
        page.get_by_test_id("queue-button").click()
    assert answer.value.status == 409 and answer.value.json()["error"]["code"] == "endpoint_not_ready"
    refusal = f"no endpoint runs environment '{aws.bare}'"
    expect(toasts(page, refusal)).to_be_visible()
    # The endpoint's state changes arrive as events: the target's state follows without a reload.
    assert client.post("/sagemaker/endpoints", json={"environment": aws.bare}).status_code == 202
    expect(state).to_have_attribute("data-state", re.compile("Creating|InService"))
    assert client.delete(f"/sagemaker/endpoints/{aws.bare}").status_code == 204
    expect(state).to_have_attribute("data-state", "none")
    assert is_idle(page)
    assert console_errors(page, (400, "/api/sagemaker/executions"), (409, "/api/sagemaker/executions")) == []


NODE_ERRORS = f"() => JSON.stringify({APP}.lastNodeErrors ?? null)"


def test_an_invalid_prompt_is_outlined_and_said_as_comfyui_does_locally(page: Page, client, aws):
    section = load_template(page, aws.plain)
    box = section.get_by_test_id("sagemaker-prompt-on-aws-check")
    box.check()
    loose = aws.plain_ids[-1]
    page.evaluate(f"(n) => {APP}.graph.getNodeById(n).disconnectInput(0)", loose)  # SaveImage: no image to save
    # Ticked: the server refuses it before sending it, in /prompt's shape, and the host takes it as /prompt's
    # refusal: the node outlined (the host's node errors) and the host's own words ("Required input is
    # missing" on 1.32, "... is missing a required input" on newer frontends), no toast of ours.
    with page.expect_response(is_execution_post) as answer:
        page.get_by_test_id("queue-button").click()
    assert answer.value.status == 400
    page.wait_for_function(f"() => {APP}.lastNodeErrors?.[{str(loose)!r}]", timeout=30_000)
    said_remotely = page.evaluate(NODE_ERRORS)
    expect(page.get_by_text(re.compile("required input", re.IGNORECASE)).first).to_be_visible()
    page.wait_for_function(BATCH_DONE)
    assert toast_count(page, "not queued") == 0
    assert is_idle(page)
    close_host_dialogs(page)
    # Unticked: ComfyUI's own /prompt refuses it the same way, and the host says the same.
    box.uncheck()
    with page.expect_response(is_prompt_post) as local:
        page.get_by_test_id("queue-button").click()
    assert local.value.status == 400
    assert answer.value.json()["node_errors"] == local.value.json()["node_errors"]
    page.wait_for_function(BATCH_DONE)
    assert page.evaluate(NODE_ERRORS) == said_remotely
    close_host_dialogs(page)
    # The host logs the refusal it shows (console.error of its PromptExecutionError), as for /prompt's.
    errors = console_errors(page, (400, "/api/sagemaker/executions"), (400, "/api/prompt"))
    assert [e for e in errors if not e.startswith("error: PromptExecutionError")] == []


RECORD_PREVIEWS = f"""() => {{
    window.__previews = [];
    window.__previewPrompts = [];
    if (window.__recordingPreviews) return;
    window.__recordingPreviews = true;
    {API}.addEventListener("b_preview", (e) => window.__previews.push(e.detail.type));
    {API}.addEventListener("b_preview_with_metadata",
        (e) => window.__previewPrompts.push(e.detail.promptId ?? e.detail.jobId));  // 1.32: promptId; newer: jobId
}}"""


def test_a_remote_runs_sampler_previews_reach_the_page(page: Page, client, aws):
    load_template(page, aws.plain).get_by_test_id("sagemaker-prompt-on-aws-check").check()
    page.evaluate(RECORD_PREVIEWS)
    empty, invert, _ = aws.plain_ids
    # In the environment's pack: sends its image as previews, as a sampler does, without a model.
    page.evaluate(ADD_NODE, ["SMTestPreview", {"steps": 3, "pause": 0.05}, [empty, invert]])
    with page.expect_response(is_execution_post) as answer:
        page.get_by_test_id("queue-button").click()
    assert answer.value.status == 202, answer.value.text()
    expect(execution_row(page, answer.value.json()["execution_id"])).to_have_attribute(
        "data-state", "succeeded", timeout=60_000)
    # ComfyUI's binary preview frames, as for a local run: the image, and (this page announced it supports
    # them) the frame naming the run's prompt and node, which the host shows on that node.
    previews = page.evaluate("() => window.__previews")
    assert len(previews) >= 3 and set(previews) == {"image/jpeg"}, previews
    with_metadata = page.evaluate("() => window.__previewPrompts")
    assert len(with_metadata) == 3 and set(with_metadata) == {answer.value.json()["prompt_id"]}, with_metadata
    assert console_errors(page) == []


def test_a_remote_failure_marks_the_node_and_is_a_toast(page: Page, client, aws):
    load_template(page, aws.plain).get_by_test_id("sagemaker-prompt-on-aws-check").check()
    page.evaluate(RECORD_ERRORS)
    boom = f"remote boom {uuid.uuid4().hex[:6]}"
    empty, invert, save = aws.plain_ids
    page.evaluate(ADD_NODE, ["SMTestFail", {"message": boom}, [invert, save]])  # in the environment's pack
    with page.expect_response(is_execution_post) as answer:
        page.get_by_test_id("queue-button").click()
    assert answer.value.status == 202, answer.value.text()
    execution_id = answer.value.json()["execution_id"]
    row = execution_row(page, execution_id)
    expect(row).to_have_attribute("data-state", "failed", timeout=60_000)
    expect(toasts(page, boom)).to_be_visible()
    assert toast_count(page, boom) == 1
    # The host got ComfyUI's own execution_error for the prompt it follows, naming the node and the
    # message (how it shows it is its own: a dialog on 1.32, an error panel on newer frontends).
    errors = page.evaluate("() => window.__executionErrors")
    assert [(e["prompt_id"], e["node_type"], e["exception_message"].strip()) for e in errors] == \
        [(answer.value.json()["prompt_id"], "SMTestFail", boom)], errors
    close_host_dialogs(page)
    row.click()
    expect(page.get_by_test_id("sagemaker-execution-detail").get_by_test_id("sagemaker-execution-error")).to_contain_text(boom)
    assert is_idle(page)

    # Queue Selected Output Nodes: only a SaveImage fed before SMTestFail, and what it needs, is sent.
    partial = page.evaluate(f"""(invert) => {{
        const app = {APP};
        const node = window.LiteGraph.createNode("SaveImage");
        node.pos = [900, 300];
        app.graph.add(node);
        app.graph.getNodeById(invert).connect(0, node, 0);
        app.canvas.selectItems([node]);
        return node.id;
    }}""", invert)
    with page.expect_response(is_execution_post) as answer:
        page.evaluate(f"() => {APP}.extensionManager.command.execute('Comfy.QueueSelectedOutputNodes')")
    assert sorted(answer.value.request.post_data_json["prompt"]) == sorted(map(str, [empty, invert, partial]))
    expect(execution_row(page, answer.value.json()["execution_id"])).to_have_attribute("data-state", "succeeded")
    assert console_errors(page) == []


def test_two_pages_each_run_where_their_own_box_says(page: Page, browser, comfyui, client, aws):
    other = new_page(browser, comfyui)  # another browser: its own localStorage
    try:
        ticked = load_template(page, aws.plain)
        load_template(other, aws.plain)
        ticked.get_by_test_id("sagemaker-prompt-on-aws-check").check()
        expect(other.get_by_test_id("sagemaker-prompt-on-aws-check")).not_to_be_checked()
        mine, theirs = record_posts(page), record_posts(other)

        # The ticked page queues two at the front (Ctrl+Shift+Enter, batch count 2): two executions.
        set_batch_count(page, 2)
        focus_canvas(page)
        with page.expect_response(is_execution_post) as first, page.expect_response(
                lambda r: is_execution_post(r) and r != first.value) as second:
            page.keyboard.press("Control+Shift+Enter")
        ids = [first.value.json()["execution_id"], second.value.json()["execution_id"]]
        assert len(set(ids)) == 2
        # The other page, unticked, runs in ComfyUI's own queue (Ctrl+Enter).
        focus_canvas(other)
        with other.expect_response(is_prompt_post) as queued:
            other.keyboard.press("Control+Enter")
        entry = client.history(queued.value.json()["prompt_id"], timeout=60)
        assert entry["status"]["status_str"] == "success", entry["status"]

        for execution_id in ids:
            expect(execution_row(page, execution_id)).to_have_attribute("data-state", "succeeded", timeout=60_000)
            # Every browser lists every run (sagemaker.execution goes to all).
            expect(execution_row(other, execution_id)).to_have_attribute("data-state", "succeeded")
        save = aws.plain_ids[-1]
        page.wait_for_function(f"(n) => {APP}.nodeOutputs[String(n)]?.images?.[0]?.subfolder?.startsWith('sagemaker/')",
                               arg=save, timeout=30_000)
        shown = page.evaluate(f"(n) => {APP}.nodeOutputs[String(n)].images[0].subfolder", save)
        assert shown.removeprefix("sagemaker/") in ids
        # The runs' own events went to the ticked page only: the other canvas shows its local image.
        assert wait_output_subfolder(other, save, "")["type"] == "output"
        assert mine == ["/api/sagemaker/executions"] * 2 and theirs == ["/api/prompt"]
        assert console_errors(page) == [] and console_errors(other) == []
    finally:
        other.context.close()


def test_model_combos_offer_the_environment_models_and_runs_cancel(page: Page, client, aws):
    section = load_template(page, aws.held)
    scale = aws.held_ids[1]
    local = page.evaluate(WIDGET_VALUES, [scale, "lora_name"])
    assert local["value"] == aws.own_lora and aws.own_lora not in local["values"], local
    box = section.get_by_test_id("sagemaker-prompt-on-aws-check")
    box.check()
    page.wait_for_function(f"([n, m]) => {APP}.graph.getNodeById(n).widgets.find((w) => w.name === 'lora_name')"
                           ".options.values.includes(m)", arg=[scale, aws.own_lora])
    offered = page.evaluate(WIDGET_VALUES, [scale, "lora_name"])
    assert offered["values"] == local["values"] + [aws.own_lora] and offered["value"] == aws.own_lora

    # It runs there (the lora is only there); SMTestWait holds it until cancelled from the list...
    with page.expect_response(is_execution_post) as answer:
        page.get_by_test_id("queue-button").click()
    assert answer.value.status == 202, answer.value.text()
    row = execution_row(page, answer.value.json()["execution_id"])
    expect(row).to_have_attribute("data-state", "running", timeout=60_000)
    wait_following(page, answer.value.json()["prompt_id"])
    row.get_by_test_id("sagemaker-execution-cancel").click()
    expect(row).to_have_attribute("data-state", "cancelled", timeout=30_000)
    expect(row.get_by_test_id("sagemaker-execution-cancel")).to_be_hidden()
    page.wait_for_function(f"() => {EXECUTION}.isIdle")  # execution_interrupted reached the canvas

    # ...or by ComfyUI's own "Cancel current run" (X) button: the remote run counts as running in ComfyUI's
    # queue, so the host enables it, and it cancels the run on the endpoint. Then Ctrl+Alt+Enter (Interrupt).
    stop = page.get_by_role("button", name="Cancel current run")
    for press in (stop.click, lambda: (focus_canvas(page), page.keyboard.press("Control+Alt+Enter"))):
        expect(stop).to_be_disabled()
        with page.expect_response(is_execution_post) as answer:
            page.get_by_test_id("queue-button").click()
        execution_id = answer.value.json()["execution_id"]
        row = execution_row(page, execution_id)
        expect(row).to_have_attribute("data-state", "running", timeout=60_000)
        wait_following(page, answer.value.json()["prompt_id"])
        assert client.get("/queue").json()["queue_running"][0][1] == answer.value.json()["prompt_id"]
        expect(stop).to_be_enabled()
        cancelled = f"/api/sagemaker/executions/{execution_id}/cancel"
        with page.expect_response(lambda r, path=cancelled: r.url.endswith(path)) as cancel:
            press()
        assert cancel.value.status == 200
        expect(row).to_have_attribute("data-state", "cancelled", timeout=30_000)
        page.wait_for_function(f"() => {EXECUTION}.isIdle")
        assert client.get(f"/sagemaker/executions/{execution_id}").json()["state"] == "cancelled"
    expect(stop).to_be_disabled()

    # Unticked: the combo offers this ComfyUI's files again; the value stays as it was.
    box.uncheck()
    assert page.evaluate(WIDGET_VALUES, [scale, "lora_name"]) == local
    assert console_errors(page) == []


def test_the_parameter_form_runs_on_the_endpoint_when_ticked(page: Page, client, aws):
    """The run form of a template (test_parameter_form's) with Prompt on AWS on: the template runs on its
    environment's local endpoint; the form shows the named output and the run is listed under Executions."""
    form = select(page, aws.form)
    expect(form.get_by_test_id("sagemaker-param-where")).to_have_attribute("data-target", "local")
    page.get_by_test_id("sagemaker-prompt-on-aws-check").check()
    expect(form.get_by_test_id("sagemaker-param-where")).to_have_attribute("data-target", "endpoint")
    param(form, "width").fill("20")
    param(form, "color").fill(str(RED))
    with page.expect_response(lambda r: r.url.endswith(f"/templates/{aws.form}/executions")) as answer:
        form.get_by_test_id("sagemaker-param-run").click()
    assert answer.value.status == 202
    sent = answer.value.request.post_data_json
    assert sent["inputs"] == {"width": 20, "color": RED}
    assert sent["client_id"] == page.evaluate(f"() => {API}.clientId")
    execution_id = answer.value.json()["execution_id"]
    the_result(page, form, client, (20, 4))
    listed = execution_row(page, execution_id)
    expect(listed).to_have_attribute("data-state", "succeeded")
    expect(listed.get_by_test_id("sagemaker-execution-template")).to_have_text(aws.form)
    assert console_errors(page) == []
