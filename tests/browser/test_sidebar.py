"""The real ComfyUI frontend in headless Chromium, as a user clicks."""

import pytest
from harness.browser import APP, TAB_ID, sidebar_button
from playwright.sync_api import expect

pytestmark = pytest.mark.browser


def test_sidebar_tab_shows_store_and_version(page):
    # The host lists our tab through its public API and renders a button for it, found by its
    # accessible name (our tooltip); clicking it opens the tab, clicking again closes it.
    tabs = page.evaluate(f"() => {APP}.extensionManager.sidebarTab.sidebarTabs.map((t) => t.id)")
    assert tabs.count(TAB_ID) == 1, tabs
    button = sidebar_button(page)
    expect(button).to_have_count(1)
    button.click()
    expect(page.get_by_test_id("sagemaker-panel")).to_be_visible()
    assert page.evaluate(f"() => {APP}.extensionManager.sidebarTab.activeSidebarTabId") == TAB_ID
    store = page.get_by_test_id("sagemaker-store")
    store.wait_for(timeout=15_000)
    assert "folder" in store.inner_text()
    version = page.get_by_test_id("sagemaker-version").inner_text()
    assert "0.1.0" in version and "ComfyUI" in version
    button.click()
    expect(page.get_by_test_id("sagemaker-panel")).to_have_count(0)
    assert page.console.errors_from("sagemaker") == []
    assert page.console.errors_from("comfyui-sagemaker") == []
