"""The run form of a selected template in the sidebar: built from the template's parameter schema,
prefilled with the defaults; Run sends the values, the server's 422 reasons show next to the inputs."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from .test_templates import console_errors, open_templates, row, unique_name

pytestmark = pytest.mark.browser


def template_body(name: str) -> dict:
    return {
        "name": name,
        "workflow": {"nodes": [], "links": [], "extra": {}, "version": 0.4},
        "prompt": {
            "1": {"class_type": "SageMakerParamInt", "inputs": {
                "name": "width", "description": "", "default": 8, "min": 1, "max": 64, "step": 1,
                "required": False}},
            "2": {"class_type": "EmptyImage", "inputs": {"width": ["1", 0], "height": 8, "batch_size": 1,
                                                         "color": 0}},
            "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "form"}},
        },
        "environment": None,
    }


def test_form_from_the_schema_runs_and_shows_the_422_reason(page: Page, client):
    name, plain = unique_name(), unique_name()
    created = client.post("/sagemaker/templates", json=template_body(name))
    assert created.status_code == 201, created.text
    without = {**template_body(plain), "prompt": {
        "1": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}}}}
    assert client.post("/sagemaker/templates", json=without).status_code == 201
    # What the server says about width=999 (the form must show exactly that).
    bad = client.post(f"/sagemaker/templates/{name}/executions", json={"inputs": {"width": 999}})
    assert bad.status_code == 422, bad.text
    reason = bad.json()["error"]["fields"]["width"]
    unbound = client.post(f"/sagemaker/templates/{name}/executions", json={"inputs": {"width": 16}})
    assert unbound.status_code == 400, unbound.text
    try:
        open_templates(page)
        form = page.get_by_test_id("sagemaker-param-form")
        row(page, name).get_by_test_id("sagemaker-template-name").click()
        expect(form).to_be_visible()
        width = form.locator('[data-testid="sagemaker-param-input"][data-param="width"]')
        expect(width).to_have_attribute("type", "number")
        expect(width).to_have_value("8")
        expect(width).to_have_attribute("min", "1")
        expect(width).to_have_attribute("max", "64")
        message = form.locator('[data-testid="sagemaker-param-error"][data-param="width"]')
        expect(message).to_be_hidden()

        width.fill("999")
        expect(message).to_be_visible()  # checked as typed
        with page.expect_response(lambda r: r.url.endswith(f"/templates/{name}/executions")) as answer:
            form.get_by_test_id("sagemaker-param-run").click()
        assert answer.value.status == 422
        assert answer.value.request.post_data_json == {"inputs": {"width": 999}}
        expect(message).to_have_text(reason)

        # A valid value: the template is bound to no environment, so the 400 is a toast.
        width.fill("16")
        expect(message).to_be_hidden()
        form.get_by_test_id("sagemaker-param-run").click()
        expect(page.locator(".p-toast-message").filter(has_text=unbound.json()["error"]["message"])).to_be_visible()

        # A template without parameters shows no form.
        row(page, plain).get_by_test_id("sagemaker-template-name").click()
        expect(form).to_be_hidden()
    finally:
        client.delete(f"/sagemaker/templates/{name}")
        client.delete(f"/sagemaker/templates/{plain}")
    path = f"/api/sagemaker/templates/{name}/executions"
    assert console_errors(page, (422, path), (400, path)) == []
