"""The real ComfyUI frontend in headless Chromium, as a user clicks."""

import pytest

pytestmark = pytest.mark.browser


def test_sidebar_tab_shows_store_and_version(page):
    page.click(".sagemaker-tab-button")
    store = page.get_by_test_id("sagemaker-store")
    store.wait_for(timeout=15_000)
    assert "folder" in store.inner_text()
    version = page.get_by_test_id("sagemaker-version").inner_text()
    assert "0.1.0" in version and "ComfyUI" in version
    assert page.console.errors_from("sagemaker") == []
    assert page.console.errors_from("comfyui-sagemaker") == []
