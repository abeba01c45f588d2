"""The New Environment dialog's warm-up choice (issue 28 point 8, issue 35 point 3), as a designer clicks:
off by default (a warm-up is a run nobody asked for, at every cold start); ticked, the publish asks for the
first ticked template's prompt with its parameters' defaults, and the manifest carries it for the workers;
with everything installed included it cannot be ticked."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from .test_environments import STYLE_LORA, Made, made, new_environment, open_environments, publish, unique

pytestmark = pytest.mark.browser
__all__ = ["made"]  # the fixture, used by name


def test_the_warm_up_is_the_designers_choice_and_reaches_the_manifest(page: Page, client, made: Made):
    template = made.template(STYLE_LORA)
    name = unique("E")
    made.environments.append(name)
    open_environments(page)

    dialog = new_environment(page, name, template)
    box = dialog.get_by_test_id("sagemaker-environment-warmup")
    expect(box).not_to_be_checked()
    dialog.get_by_test_id("sagemaker-environment-include-all").check()
    expect(box).to_be_disabled()
    dialog.get_by_test_id("sagemaker-environment-include-templates").check()
    box.check()
    with page.expect_request(lambda r: r.url.endswith("/sagemaker/environments") and r.method == "POST") as sent:
        task_id = publish(page, dialog)
    assert sent.value.post_data_json["warmup"] is True
    card = page.locator(f'[data-testid="sagemaker-job"][data-job="{task_id}"]')
    expect(card).to_have_attribute("data-state", "succeeded", timeout=60_000)
    warmup = client.get(f"/sagemaker/environments/{name}").json()["warmup"]
    assert warmup["template"] == template and warmup["prompt"]["1"]["class_type"] == "SMTestScale"
