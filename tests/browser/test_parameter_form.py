"""The run form of a selected template in the sidebar: built from the template's parameter schema,
prefilled with the defaults; Run sends the values (to this ComfyUI with Prompt on AWS off, to the
template's endpoint with it on: test_prompt_on_aws runs it there, on that module's endpoint), the
server's 422 reasons show next to the inputs, and the run's images show under the form when it ends."""

from __future__ import annotations

import uuid
from io import BytesIO

import pytest
from harness.browser import toast_count, toasts
from harness.images import png
from playwright.sync_api import Page, expect

from .test_templates import console_errors, open_templates, row, unique_name

pytestmark = pytest.mark.browser

EMPTY_GRAPH = {"nodes": [], "links": [], "extra": {}, "version": 0.4}
RED = 0xFF0000


def form_prompt() -> dict:
    """width and color parameters -> EmptyImage -> the template's output "result"; an inverted copy is
    saved too, by a node the template does not name as an output (the form must not show it)."""
    return {
        "1": {"class_type": "SageMakerParamInt", "inputs": {
            "name": "width", "description": "image width", "default": 8, "min": 1, "max": 64, "step": 1,
            "required": False}},
        "2": {"class_type": "SageMakerParamInt", "inputs": {
            "name": "color", "description": "", "default": 0, "min": 0, "max": 0xFFFFFF, "step": 1,
            "required": False}},
        "3": {"class_type": "EmptyImage", "inputs": {"width": ["1", 0], "height": 4, "batch_size": 1,
                                                     "color": ["2", 0]}},
        "4": {"class_type": "SageMakerTemplateOutput", "inputs": {"images": ["3", 0], "name": "result",
                                                                  "description": ""}},
        "5": {"class_type": "ImageInvert", "inputs": {"image": ["3", 0]}},
        "6": {"class_type": "SaveImage", "inputs": {"images": ["5", 0], "filename_prefix": "unnamed"}},
    }


def publish_template(client, name: str, environment: str | None = None) -> None:
    body = {"name": name, "workflow": EMPTY_GRAPH, "prompt": form_prompt(), "environment": environment}
    created = client.post("/sagemaker/templates", json=body)
    assert created.status_code == 201, created.text


def param(form, name: str):
    return form.locator(f'[data-testid="sagemaker-param-input"][data-param="{name}"]')


def select(page: Page, name: str):
    open_templates(page)
    row(page, name).get_by_test_id("sagemaker-template-name").click()
    form = page.get_by_test_id("sagemaker-param-form")
    expect(form).to_have_attribute("data-template", name)
    expect(form).to_be_visible()
    return form


def the_result(page: Page, form, client, size: tuple[int, int], color=(255, 0, 0)) -> None:
    """One image under the form (the named output only), of `size` and `color`, served by ComfyUI's /view."""
    from PIL import Image

    expect(form.get_by_test_id("sagemaker-param-status")).to_have_attribute("data-state", "succeeded",
                                                                             timeout=120_000)
    images = form.get_by_test_id("sagemaker-param-image")
    expect(images).to_have_count(1)
    img = images.locator("img")
    expect(img).to_have_js_property("complete", True)
    assert img.evaluate("(i) => [i.naturalWidth, i.naturalHeight]") == list(size)
    r = client.get(images.get_attribute("href"))  # /api/view?filename=...
    assert r.status_code == 200, r.text
    image = Image.open(BytesIO(r.content)).convert("RGB")
    assert image.size == size
    assert all(abs(a - b) <= 1 for a, b in zip(image.getpixel((0, 0)), color, strict=True)), image.getpixel((0, 0))


def test_form_from_the_schema_shows_the_422_reason_and_refusals(page: Page, client):
    name, plain = unique_name(), unique_name()
    publish_template(client, name)
    without = {"name": plain, "workflow": EMPTY_GRAPH, "prompt": {
        "1": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}}}}
    assert client.post("/sagemaker/templates", json=without).status_code == 201
    unbound = client.post(f"/sagemaker/templates/{name}/executions", json={"inputs": {"width": 16}})
    assert unbound.status_code == 400, unbound.text
    try:
        form = select(page, name)
        width = param(form, "width")
        run = form.get_by_test_id("sagemaker-param-run")
        expect(width).to_have_attribute("type", "number")
        expect(width).to_have_value("8")
        expect(width).to_have_attribute("min", "1")
        expect(width).to_have_attribute("max", "64")
        expect(form.get_by_test_id("sagemaker-param-where")).to_have_attribute("data-target", "local")
        message = form.locator('[data-testid="sagemaker-param-error"][data-param="width"]')
        expect(message).to_be_hidden()

        # Checked as typed: Run is off while the value is invalid, and the line under it says why.
        width.fill("999")
        expect(message).to_have_text("must be from 1 to 64")
        expect(run).to_be_disabled()
        expect(form.get_by_test_id("sagemaker-param-blocked")).to_have_text(
            "Run waits for valid values: width (must be from 1 to 64)")

        # The server has the last word: republished meanwhile with a narrower range, its 422 reason shows and
        # Run stays off until the value changes.
        narrower = form_prompt()
        narrower["1"]["inputs"]["max"] = 8
        assert client.put(f"/sagemaker/templates/{name}", json={"workflow": EMPTY_GRAPH, "prompt": narrower,
                                                                "version": 1}).status_code == 200
        reason = client.post(f"/sagemaker/templates/{name}/prompt", json={"inputs": {"width": 16}}).json()
        width.fill("16")
        expect(run).to_be_enabled()
        with page.expect_response(lambda r: r.url.endswith(f"/templates/{name}/prompt")) as answer:
            run.click()
        assert answer.value.status == 422
        assert answer.value.request.post_data_json == {"inputs": {"width": 16, "color": 0}}
        expect(message).to_have_text(reason["error"]["fields"]["width"])
        expect(run).to_be_disabled()

        # On AWS, a valid value: the template is bound to no environment, so the 400 is a toast.
        page.get_by_test_id("sagemaker-prompt-on-aws-check").check()
        expect(form.get_by_test_id("sagemaker-param-where")).to_have_attribute("data-target", "endpoint")
        width.fill("6")
        expect(message).to_be_hidden()
        run.click()
        expect(toasts(page, unbound.json()["error"]["message"])).to_be_visible()
        expect(form.get_by_test_id("sagemaker-param-result")).to_be_hidden()

        # A template without parameters shows no form.
        row(page, plain).get_by_test_id("sagemaker-template-name").click()
        expect(form).to_be_hidden()
    finally:
        client.delete(f"/sagemaker/templates/{name}")
        client.delete(f"/sagemaker/templates/{plain}")
    assert console_errors(page, (422, f"/api/sagemaker/templates/{name}/prompt"),
                          (400, f"/api/sagemaker/templates/{name}/executions")) == []


def test_run_here_fills_the_prompt_and_shows_the_result(page: Page, client):
    """Prompt on AWS off: the filled prompt is queued on this ComfyUI, by this page (the canvas holds
    the template), and the named output shows under the form."""
    name, failing = unique_name(), unique_name()
    publish_template(client, name)
    fails = {
        "1": {"class_type": "SageMakerParamText", "inputs": {"name": "message", "default": "boom", "description": "",
                                                             "required": False, "max_length": 0}},
        "2": {"class_type": "EmptyImage", "inputs": {"width": 4, "height": 4, "batch_size": 1, "color": 0}},
        "3": {"class_type": "SMTestFail", "inputs": {"image": ["2", 0], "message": ["1", 0]}},
        "4": {"class_type": "SageMakerTemplateOutput", "inputs": {"images": ["3", 0], "name": "out",
                                                                  "description": ""}},
    }
    created = client.post("/sagemaker/templates", json={"name": failing, "workflow": EMPTY_GRAPH, "prompt": fails})
    assert created.status_code == 201, created.text
    try:
        form = select(page, name)
        param(form, "width").fill("12")
        param(form, "color").fill(str(RED))
        with page.expect_request(lambda r: r.url.endswith("/api/prompt") and r.method == "POST") as queued:
            form.get_by_test_id("sagemaker-param-run").click()
        body = queued.value.post_data_json
        assert body["prompt"]["1"]["inputs"]["default"] == 12 and body["prompt"]["2"]["inputs"]["default"] == RED
        assert body["client_id"] == page.evaluate("() => window.comfyAPI.api.api.clientId")
        the_result(page, form, client, (12, 4))

        # A run that fails in a node: its error under the form and as a toast, no image.
        row(page, failing).get_by_test_id("sagemaker-template-name").click()
        expect(form).to_have_attribute("data-template", failing)
        param(form, "message").fill("form boom")
        form.get_by_test_id("sagemaker-param-run").click()
        status = form.get_by_test_id("sagemaker-param-status")
        expect(status).to_have_attribute("data-state", "failed", timeout=60_000)
        expect(status).to_contain_text("SMTestFail")
        expect(status).to_contain_text("form boom")
        expect(toasts(page, "form boom")).to_be_visible()
        expect(form.get_by_test_id("sagemaker-param-result")).to_be_hidden()
    finally:
        client.delete(f"/sagemaker/templates/{name}")
        client.delete(f"/sagemaker/templates/{failing}")
    assert console_errors(page) == []


def test_an_image_parameter_takes_an_upload(page: Page, client, tmp_path):
    """The image input offers an upload into ComfyUI's input folder; the run uses the uploaded file."""
    name = unique_name()
    prompt = {
        "1": {"class_type": "SageMakerParamImage", "inputs": {"name": "photo", "image": "example.png",
                                                              "description": "", "required": True}},
        "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
        "3": {"class_type": "SageMakerTemplateOutput", "inputs": {"images": ["2", 0], "name": "inverted",
                                                                  "description": ""}},
    }
    client.upload_image("example.png", png(2, 2, (0, 0, 0)))
    created = client.post("/sagemaker/templates", json={"name": name, "workflow": EMPTY_GRAPH, "prompt": prompt})
    assert created.status_code == 201, created.text
    upload = tmp_path / f"form-{uuid.uuid4().hex[:8]}.png"
    upload.write_bytes(png(8, 6, (10, 100, 200)))
    try:
        form = select(page, name)
        photo = param(form, "photo")
        expect(photo).to_have_value("example.png")
        # The input folder's images are offered as the name is typed.
        expect(form.locator('datalist option[value="example.png"]')).to_have_count(1)
        with page.expect_response(lambda r: r.url.endswith("/upload/image")) as uploaded:
            form.locator('[data-testid="sagemaker-param-upload-file"][data-param="photo"]').set_input_files(upload)
        assert uploaded.value.status == 200
        expect(photo).to_have_value(upload.name)
        assert (client.get(f"/view?filename={upload.name}&type=input").content == upload.read_bytes())
        form.get_by_test_id("sagemaker-param-run").click()
        the_result(page, form, client, (8, 6), (245, 155, 55))
    finally:
        client.delete(f"/sagemaker/templates/{name}")
    assert console_errors(page) == []


APP = "window.comfyAPI.app.app"
# A width parameter node (8, from 1 to 64) -> EmptyImage (width x 4) -> the template's output, built by
# the frontend itself so the canvas loads it back with its parameter node.
BUILD_FORM_GRAPH = f"""async () => {{
    const app = {APP};
    app.graph.clear();
    const add = (type, x, values) => {{
        const node = window.LiteGraph.createNode(type);
        node.pos = [x, 0];
        app.graph.add(node);
        for (const [name, value] of Object.entries(values)) node.widgets.find((w) => w.name === name).value = value;
        return node;
    }};
    const width = add("SageMakerParamInt", 0, {{ name: "width", default: 8, min: 1, max: 64 }});
    const empty = add("EmptyImage", 320, {{ height: 4, color: 0 }});
    width.connect(0, empty, empty.findInputSlot("width"));
    empty.connect(0, add("SageMakerTemplateOutput", 640, {{ name: "result" }}), 0);
    const {{ workflow, output }} = await app.graphToPrompt();
    return JSON.stringify({{ workflow, output, node: width.id }});
}}"""
CANVAS_VALUE = f"(id) => {APP}.graph.getNodeById(id)?.widgets.find((w) => w.name === 'default').value"
SET_ON_CANVAS = f"([id, v]) => {{ {APP}.graph.getNodeById(id).widgets.find((w) => w.name === 'default').value = v; }}"


def test_the_form_and_the_canvas_hold_the_same_values(page: Page, client):
    import json

    built = json.loads(page.evaluate(BUILD_FORM_GRAPH))
    node = built["node"]
    name = unique_name()
    created = client.post("/sagemaker/templates", json={"name": name, "workflow": built["workflow"],
                                                         "prompt": built["output"]})
    assert created.status_code == 201, created.text
    try:
        form = select(page, name)
        width = param(form, "width")
        expect(width).to_have_value("8")
        # The form writes into the canvas's parameter node...
        width.fill("20")
        page.wait_for_function(f"([id, v]) => ({CANVAS_VALUE})(id) === v", arg=[node, 20])
        # ...and reads it back: edited on the canvas, the form's Run runs the canvas's value, as ComfyUI's does.
        page.evaluate(SET_ON_CANVAS, [node, 24])
        with page.expect_request(lambda r: r.url.endswith("/api/prompt") and r.method == "POST") as queued:
            form.get_by_test_id("sagemaker-param-run").click()
        assert queued.value.post_data_json["prompt"][str(node)]["inputs"]["default"] == 24
        expect(width).to_have_value("24")
        host_prompt = page.evaluate(f"async () => JSON.stringify((await {APP}.graphToPrompt()).output)")
        assert json.loads(host_prompt)[str(node)]["inputs"]["default"] == 24
        the_result(page, form, client, (24, 4), (0, 0, 0))

        # The form goes with the template's graph and comes back with it (its tab, its values).
        page.evaluate(f"() => {APP}.loadGraphData()")
        expect(form).to_be_hidden()
        row(page, name).get_by_test_id("sagemaker-template-name").click()
        expect(form).to_be_visible()
        expect(width).to_have_value("24")
        assert page.evaluate(CANVAS_VALUE, node) == 24
    finally:
        client.delete(f"/sagemaker/templates/{name}")
    assert console_errors(page) == []


def test_an_invalid_value_turns_run_off_and_stays_as_typed(page: Page, client):
    """Strength 1.5 in a 0-to-1 field was reset to the canvas's value by Run, which then ran that: now Run is
    off while a field is invalid, and nothing (Run, a canvas change) replaces what the person typed."""
    import json

    built = json.loads(page.evaluate(BUILD_FORM_GRAPH))
    node = built["node"]
    name = unique_name()
    created = client.post("/sagemaker/templates", json={"name": name, "workflow": built["workflow"],
                                                         "prompt": built["output"]})
    assert created.status_code == 201, created.text
    try:
        form = select(page, name)
        width, run = param(form, "width"), form.get_by_test_id("sagemaker-param-run")
        expect(run).to_be_enabled()
        width.fill("999")
        expect(run).to_be_disabled()
        expect(form.get_by_test_id("sagemaker-param-blocked")).to_contain_text("width (must be from 1 to 64)")
        # The sidebar reads the canvas again (a refresh of the list does): the typed value stays, the canvas
        # keeps its valid one.
        with page.expect_response(lambda r: r.url.endswith("/api/sagemaker/templates")):
            page.get_by_test_id("sagemaker-templates-refresh").click()
        expect(width).to_have_value("999")
        assert page.evaluate(CANVAS_VALUE, node) == 8
        # Valid again: Run runs exactly what is shown.
        width.fill("12")
        with page.expect_request(lambda r: r.url.endswith("/api/prompt") and r.method == "POST") as queued:
            run.click()
        assert queued.value.post_data_json["prompt"][str(node)]["inputs"]["default"] == 12
        the_result(page, form, client, (12, 4), (0, 0, 0))
    finally:
        client.delete(f"/sagemaker/templates/{name}")
    assert console_errors(page) == []


# A checkpoint parameter -> CheckpointLoaderSimple -> VAEDecode -> the template's output, built by the frontend.
BUILD_MODEL_GRAPH = f"""async () => {{
    const app = {APP};
    app.graph.clear();
    const add = (type, x) => {{
        const node = window.LiteGraph.createNode(type);
        node.pos = [x, 0];
        app.graph.add(node);
        return node;
    }};
    const ckpt = add("SageMakerParamCheckpoint", 0);
    ckpt.widgets.find((w) => w.name === "name").value = "ckpt";
    ckpt.widgets.find((w) => w.name === "default").value = "absent.safetensors";
    const loader = add("CheckpointLoaderSimple", 320);
    ckpt.connect(0, loader, loader.findInputSlot("ckpt_name"));
    const latent = add("EmptyLatentImage", 320);
    const decode = add("VAEDecode", 640);
    latent.connect(0, decode, decode.findInputSlot("samples"));
    loader.connect(2, decode, decode.findInputSlot("vae"));
    const out = add("SageMakerTemplateOutput", 960);
    out.widgets.find((w) => w.name === "name").value = "result";
    decode.connect(0, out, 0);
    const {{ workflow, output }} = await app.graphToPrompt();
    return JSON.stringify({{ workflow, output, node: ckpt.id, loader: loader.id }});
}}"""
# Whether the canvas strokes a node red: every stroke style its node has, as LGraphCanvas.drawNode calls them.
OUTLINED = f"""(id) => {{
    const node = {APP}.graph.getNodeById(id);
    return Object.values(node?.strokeStyles ?? {{}}).some((style) => style.call(node)?.color === "red");
}}"""


def test_comfyuis_refusal_shows_on_the_field_and_outlines_the_node(page: Page, client):
    """ComfyUI's /prompt refuses the form's run (a model it does not list): its node_errors show under the
    parameter's field (by node id and input name), not as a toast, and the canvas outlines the node red."""
    import json

    built = json.loads(page.evaluate(BUILD_MODEL_GRAPH))
    node, loader = built["node"], built["loader"]
    name = unique_name()
    created = client.post("/sagemaker/templates", json={"name": name, "workflow": built["workflow"],
                                                         "prompt": built["output"]})
    assert created.status_code == 201, created.text
    try:
        form = select(page, name)
        ckpt = param(form, "ckpt")
        expect(ckpt).to_have_value("absent.safetensors")
        assert not page.evaluate(OUTLINED, node)
        with page.expect_response(lambda r: r.url.endswith("/api/prompt") and r.request.method == "POST") as answer:
            form.get_by_test_id("sagemaker-param-run").click()
        assert answer.value.status == 400
        refusal = answer.value.json()["node_errors"][str(node)]["errors"][0]
        assert refusal["extra_info"]["input_name"] == "default"
        message = form.locator('[data-testid="sagemaker-param-error"][data-param="ckpt"]')
        expect(message).to_have_text(f"{refusal['message']}: {refusal['details']}")
        page.wait_for_function(OUTLINED, arg=node)
        assert not page.evaluate(OUTLINED, loader)
        expect(form.get_by_test_id("sagemaker-param-run")).to_be_disabled()
        assert toast_count(page, "Could not run") == 0
        # Another value is refused in its own words (the outline is drawn again for this refusal).
        ckpt.fill("other.safetensors")
        with page.expect_response(lambda r: r.url.endswith("/api/prompt") and r.request.method == "POST"):
            form.get_by_test_id("sagemaker-param-run").click()
        expect(message).to_contain_text("other.safetensors")
        page.wait_for_function(OUTLINED, arg=node)
    finally:
        client.delete(f"/sagemaker/templates/{name}")
    assert console_errors(page, (400, "/api/prompt")) == []


def test_a_parameter_wider_than_its_input_is_published_with_a_warning_and_the_form_takes_the_inputs_limits(
        page: Page, client):
    """max 100 on ImageBlur's blur_radius (max 31 in ComfyUI's object_info): the publish answers a warning, and
    the form's limits are the intersection, so 40 is refused before it runs."""
    name = unique_name()
    prompt = {
        "1": {"class_type": "SageMakerParamInt", "inputs": {"name": "radius", "default": 5, "min": 0, "max": 100,
                                                            "step": 1, "description": "", "required": False}},
        "2": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": RED}},
        "3": {"class_type": "ImageBlur", "inputs": {"image": ["2", 0], "blur_radius": ["1", 0], "sigma": 1.0}},
        "4": {"class_type": "SageMakerTemplateOutput", "inputs": {"images": ["3", 0], "name": "blurred",
                                                                  "description": ""}},
    }
    created = client.post("/sagemaker/templates", json={"name": name, "workflow": EMPTY_GRAPH, "prompt": prompt})
    assert created.status_code == 201, created.text
    assert created.json()["warnings"] == ["parameter radius: its range 0 to 100 exceeds what ImageBlur's blur_radius "
                                          "(node #3) accepts (1 to 31); the form and the API accept 1 to 31"]
    try:
        form = select(page, name)
        radius = param(form, "radius")
        expect(radius).to_have_attribute("min", "1")
        expect(radius).to_have_attribute("max", "31")
        radius.fill("40")
        expect(form.locator('[data-testid="sagemaker-param-error"][data-param="radius"]')).to_have_text(
            "must be from 1 to 31")
        expect(form.get_by_test_id("sagemaker-param-run")).to_be_disabled()
    finally:
        client.delete(f"/sagemaker/templates/{name}")
    assert console_errors(page) == []
