"""The sidebar's Templates section in the real ComfyUI frontend, as a user clicks:
publish the canvas, load it back, rebind, delete; name rules and duplicates."""

from __future__ import annotations

import re
import uuid

import pytest
from harness.browser import open_sidebar, toasts
from playwright.sync_api import Page, expect

pytestmark = pytest.mark.browser

APP = "window.comfyAPI.app.app"  # the ComfyUI app object, as extensions import it
LOADED_TEMPLATE = f"() => {APP}.graph.extra?.sagemaker?.template ?? null"


# Chromium logs every 4xx fetch as a console error; a test names the ones it provokes on purpose.
EXPECTED_HTTP: list[tuple[int, str]] = []


def console_errors(page: Page, *expected: tuple[int, str]) -> list[str]:
    """The page's errors about the extension, minus the expected HTTP statuses (status, URL path)."""

    def expected_status(error: str) -> bool:
        return "Failed to load resource" in error and any(
            f"status of {status} " in error and error.endswith(f"{path})")
            for status, path in EXPECTED_HTTP + list(expected)
        )

    return [e for e in page.console.errors_from("sagemaker") if not expected_status(e)]


def unique_name() -> str:
    """Letters and digits only: the ComfyUI (and its store) is shared by the whole session."""
    return "T" + uuid.uuid4().hex[:12]


def open_templates(page: Page) -> None:
    open_sidebar(page)
    page.get_by_test_id("sagemaker-templates").wait_for(timeout=15_000)
    # The first list load has finished once rows or the empty mark are drawn.
    page.locator('[data-testid="sagemaker-templates-list"] > *').first.wait_for(timeout=15_000)


def row(page: Page, name: str):
    return page.locator(f'[data-testid="sagemaker-template-row"][data-template="{name}"]')


def publish(page: Page, name: str) -> None:
    """Publish the canvas as a new template, bound to no environment (the dialog proposes the newest)."""
    page.get_by_test_id("sagemaker-templates-publish").click()
    dialog = page.get_by_test_id("sagemaker-publish-dialog")
    dialog.get_by_test_id("sagemaker-publish-name").fill(name)
    dialog.get_by_test_id("sagemaker-publish-environment").select_option("")
    dialog.get_by_test_id("sagemaker-dialog-ok").click()


# The host's workflow tabs, through its public workflow store.
ACTIVE_TAB = f"() => {APP}.extensionManager.workflow.activeWorkflow?.path ?? null"
OPEN_TABS = f"() => {APP}.extensionManager.workflow.openWorkflows.map((w) => w.path)"


def test_publish_load_rebind_delete(page: Page, client):
    name = unique_name()
    open_templates(page)

    # Publish says it is at it until done (the OK button's texts are recorded as they change), then the unsaved tab
    # it was published from is named after the template (issue 32).
    page.get_by_test_id("sagemaker-templates-publish").click()
    dialog = page.get_by_test_id("sagemaker-publish-dialog")
    dialog.get_by_test_id("sagemaker-publish-name").fill(name)
    choose = dialog.get_by_test_id("sagemaker-publish-environment")
    choose.select_option("")
    expect(choose.locator('option[value=""]')).to_have_attribute("title", re.compile("cannot run until"))
    ok = dialog.get_by_test_id("sagemaker-dialog-ok")
    ok.evaluate("""(ok) => {
        window.__smOkTexts = [];
        new MutationObserver((records) => window.__smOkTexts.push(
            ...records.flatMap((r) => [...r.addedNodes].map((n) => n.textContent)))).observe(ok, { childList: true });
    }""")
    ok.click()
    expect(page.get_by_test_id("sagemaker-publish-dialog")).to_have_count(0)
    assert page.evaluate("() => window.__smOkTexts") == ["Publishing…", "Publish"]
    page.wait_for_function(f"(p) => ({ACTIVE_TAB})() === p", arg=f"workflows/{name}.json")
    template_row = row(page, name)
    expect(template_row.get_by_test_id("sagemaker-template-environment")).to_have_text("unbound")
    expect(template_row.get_by_test_id("sagemaker-template-environment")).to_have_attribute(
        "title", re.compile("cannot run until a designer binds it"))
    expect(template_row.get_by_test_id("sagemaker-template-version")).to_have_text("v1")
    published = client.get(f"/sagemaker/templates/{name}").json()
    assert published["environment"] is None and published["version"] == 1
    assert published["workflow"]["extra"]["sagemaker"]["template"] == name
    assert published["prompt"], "the API-format prompt was sent"
    # Publishing records the template in the canvas too.
    assert page.evaluate(LOADED_TEMPLATE) == name
    expect(template_row.get_by_test_id("sagemaker-template-loaded")).to_be_visible()

    # Another graph in the canvas: the marker goes; loading the template brings it back.
    page.evaluate(f"() => {APP}.loadGraphData()")
    assert page.evaluate(LOADED_TEMPLATE) is None
    expect(template_row.get_by_test_id("sagemaker-template-loaded")).to_be_hidden()
    template_row.get_by_test_id("sagemaker-template-name").click()
    expect(template_row.get_by_test_id("sagemaker-template-loaded")).to_be_visible()
    assert page.evaluate(LOADED_TEMPLATE) == name
    assert page.evaluate(f"() => {APP}.graph.nodes.length") == len(published["workflow"]["nodes"])

    # Rebind, replacing the workflow with the current graph (one node more than published).
    page.evaluate(f"""() => {{
        const node = window.LiteGraph.createNode("Note");
        node.pos = [40, 40];
        {APP}.graph.add(node);
    }}""")
    template_row.get_by_test_id("sagemaker-template-rebind").click()
    rebind = page.get_by_test_id("sagemaker-rebind-dialog")
    expect(rebind).to_contain_text("version 1")
    expect(rebind.get_by_test_id("sagemaker-rebind-environment")).to_have_value("")
    rebind.get_by_test_id("sagemaker-rebind-replace").check()
    rebind.get_by_test_id("sagemaker-dialog-ok").click()
    expect(rebind).to_have_count(0)
    expect(template_row.get_by_test_id("sagemaker-template-version")).to_have_text("v2")
    updated = client.get(f"/sagemaker/templates/{name}").json()
    assert updated["version"] == 2 and updated["environment"] is None
    assert len(updated["workflow"]["nodes"]) == len(published["workflow"]["nodes"]) + 1
    assert updated["workflow"]["extra"]["sagemaker"]["template"] == name

    # Delete: Cancel keeps it; the confirmation deletes it.
    template_row.get_by_test_id("sagemaker-template-delete").click()
    confirm = page.get_by_test_id("sagemaker-delete-dialog")
    expect(confirm).to_contain_text(name)
    confirm.get_by_test_id("sagemaker-dialog-cancel").click()
    expect(confirm).to_have_count(0)
    assert client.get(f"/sagemaker/templates/{name}").status_code == 200
    template_row.get_by_test_id("sagemaker-template-delete").click()
    confirm.get_by_test_id("sagemaker-dialog-ok").click()
    expect(template_row).to_have_count(0)
    expect(confirm).to_have_count(0)
    gone = client.get(f"/sagemaker/templates/{name}")
    assert gone.status_code == 404 and gone.json()["error"]["code"] == "not_found"

    assert console_errors(page) == []


def test_invalid_names_show_the_rule_and_send_nothing(page: Page, client):
    rule = client.get("/sagemaker/rules").json()["template_name"]
    open_templates(page)
    page.get_by_test_id("sagemaker-templates-publish").click()
    dialog = page.get_by_test_id("sagemaker-publish-dialog")
    name_input = dialog.get_by_test_id("sagemaker-publish-name")
    message = dialog.get_by_test_id("sagemaker-publish-name-error")
    ok = dialog.get_by_test_id("sagemaker-dialog-ok")
    expect(ok).to_be_disabled()  # empty

    sent = []
    page.on("request", lambda r: sent.append((r.method, r.url)) if "/sagemaker/templates" in r.url else None)
    for bad in ("bad_name", "A" * (rule["max_length"] + 1), "tab\tname"):
        name_input.fill(bad)
        expect(message).to_be_visible()
        expect(message).to_have_text(rule["description"])
        expect(ok).to_be_disabled()
        name_input.press("Enter")
        ok.click(force=True)  # a disabled button swallows the click
    name_input.fill("A" * rule["max_length"])
    expect(message).to_be_hidden()
    expect(ok).to_be_enabled()
    dialog.get_by_test_id("sagemaker-dialog-cancel").click()
    expect(dialog).to_have_count(0)

    # Ordering, not timing: a request the clicks above had sent would come before this refresh. (Reads only
    # besides: the list also refreshes itself when the store changes, e.g. after an earlier test's delete.)
    with page.expect_response(lambda r: r.url.endswith("/sagemaker/templates")):
        page.get_by_test_id("sagemaker-templates-refresh").click()
    assert "GET" in [method for method, _ in sent]
    assert [(method, url) for method, url in sent if method != "GET"] == []
    assert console_errors(page) == []


def test_duplicate_name_shows_the_409_message(page: Page, client):
    name = unique_name()
    body = {
        "name": name,
        "workflow": {"nodes": [], "links": [], "extra": {}, "version": 0.4},
        "prompt": {"1": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}}},
        "environment": None,
    }
    first = client.post("/sagemaker/templates", json=body)
    assert first.status_code == 201, first.text
    again = client.post("/sagemaker/templates", json=body)
    assert again.status_code == 409 and again.json()["error"]["code"] == "template_exists"
    late = unique_name()
    conflict = again.json()["error"]["message"].replace(name, late)
    try:
        open_templates(page)
        expect(row(page, name)).to_have_count(1)
        page.get_by_test_id("sagemaker-templates-publish").click()
        dialog = page.get_by_test_id("sagemaker-publish-dialog")
        dialog.get_by_test_id("sagemaker-publish-environment").select_option("")
        name_input = dialog.get_by_test_id("sagemaker-publish-name")
        ok = dialog.get_by_test_id("sagemaker-dialog-ok")
        # The name check says it first, and Publish waits for another name (issue 32).
        name_input.fill(name)
        expect(dialog.get_by_test_id("sagemaker-publish-name-note")).to_contain_text("publishing would be refused")
        expect(ok).to_be_disabled()
        # A name taken after its check (by someone else meanwhile): the server's 409 is said.
        with page.expect_response(lambda r: r.url.endswith("/api/sagemaker/names/check")):
            name_input.fill(late)
        expect(ok).to_be_enabled()
        assert client.post("/sagemaker/templates", json={**body, "name": late}).status_code == 201
        ok.click()
        expect(toasts(page, conflict)).to_be_visible()
        expect(dialog.get_by_test_id("sagemaker-dialog-error")).to_have_text(conflict)
        expect(ok).to_be_enabled()  # fix the name and retry
        assert client.get(f"/sagemaker/templates/{late}").json()["version"] == 1  # untouched
        # A failed publish does not claim the canvas for the template.
        assert page.evaluate(LOADED_TEMPLATE) != late
    finally:
        client.delete(f"/sagemaker/templates/{name}")
        client.delete(f"/sagemaker/templates/{late}")
    assert console_errors(page, (409, "/api/sagemaker/templates")) == []


def test_a_template_opens_in_its_own_tab_and_plus_offers_to_update_it(page: Page, client):
    name = unique_name()
    open_templates(page)
    publish(page, name)
    template_row = row(page, name)
    expect(template_row.get_by_test_id("sagemaker-template-version")).to_have_text("v1")
    try:
        # Loading opens a tab named after the template; loading it again goes back to that tab. A load has ended
        # when its analysis is asked for (web/js/templates.js select(): the analysis follows the loaded graph): the
        # publish left this very tab active, and a load still under way would take it back from the tab opened next.
        def analyzed(response) -> bool:
            return response.url.endswith("/api/sagemaker/analyze")

        with page.expect_response(analyzed):
            template_row.get_by_test_id("sagemaker-template-name").click()
        page.wait_for_function(f"(p) => ({ACTIVE_TAB})() === p", arg=f"workflows/{name}.json")
        tabs = page.evaluate(OPEN_TABS)
        # Another tab meanwhile: a new blank workflow, as the user opens one (loadGraphData() into a named temporary
        # workflow may replace the template's own unsaved tab instead of opening another, depending on whether the
        # frontend's change tracker has marked it modified yet: both frontends failed that way now and then).
        page.evaluate(f"() => {APP}.extensionManager.command.execute('Comfy.NewBlankWorkflow')")
        page.wait_for_function(f"(p) => ({ACTIVE_TAB})() !== p", arg=f"workflows/{name}.json")
        with page.expect_response(analyzed):
            template_row.get_by_test_id("sagemaker-template-name").click()
        page.wait_for_function(f"(p) => ({ACTIVE_TAB})() === p", arg=f"workflows/{name}.json")
        assert page.evaluate(OPEN_TABS).count(f"workflows/{name}.json") == 1
        assert page.evaluate(LOADED_TEMPLATE) == name
        assert len(page.evaluate(OPEN_TABS)) == len(tabs) + 1  # only the blank one opened above

        # + on a canvas that is a template offers to update it (the default) with the edited canvas.
        page.evaluate(f"""() => {{
            const node = window.LiteGraph.createNode("Note");
            node.pos = [40, 40];
            {APP}.graph.add(node);
        }}""")
        page.get_by_test_id("sagemaker-templates-publish").click()
        dialog = page.get_by_test_id("sagemaker-publish-dialog")
        expect(dialog.get_by_test_id("sagemaker-publish-update")).to_be_checked()
        expect(dialog).to_contain_text(f"update {name} with the canvas (version 2)")
        expect(dialog.get_by_test_id("sagemaker-publish-name")).to_be_hidden()
        expect(dialog.get_by_test_id("sagemaker-publish-environment")).to_have_value("")  # its own binding
        dialog.get_by_test_id("sagemaker-dialog-ok").click()
        expect(template_row.get_by_test_id("sagemaker-template-version")).to_have_text("v2")
        updated = client.get(f"/sagemaker/templates/{name}").json()
        assert any(n["type"] == "Note" for n in updated["workflow"]["nodes"])
        assert [t["name"] for t in client.get("/sagemaker/templates").json()["templates"]].count(name) == 1

        # A new one instead: a name differing only in case from an existing one is warned about.
        page.get_by_test_id("sagemaker-templates-publish").click()
        dialog.get_by_test_id("sagemaker-publish-new").check()
        name_input = dialog.get_by_test_id("sagemaker-publish-name")
        expect(name_input).to_be_visible()
        name_input.fill(name.lower())
        note = dialog.get_by_test_id("sagemaker-publish-name-note")
        expect(note).to_have_text(f"{name} already exists: names that differ only in case are different templates.")
        name_input.fill(name)
        expect(note).to_contain_text(f"{name} exists: publishing would be refused")
        name_input.fill(unique_name())
        expect(note).to_be_hidden()
        dialog.get_by_test_id("sagemaker-dialog-cancel").click()
    finally:
        client.delete(f"/sagemaker/templates/{name}")
    assert console_errors(page) == []
