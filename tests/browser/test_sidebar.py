"""The real ComfyUI frontend in headless Chromium, as a user clicks."""

import re
import uuid

import pytest
from harness.browser import APP, TAB_ID, new_page, open_sidebar, sidebar_button, wait_ready
from harness.images import png
from playwright.sync_api import expect

pytestmark = pytest.mark.browser


def test_sidebar_tab_shows_store_and_version(page):
    # The host lists our tab through its public API and renders a button for it, found by its
    # accessible name (our tooltip); clicking it opens the tab, clicking again closes it.
    tabs = page.evaluate(f"() => {APP}.extensionManager.sidebarTab.sidebarTabs.map((t) => t.id)")
    assert tabs.count(TAB_ID) == 1, tabs
    button = sidebar_button(page)
    expect(button).to_have_count(1)
    # Its label (shown under the icon when the sidebar is not small) and tooltip say whose templates these are:
    # ComfyUI's own "Templates" tab sits next to it (issue 32).
    title = page.evaluate(f"() => {APP}.extensionManager.sidebarTab.sidebarTabs.find((t) => t.id === {TAB_ID!r}).title")
    assert title == "SageMaker templates"
    expect(button).to_have_attribute("aria-label",
                                     re.compile(r"^SageMaker templates: .*not ComfyUI's example Templates"))
    button.click()
    expect(page.get_by_test_id("sagemaker-panel")).to_be_visible()
    assert page.evaluate(f"() => {APP}.extensionManager.sidebarTab.activeSidebarTabId") == TAB_ID
    store = page.get_by_test_id("sagemaker-store")
    store.wait_for(timeout=15_000)
    assert "folder" in store.inner_text()
    # ... which folder: a second designer sees whether the team shares it (issue 32).
    folder = page.evaluate("() => fetch('/sagemaker/health').then((r) => r.json()).then((h) => h.store.path)")
    assert folder and folder in store.inner_text()
    version = page.get_by_test_id("sagemaker-version").inner_text()
    assert "0.1.0" in version and "ComfyUI" in version

    # A section collapses from its title, and stays so in this browser when the tab is drawn again.
    templates = page.get_by_test_id("sagemaker-templates")
    toggle = templates.get_by_test_id("sagemaker-section-toggle")
    listed = templates.get_by_test_id("sagemaker-templates-list")
    expect(toggle).to_have_attribute("aria-expanded", "true")
    toggle.click()
    expect(toggle).to_have_attribute("aria-expanded", "false")
    expect(listed).to_be_hidden()
    expect(templates.get_by_test_id("sagemaker-templates-refresh")).to_be_visible()
    button.click()
    expect(page.get_by_test_id("sagemaker-panel")).to_have_count(0)
    button.click()
    expect(toggle).to_have_attribute("aria-expanded", "false")
    expect(listed).to_be_hidden()
    expect(page.get_by_test_id("sagemaker-executions").get_by_test_id("sagemaker-section-toggle")).to_have_attribute(
        "aria-expanded", "true")
    toggle.click()
    expect(listed).to_be_visible()
    assert page.evaluate("() => localStorage.getItem('sagemaker.collapsed')") == "[]"
    button.click()
    expect(page.get_by_test_id("sagemaker-panel")).to_have_count(0)
    assert page.console.errors_from("sagemaker") == []
    assert page.console.errors_from("comfyui-sagemaker") == []


TOKEN = "browser-token-" + "7" * 8


@pytest.fixture
def guarded_page(browser, aws_designer):
    """A ComfyUI that needs the token (configured here, the same as one listening beyond this machine: the
    tier's ComfyUI whose configuration tests change, put back after), and a page of a browser that lacks it."""
    r = aws_designer.client().put("/sagemaker/config", json={"changes": {"token": TOKEN}})
    assert r.status_code == 200, r.text
    page = new_page(browser, aws_designer)
    try:
        yield page, aws_designer
    finally:
        page.context.close()


def test_a_comfyui_that_needs_the_token_asks_for_it_once_per_browser(guarded_page):
    page, server = guarded_page
    open_sidebar(page)
    form = page.get_by_test_id("sagemaker-token")
    expect(form).to_be_visible()
    expect(page.get_by_test_id("sagemaker-templates")).to_have_count(0)  # nothing else is readable yet
    form.get_by_test_id("sagemaker-token-input").fill(TOKEN)
    form.get_by_test_id("sagemaker-token-save").click()
    expect(page.get_by_test_id("sagemaker-store")).to_contain_text("folder")
    expect(page.get_by_test_id("sagemaker-token")).to_have_count(0)

    # Kept in this browser: a reload needs nothing, and the page is subscribed to the extension's events
    # (a file put in input/ shows up without a refresh).
    page.reload(wait_until="domcontentloaded")
    wait_ready(page)
    open_sidebar(page)
    section = page.get_by_test_id("sagemaker-inputs")
    expect(section).to_be_visible()
    section.get_by_test_id("sagemaker-inputs-toggle").click()
    name = f"tok{uuid.uuid4().hex[:8]}.png"
    (server.input_dir / name).write_bytes(png(2, 2, (9, 9, 9)))
    row = section.locator(f'[data-testid="sagemaker-input-row"][data-input="{name}"]')
    expect(row).to_have_attribute("data-state", "synced", timeout=30_000)
