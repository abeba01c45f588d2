"""Save Image (S3) in the real frontend: after a run its node lists the URIs it wrote, in a box that
is neither sent as an input nor saved with the workflow. The ComfyUI's boto3 talks to moto's server."""

from __future__ import annotations

import json
import uuid

import pytest
from harness.browser import new_page
from playwright.sync_api import expect

from .test_prompt_on_aws import APP, BUILD_CHAIN

pytestmark = pytest.mark.browser


@pytest.fixture
def s3_page(browser, aws_comfyui):
    """A page on the browser tier's ComfyUI whose boto3 talks to moto."""
    page = new_page(browser, aws_comfyui)
    try:
        yield page
    finally:
        page.context.close()


def test_the_save_node_lists_what_it_wrote(s3_page, moto_server):
    page, s3 = s3_page, moto_server.client("s3")
    bucket = f"canvas-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    chain = json.loads(page.evaluate(BUILD_CHAIN, [
        ["EmptyImage", {"width": 8, "height": 8, "batch_size": 2, "color": 0x336699}],
        ["SageMakerSaveImageS3", {"prefix": f"s3://{bucket}/canvas/", "filename_prefix": "run"}]]))
    save = chain["ids"][-1]
    assert "s3_uris" not in chain["output"][str(save)]["inputs"]
    page.get_by_test_id("queue-button").click()

    box = page.get_by_test_id("sagemaker-s3-uris")
    expect(box).to_have_count(1, timeout=60_000)
    expect(box).to_have_js_property("readOnly", True)
    written = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="canvas/").get("Contents", []))
    assert len(written) == 2
    expect(box).to_have_value("\n".join(f"s3://{bucket}/{key}" for key in written))

    # The box is the page's only: the next prompt and the saved workflow leave it out.
    again = json.loads(page.evaluate(f"""async () => {{
        const {{ workflow, output }} = await {APP}.graphToPrompt();
        return JSON.stringify({{ workflow, output }});
    }}"""))
    assert set(again["output"][str(save)]["inputs"]) == {"images", "prefix", "filename_prefix"}
    [node] = [n for n in again["workflow"]["nodes"] if str(n["id"]) == str(save)]  # newer frontends gave the id as text
    assert node["widgets_values"] == [f"s3://{bucket}/canvas/", "run"]
