"""The frontend's queue and interrupt adapter (web/js/host_queue.js) in the real frontends: the pinned one and
the newest have the shape it knows (nothing reported, both hooks wrapped); a shape it does not know is said in
the sidebar and once in the console (tests/js feeds it the shapes themselves)."""

import pytest
from harness.browser import open_sidebar
from playwright.sync_api import expect

pytestmark = pytest.mark.browser

API = "window.comfyAPI.api.api"  # the frontend's api object, as the page holds it
ADAPTER = "/extensions/comfyui-sagemaker/js/host_queue.js"


def test_the_frontends_have_the_known_shape_and_an_unknown_one_is_said(page):
    problems = page.evaluate(f"async () => (await import({ADAPTER!r})).hostProblems()")
    assert problems == []
    assert page.evaluate(f"() => {API}.queuePrompt.__sagemakerWrapped && {API}.interrupt.__sagemakerWrapped")
    open_sidebar(page)
    degraded = page.get_by_test_id("sagemaker-host-degraded")
    expect(degraded).to_be_hidden()

    # A frontend whose queuePrompt takes one request object (fed to the adapter beside the real api, which
    # stays as it is): the Prompt on AWS section says what does not work.
    page.evaluate(f"""async () => {{
        const adapter = await import({ADAPTER!r});
        const api = {{ queuePrompt(request) {{}}, interrupt(promptId) {{}} }};
        const routes = {{ queue: () => null, interrupt: () => null }};
        adapter.install({{ api, app: {{ processingQueue: false }}, comfyAPI: window.comfyAPI }}, routes);
    }}""")
    expect(degraded).to_be_visible()
    expect(degraded).to_contain_text("This ComfyUI frontend differs from what Prompt on AWS knows")
    expect(degraded).to_contain_text("api.queuePrompt takes 1 argument,")
    warnings = [text for kind, text, _ in page.console.messages if kind == "warning" and "comfyui-sagemaker" in text]
    assert len(warnings) == 1, warnings
    assert page.evaluate(f"() => {API}.queuePrompt.__sagemakerWrapped === true")
    assert page.console.errors_from("sagemaker") == []
