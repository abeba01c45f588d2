"""The sidebar's Environments section in the real ComfyUI frontend, as a user clicks: publish an
environment from templates with a progress bar while ComfyUI stays usable, cancel a publish, name
and endpoint config checks, diff, delete (with bound templates), and the binding preflight."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import pytest
from harness.browser import human, open_sidebar, toasts
from harness.envs import wait_task
from playwright.sync_api import Page, expect

pytestmark = pytest.mark.browser

APP = "window.comfyAPI.app.app"
STYLE_LORA = ("SMTestScale", ["style.safetensors", 0.5])  # the test pack's node and a small lora

# EmptyImage -> ImageInvert -> SaveImage in the canvas: a local prompt that needs no model file.
BUILD_LOCAL_GRAPH = f"""() => {{
    const app = {APP};
    app.graph.clear();
    const add = (type, pos) => {{
        const node = window.LiteGraph.createNode(type);
        node.pos = pos;
        app.graph.add(node);
        return node;
    }};
    const empty = add("EmptyImage", [0, 0]);
    for (const w of empty.widgets) if (w.name === "width" || w.name === "height") w.value = 64;
    const invert = add("ImageInvert", [320, 0]);
    const save = add("SaveImage", [620, 0]);
    empty.connect(0, invert, 0);
    invert.connect(0, save, 0);
}}"""


def unique(prefix: str) -> str:
    """Letters and digits only: the ComfyUI (and its store) is shared by the whole session."""
    return prefix + uuid.uuid4().hex[:10]


def console_errors(page: Page, *expected: tuple[int, str]) -> list[str]:
    """The page's errors about the extension, minus the expected HTTP statuses (status, URL path)."""

    def expected_status(error: str) -> bool:
        return "Failed to load resource" in error and any(
            f"status of {status} " in error and error.endswith(f"{path})") for status, path in expected
        )

    return [e for e in page.console.errors_from("sagemaker") if not expected_status(e)]


def ui_workflow(*nodes: tuple[str, list]) -> dict:
    """A UI-format workflow of unlinked nodes, each (type, widgets_values): enough for the analysis."""
    return {
        "last_node_id": len(nodes), "last_link_id": 0, "links": [], "groups": [], "config": {}, "extra": {},
        "version": 0.4,
        "nodes": [{"id": i, "type": t, "pos": [300 * i, 0], "size": [270, 100], "flags": {}, "order": i - 1,
                   "mode": 0, "inputs": [], "outputs": [], "properties": {}, "widgets_values": values}
                  for i, (t, values) in enumerate(nodes, 1)],
    }


class Made:
    """What a test created in the shared ComfyUI, removed at its end whatever happened."""

    def __init__(self, client, comfyui):
        self.client = client
        self.comfyui = comfyui
        self.templates: list[str] = []
        self.environments: list[str] = []
        self.files: list[Path] = []

    def template(self, *nodes: tuple[str, list], environment: str | None = None) -> str:
        name = unique("T")
        prompt = {str(i): {"class_type": t, "inputs": {}} for i, (t, _) in enumerate(nodes, 1)}
        r = self.client.post("/sagemaker/templates", json={"name": name, "workflow": ui_workflow(*nodes),
                                                            "prompt": prompt, "environment": environment})
        assert r.status_code == 201, r.text
        self.templates.append(name)
        return name

    def environment(self, templates: list[str]) -> str:
        """Published through the API without an endpoint config: publish only, no worker."""
        name = unique("E")
        self.environments.append(name)
        r = self.client.post("/sagemaker/environments", json={"name": name, "templates": templates})
        assert r.status_code == 202, r.text
        task = wait_task(self.client, r.json()["task"]["id"])
        assert task["state"] == "succeeded", task
        return name

    def bind(self, template: str, environment: str | None) -> None:
        r = self.client.put(f"/sagemaker/templates/{template}", json={"environment": environment})
        assert r.status_code == 200, r.text

    def big_model(self, size: int) -> str:
        """A sparse checkpoint file: hashing (and copying) it takes seconds, storing it takes no disk."""
        name = f"big{uuid.uuid4().hex[:8]}.safetensors"
        path = self.comfyui.base / "models" / "checkpoints" / name
        self.files.append(path)
        with open(path, "wb") as f:
            f.write(uuid.uuid4().bytes)  # its own digest: no blob of an earlier run is reused
            f.truncate(size)
        return name

    def cleanup(self) -> None:
        blobs = self.comfyui.user_dir / "__sagemaker" / "store" / "blobs" / "sha256"
        for env in self.environments:
            manifest = self.client.get(f"/sagemaker/environments/{env}")
            if manifest.ok:  # a big model that got stored must not stay on disk
                for m in manifest.json()["models"]:
                    if m["name"].startswith("big"):
                        (blobs / m["sha256"]).unlink(missing_ok=True)
            self.client.delete(f"/sagemaker/environments/{env}?force=true")
        for t in self.templates:
            self.client.delete(f"/sagemaker/templates/{t}")
        for path in self.files:
            path.unlink(missing_ok=True)


@pytest.fixture
def made(client, comfyui):
    m = Made(client, comfyui)
    yield m
    m.cleanup()


def open_environments(page: Page):
    open_sidebar(page)
    section = page.get_by_test_id("sagemaker-environments")
    section.wait_for(timeout=15_000)
    # The first list load has finished once rows or the empty mark are drawn.
    page.locator('[data-testid="sagemaker-environments-list"] > *').first.wait_for(timeout=15_000)
    return section


def env_row(page: Page, name: str):
    return page.locator(f'[data-testid="sagemaker-environment-row"][data-environment="{name}"]')


def new_environment(page: Page, name: str, *templates: str):
    """Open New Environment, type the name, tick the templates once their analysis is shown."""
    page.get_by_test_id("sagemaker-environments-new").click()
    dialog = page.get_by_test_id("sagemaker-environment-dialog")
    dialog.get_by_test_id("sagemaker-environment-name").fill(name)
    for t in templates:
        choice = dialog.locator(f'[data-testid="sagemaker-environment-template"][data-template="{t}"]')
        expect(choice.get_by_test_id("sagemaker-environment-template-info")).to_contain_text("pack")
        choice.get_by_test_id("sagemaker-environment-template-check").check()
    return dialog


def is_publish(response) -> bool:
    return response.url.endswith("/sagemaker/environments") and response.request.method == "POST"


def publish(page: Page, dialog) -> str:
    """Press Publish; the task's id from the 202 answer."""
    with page.expect_response(is_publish) as answer:
        dialog.get_by_test_id("sagemaker-dialog-ok").click()
    assert answer.value.status == 202, answer.value.text()
    expect(dialog).to_have_count(0)  # the dialog closes: the progress lives in the section, ComfyUI stays usable
    return answer.value.json()["task"]["id"]


def test_publish_from_a_template_shows_progress_and_lists_it(page: Page, client, made):
    template = made.template(STYLE_LORA)
    name = unique("E")
    made.environments.append(name)
    open_environments(page)

    dialog = new_environment(page, name, template)
    choice = dialog.locator(f'[data-template="{template}"]')
    expect(choice.get_by_test_id("sagemaker-environment-template-info")).to_have_text("1 pack · 1 model")
    expect(choice.get_by_test_id("sagemaker-environment-template-missing")).to_be_hidden()
    # The summary adds up the ticked templates' models from the snapshot's sizes ("lora bytes": 10 B).
    expect(dialog.get_by_test_id("sagemaker-environment-summary")).to_have_text("1 template · 1 pack · 1 model · 10 B")
    expect(dialog.get_by_test_id("sagemaker-endpoint-kind")).to_have_value("local")
    expect(dialog.get_by_test_id("sagemaker-endpoint-sagemaker")).to_be_hidden()
    # The ticked templates are bound to it unless the box is unticked: Run needs them bound.
    expect(dialog.get_by_test_id("sagemaker-environment-bind")).to_be_checked()
    expect(dialog.get_by_test_id("sagemaker-environment-bind-note")).to_have_text(
        "Once published, their runs go to this environment.")
    task_id = publish(page, dialog)

    card = page.locator(f'[data-testid="sagemaker-job"][data-job="{task_id}"]')
    expect(card).to_have_attribute("data-state", "succeeded", timeout=60_000)
    expect(card.get_by_test_id("sagemaker-job-bar")).to_have_attribute("aria-valuenow", "100")
    expect(card.get_by_test_id("sagemaker-job-phase")).to_have_text("done: version 1")
    expect(toasts(page, f"{name} version 1")).to_be_visible()

    row = env_row(page, name)
    expect(row.get_by_test_id("sagemaker-environment-version")).to_have_text("v1")
    expect(row.get_by_test_id("sagemaker-environment-counts")).to_have_text("1 pack · 1 model")
    expect(row.get_by_test_id("sagemaker-environment-endpoint")).to_have_text("local")
    expect(row.get_by_test_id("sagemaker-environment-state")).not_to_have_text("")
    manifest = client.get(f"/sagemaker/environments/{name}").json()
    assert manifest["templates"] == [template] and manifest["endpoint"] == {"kind": "local"}
    assert client.get(f"/sagemaker/templates/{template}").json()["environment"] == name
    bound = page.locator(f'[data-testid="sagemaker-template-row"][data-template="{template}"]')
    expect(bound.get_by_test_id("sagemaker-template-environment")).to_have_text(name)
    # Publishing the canvas proposes the most recent environment (here the one just published).
    page.get_by_test_id("sagemaker-templates-publish").click()
    proposed = page.get_by_test_id("sagemaker-publish-dialog").get_by_test_id("sagemaker-publish-environment")
    expect(proposed).to_have_value(name)
    page.get_by_test_id("sagemaker-publish-dialog").get_by_test_id("sagemaker-dialog-cancel").click()
    expect(row.get_by_test_id("sagemaker-environment-size")).to_have_text(human(manifest["size"]))

    # The diff against this ComfyUI: the session's other packs and models are only here.
    row.get_by_test_id("sagemaker-environment-diff").click()
    diff = page.get_by_test_id("sagemaker-diff-panel")
    expect(diff).to_contain_text(f"{name} v1 compared with this ComfyUI")
    expect(diff.get_by_test_id("sagemaker-diff-comfyui")).to_contain_text("here and in")
    expect(diff.get_by_test_id("sagemaker-diff-models-missing-there")).to_contain_text("checkpoints/tiny.safetensors")
    expect(diff.get_by_test_id("sagemaker-diff-models-missing-here")).to_have_count(0)
    diff.get_by_test_id("sagemaker-panel-close").click()
    expect(diff).to_have_count(0)

    assert console_errors(page) == []


def test_comfyui_runs_a_local_prompt_during_a_publish_which_cancel_stops(page: Page, client, made):
    # A 4 GiB sparse checkpoint: the publish is still hashing it when the local prompt is done.
    big = made.big_model(4 << 30)
    template = made.template(STYLE_LORA, ("CheckpointLoaderSimple", [big]))
    name = unique("E")
    made.environments.append(name)
    open_environments(page)
    dialog = new_environment(page, name, template)
    summary = dialog.get_by_test_id("sagemaker-environment-summary")
    expect(summary).to_have_text("1 template · 1 pack · 2 models · 4.0 GB")
    task_id = publish(page, dialog)
    card = page.locator(f'[data-testid="sagemaker-job"][data-job="{task_id}"]')
    expect(card).to_have_attribute("data-state", "running")

    # Ordering, not timing: a local prompt queued with ComfyUI's own button finishes while the publish runs.
    page.evaluate(BUILD_LOCAL_GRAPH)
    with page.expect_response(lambda r: r.url.endswith("/api/prompt") and r.request.method == "POST") as queued:
        page.get_by_test_id("queue-button").click()
    prompt_id = queued.value.json()["prompt_id"]
    entry = client.history(prompt_id, timeout=60)
    task = client.get(f"/sagemaker/tasks/{task_id}").json()
    assert entry["status"]["status_str"] == "success", entry["status"]
    assert task["state"] == "running", f"the publish ended before the local prompt: {task}"
    expect(card.get_by_test_id("sagemaker-job-phase")).to_have_text(re.compile("hashing|packing|uploading"))
    expect(card.get_by_test_id("sagemaker-job-current")).not_to_have_text("")

    card.get_by_test_id("sagemaker-job-cancel").click()
    expect(card).to_have_attribute("data-state", "cancelled", timeout=30_000)
    expect(card.get_by_test_id("sagemaker-job-phase")).to_have_text("cancelled")
    expect(card.get_by_test_id("sagemaker-job-cancel")).to_be_hidden()
    expect(toasts(page, "Publish cancelled")).to_be_visible()
    assert client.get(f"/sagemaker/environments/{name}").status_code == 404
    expect(env_row(page, name)).to_have_count(0)
    card.get_by_test_id("sagemaker-job-dismiss").click()
    expect(card).to_have_count(0)
    assert console_errors(page) == []


def test_invalid_name_and_endpoint_config_are_refused_in_the_dialog(page: Page, client):
    rule = client.get("/sagemaker/rules").json()["environment_name"]
    open_environments(page)
    page.get_by_test_id("sagemaker-environments-new").click()
    dialog = page.get_by_test_id("sagemaker-environment-dialog")
    name_input = dialog.get_by_test_id("sagemaker-environment-name")
    message = dialog.get_by_test_id("sagemaker-environment-name-error")
    ok = dialog.get_by_test_id("sagemaker-dialog-ok")
    dialog.get_by_test_id("sagemaker-environment-include-all").check()  # no template needed to publish
    expect(ok).to_be_disabled()  # no name yet

    sent = []
    page.on("request", lambda r: sent.append(r.url) if r.method == "POST" else None)
    for bad in ("bad name", "A" * (rule["max_length"] + 1), "dash-name"):
        name_input.fill(bad)
        expect(message).to_have_text(rule["description"])
        expect(ok).to_be_disabled()
        name_input.press("Enter")
    name = unique("E")
    name_input.fill(name)
    expect(message).to_be_hidden()
    expect(ok).to_be_enabled()

    # SageMaker fields appear with the kind; out-of-range values are refused before sending.
    endpoint_error = dialog.get_by_test_id("sagemaker-endpoint-error")
    dialog.get_by_test_id("sagemaker-endpoint-kind").select_option("sagemaker")
    expect(dialog.get_by_test_id("sagemaker-endpoint-mode")).to_have_value("async")
    expect(dialog.get_by_test_id("sagemaker-endpoint-mode-note")).to_contain_text("60 s")
    dialog.get_by_test_id("sagemaker-endpoint-count").fill("0")
    expect(endpoint_error).to_contain_text("at least 1")
    expect(ok).to_be_disabled()
    dialog.get_by_test_id("sagemaker-endpoint-count").fill("1")
    dialog.get_by_test_id("sagemaker-endpoint-autoscaling").check()
    dialog.get_by_test_id("sagemaker-endpoint-mode").select_option("realtime")
    expect(endpoint_error).to_contain_text("only for async")
    expect(ok).to_be_disabled()
    dialog.get_by_test_id("sagemaker-endpoint-mode").select_option("async")
    expect(endpoint_error).to_be_hidden()
    assert [u for u in sent if "/sagemaker/environments" in u] == []

    # The instance cap is the server's to know: its 400 message is shown in the dialog, nothing starts.
    dialog.get_by_test_id("sagemaker-endpoint-max").fill("99")
    expect(ok).to_be_enabled()
    with page.expect_response(is_publish) as answer:
        ok.click()
    assert answer.value.status == 400
    expect(dialog.get_by_test_id("sagemaker-dialog-error")).to_contain_text("over the cap")
    # No publish of it is shown (an earlier test's finished card may still be, for a few seconds).
    expect(page.get_by_test_id("sagemaker-job").filter(has_text=name)).to_have_count(0)
    dialog.get_by_test_id("sagemaker-dialog-cancel").click()
    expect(dialog).to_have_count(0)
    assert console_errors(page, (400, "/api/sagemaker/environments")) == []


def test_delete_with_bound_templates_offers_delete_anyway(page: Page, client, made):
    template = made.template(STYLE_LORA)
    bound_env = made.environment([template])
    made.bind(template, bound_env)
    other_env = made.environment([template])
    open_environments(page)

    # Bound templates are known when the dialog opens: it says so and offers "Delete anyway".
    env_row(page, bound_env).get_by_test_id("sagemaker-environment-delete").click()
    dialog = page.get_by_test_id("sagemaker-environment-delete-dialog")
    note = dialog.get_by_test_id("sagemaker-environment-delete-note")
    expect(note).to_contain_text(f"{template} is bound to {bound_env}")
    expect(dialog.get_by_test_id("sagemaker-dialog-ok")).to_have_text("Delete anyway")
    dialog.get_by_test_id("sagemaker-dialog-ok").click()
    expect(env_row(page, bound_env)).to_have_count(0)
    assert client.get(f"/sagemaker/environments/{bound_env}").status_code == 404

    # Bound after the dialog opened: the server's 409 is shown, then "Delete anyway" forces it.
    env_row(page, other_env).get_by_test_id("sagemaker-environment-delete").click()
    expect(dialog.get_by_test_id("sagemaker-dialog-ok")).to_have_text("Delete")
    made.bind(template, other_env)
    dialog.get_by_test_id("sagemaker-dialog-ok").click()
    expect(dialog.get_by_test_id("sagemaker-dialog-error")).to_contain_text(f"templates {template} are bound to")
    expect(dialog.get_by_test_id("sagemaker-dialog-ok")).to_have_text("Delete anyway")
    assert client.get(f"/sagemaker/environments/{other_env}").status_code == 200
    dialog.get_by_test_id("sagemaker-dialog-ok").click()
    expect(env_row(page, other_env)).to_have_count(0)
    expect(dialog).to_have_count(0)
    assert client.get(f"/sagemaker/environments/{other_env}").status_code == 404
    assert console_errors(page, (409, f"/api/sagemaker/environments/{other_env}")) == []


def test_binding_preflight_names_what_the_environment_lacks(page: Page, client, made):
    first = made.template(STYLE_LORA)
    env = made.environment([first])
    made.bind(first, env)
    second = made.template(("CheckpointLoaderSimple", ["tiny.safetensors"]))
    open_sidebar(page)
    templates = page.get_by_test_id("sagemaker-templates")
    templates.locator(f'[data-template="{second}"]').get_by_test_id("sagemaker-template-rebind").click()
    rebind = page.get_by_test_id("sagemaker-rebind-dialog")
    preflight = rebind.get_by_test_id("sagemaker-preflight")
    expect(preflight).to_be_hidden()  # unbound: nothing to check
    consequence = rebind.get_by_test_id("sagemaker-rebind-consequence")
    expect(consequence).to_have_text("No change.")
    rebind.get_by_test_id("sagemaker-rebind-environment").select_option(env)
    expect(preflight.get_by_test_id("sagemaker-preflight-item")).to_have_text(["model checkpoints/tiny.safetensors"])
    expect(consequence).to_contain_text(f"New runs of {second} go to {env};")  # said before Save

    # The offer opens New Environment for a new version: the bound template and this one ticked.
    preflight.get_by_test_id("sagemaker-preflight-publish").click()
    dialog = page.get_by_test_id("sagemaker-environment-dialog")
    expect(dialog).to_contain_text(f"New version of {env}")
    expect(dialog.get_by_test_id("sagemaker-environment-name")).to_have_value(env)
    expect(dialog.get_by_test_id("sagemaker-environment-name-note")).to_have_text(f"publishes version 2 of {env}")
    checked = dialog.locator('[data-testid="sagemaker-environment-template-check"]:checked')
    expect(checked).to_have_count(2)
    assert sorted(checked.evaluate_all("(boxes) => boxes.map((b) => b.value)")) == sorted([first, second])
    expect(dialog.get_by_test_id("sagemaker-environment-summary")).to_contain_text("2 templates · 1 pack · 2 models")
    dialog.get_by_test_id("sagemaker-dialog-cancel").click()
    rebind.get_by_test_id("sagemaker-dialog-cancel").click()

    # The bound template's own environment has what it needs: the check says so when the dialog opens.
    templates.locator(f'[data-template="{first}"]').get_by_test_id("sagemaker-template-rebind").click()
    ok = rebind.get_by_test_id("sagemaker-preflight-ok")
    expect(ok).to_contain_text(f"{env} v1 has the packs and models {first} needs")
    rebind.get_by_test_id("sagemaker-dialog-cancel").click()
    assert console_errors(page) == []
