"""The sidebar's Input sync and Models sections in the real ComfyUI frontend, as a user clicks: a file
put in input/ shows up synced, live; the watcher's ComfyUI setting; a model uploaded through the Add
a model dialog, listed, replaced and deleted; a download by URL, refused and then followed to the end."""

from __future__ import annotations

import hashlib
import json
import re
import uuid

import pytest
from harness.browser import host_dialogs, human, open_sidebar, spy_toasts, toasts, wait_ready
from harness.http_server import FileServer
from harness.images import png
from harness.waiting import wait_for
from playwright.sync_api import Page, expect

pytestmark = pytest.mark.browser

APP = "window.comfyAPI.app.app"
API = "window.comfyAPI.api.api"
SETTING = "SageMaker.InputSync"


def console_errors(page: Page, *expected: tuple[int, str]) -> list[str]:
    """The page's errors about the extension, minus the expected HTTP statuses (status, URL path)."""

    def expected_status(error: str) -> bool:
        return "Failed to load resource" in error and any(
            f"status of {status} " in error and error.rsplit(" (", 1)[-1].rstrip(")").split("?")[0].endswith(path)
            for status, path in expected
        )

    return [e for e in page.console.errors_from("sagemaker") if not expected_status(e)]


def open_section(page: Page, testid: str):
    open_sidebar(page)
    section = page.get_by_test_id(testid)
    section.wait_for(timeout=15_000)
    return section


def watcher_enabled(client) -> bool:
    return client.get("/sagemaker/inputs").json()["watcher"]["enabled"]


def set_setting(page: Page, value: bool) -> None:
    page.evaluate(f"(v) => {APP}.extensionManager.setting.set('{SETTING}', v)", value)


def get_setting(page: Page):
    return page.evaluate(f"() => {APP}.extensionManager.setting.get('{SETTING}')")


def input_row(section, name: str):
    return section.locator(f'[data-testid="sagemaker-input-row"][data-input="{name}"]')


def model_row(page: Page, folder: str, name: str):
    return page.locator(f'[data-testid="sagemaker-model-row"][data-folder="{folder}"][data-model="{name}"]')


def test_a_file_put_in_input_shows_up_synced_live(page: Page, comfyui, client):
    name = f"sidebar{uuid.uuid4().hex[:8]}.png"
    section = open_section(page, "sagemaker-inputs")
    expect(section.get_by_test_id("sagemaker-inputs-watcher")).to_have_text("watching")
    files = section.get_by_test_id("sagemaker-inputs-files")
    expect(files).not_to_have_attribute("open", "")  # collapsed by default
    section.get_by_test_id("sagemaker-inputs-toggle").click()
    expect(files).to_have_attribute("open", "")

    path = comfyui.input_dir / name
    path.write_bytes(png(3, 2, (1, 200, 3)))
    try:
        row = input_row(section, name)
        expect(row).to_have_attribute("data-state", "synced", timeout=30_000)  # from events: no refresh clicked
        expect(row.get_by_test_id("sagemaker-input-state")).to_have_text("synced")
        counts = client.get("/sagemaker/inputs").json()["counts"]
        expect(section.get_by_test_id("sagemaker-inputs-synced")).to_have_text(f"{counts['synced']} synced")
        expect(section.get_by_test_id("sagemaker-inputs-failed")).to_have_text(f"{counts['failed']} failed")
    finally:
        path.unlink()
    expect(input_row(section, name)).to_have_count(0, timeout=30_000)  # the watcher saw it go

    # A failed file (a store that refuses is hard to make here: the event is the contract) lists its reason,
    # sorted first, and counts; its "deleted" event takes it away.
    failed = f"broken{uuid.uuid4().hex[:8]}.png"
    before = int(section.get_by_test_id("sagemaker-inputs-failed").get_attribute("data-count"))
    page.evaluate(f"""(name) => {API}.dispatchCustomEvent("sagemaker.input",
        {{name, state: "failed", size: 3, mtime_ns: 1, sha256: null, error: "the store said no"}})""", failed)
    row = input_row(section, failed)
    expect(row.get_by_test_id("sagemaker-input-error")).to_have_text("the store said no")
    expect(section.get_by_test_id("sagemaker-input-row").first).to_have_attribute("data-input", failed)
    expect(section.get_by_test_id("sagemaker-inputs-failed")).to_have_text(f"{before + 1} failed")
    page.evaluate(f"(name) => {API}.dispatchCustomEvent('sagemaker.input', {{name, state: 'deleted'}})", failed)
    expect(row).to_have_count(0)
    expect(section.get_by_test_id("sagemaker-inputs-failed")).to_have_text(f"{before} failed")

    assert console_errors(page) == []


def test_the_watcher_is_a_comfyui_setting(page: Page, client):
    section = open_section(page, "sagemaker-inputs")
    mark = section.get_by_test_id("sagemaker-inputs-watcher")
    expect(mark).to_have_text("watching")
    assert get_setting(page) is True
    try:
        set_setting(page, False)
        wait_for(lambda: watcher_enabled(client) is False)
        expect(mark).to_have_text("off")
        expect(toasts(page, "Input sync off")).to_be_visible()

        # A page opened while the server's switch is off shows it so, and does not switch it back on
        # (ComfyUI calls the setting's onChange at start-up with the stored value).
        set_setting(page, True)
        wait_for(lambda: watcher_enabled(client) is True)
        assert client.post("/sagemaker/inputs/watcher", json={"enabled": False}).ok
        page.reload(wait_until="domcontentloaded")
        wait_ready(page)
        spy_toasts(page)
        wait_for(lambda: get_setting(page) is False)
        mark = open_section(page, "sagemaker-inputs").get_by_test_id("sagemaker-inputs-watcher")
        expect(mark).to_have_text("off")
        assert watcher_enabled(client) is False

        # On again through ComfyUI's settings dialog, as a user does.
        page.evaluate(f"() => {APP}.extensionManager.command.execute('Comfy.ShowSettingsDialog')")
        dialog = host_dialogs(page)
        dialog.get_by_placeholder(re.compile("search", re.I)).fill("Sync the input folder")
        dialog.get_by_role("switch", name="Sync the input folder to the store").click()
        wait_for(lambda: watcher_enabled(client) is True)
        page.keyboard.press("Escape")
        expect(mark).to_have_text("watching")
    finally:
        client.post("/sagemaker/inputs/watcher", json={"enabled": True})
        client.post(f"/settings/{SETTING}", json=True)
    assert console_errors(page) == []


def test_upload_a_model_then_replace_and_delete_it(page: Page, comfyui, client):
    name = f"up{uuid.uuid4().hex[:8]}.safetensors"
    data = b"\x07" * 3000
    path = comfyui.base / "models" / "loras" / name
    section = open_section(page, "sagemaker-models")
    expect(section.locator('[data-testid="sagemaker-model-folder"][data-folder="loras"]')).to_be_visible()
    # A lora loader on the canvas: its combo lists the new file once uploaded, and no more once deleted,
    # without a node definitions refresh.
    loader = page.evaluate(f"""() => {{
        const node = window.LiteGraph.createNode("LoraLoaderModelOnly");
        {APP}.graph.add(node);
        return node.id;
    }}""")
    offers = f"""([id, name]) => [...{APP}.graph.getNodeById(id).widgets.find((w) => w.name === "lora_name")
        .options.values].includes(name)"""
    assert not page.evaluate(offers, [loader, name])

    def upload(payload: bytes, replace: bool = False):
        section.get_by_test_id("sagemaker-models-add").click()
        dialog = page.get_by_test_id("sagemaker-model-dialog")
        ok = dialog.get_by_test_id("sagemaker-dialog-ok")
        expect(ok).to_have_text("Upload")
        expect(ok).to_be_disabled()  # no file yet
        dialog.get_by_test_id("sagemaker-model-file").set_input_files(
            files=[{"name": name, "mimeType": "application/octet-stream", "buffer": payload}])
        expect(dialog.get_by_test_id("sagemaker-model-name")).to_have_value(name)  # the file's name
        dialog.get_by_test_id("sagemaker-model-folder").select_option("loras")
        if replace:
            dialog.get_by_test_id("sagemaker-model-overwrite").check()
        # Every value the progress bar shows, recorded in the page (a small file is sent at once).
        page.evaluate("""() => {
            const bar = document.querySelector('[data-testid="sagemaker-model-progress"]');
            window.progressSeen = [];
            new MutationObserver(() => window.progressSeen.push(Number(bar.getAttribute("aria-valuenow"))))
                .observe(bar, {attributes: true, attributeFilter: ["aria-valuenow"]});
        }""")
        with page.expect_response(lambda r: "/api/sagemaker/models/loras/" in r.url and r.request.method == "PUT") as a:
            ok.click()
        return dialog, a.value

    try:
        dialog, answer = upload(data)
        assert answer.status == 201, answer.text()
        digest = hashlib.sha256(data).hexdigest()
        assert answer.json() == {"folder": "loras", "name": name, "size": len(data), "sha256": digest}
        expect(dialog).to_have_count(0)
        assert page.evaluate("window.progressSeen")[-1] == 100
        assert path.read_bytes() == data
        expect(toasts(page, f"loras/{name}")).to_be_visible()
        page.wait_for_function(offers, arg=[loader, name])
        row = model_row(page, "loras", name)
        expect(row).to_be_visible()  # its folder opened to show it
        expect(row.get_by_test_id("sagemaker-model-size")).to_have_text(human(len(data)))
        expect(row.get_by_test_id("sagemaker-model-hash")).to_have_text(
            re.compile(rf"^(not hashed|sha256 …{digest[-4:]})$"))

        # The same name again: the server's refusal shows in the dialog, which stays; Replace then works.
        dialog, answer = upload(b"\x08" * 5000)
        assert answer.status == 409
        expect(dialog.get_by_test_id("sagemaker-dialog-error")).to_contain_text("exists in loras")
        dialog.get_by_test_id("sagemaker-model-overwrite").check()
        with page.expect_response(lambda r: "/api/sagemaker/models/loras/" in r.url and "overwrite=true" in r.url) as a:
            dialog.get_by_test_id("sagemaker-dialog-ok").click()
        assert a.value.status == 201, a.value.text()
        expect(dialog).to_have_count(0)
        expect(row.get_by_test_id("sagemaker-model-size")).to_have_text(human(5000))
        assert path.stat().st_size == 5000

        # Delete, with a confirmation; Cancel first keeps it.
        row.get_by_test_id("sagemaker-model-delete").click()
        confirm = page.get_by_test_id("sagemaker-model-delete-dialog")
        expect(confirm).to_contain_text(f"Delete loras/{name}?")
        confirm.get_by_test_id("sagemaker-dialog-cancel").click()
        expect(confirm).to_have_count(0)
        assert path.exists()
        row.get_by_test_id("sagemaker-model-delete").click()
        confirm.get_by_test_id("sagemaker-dialog-ok").click()
        expect(row).to_have_count(0)
        page.wait_for_function(f"(args) => !({offers})(args)", arg=[loader, name])
        assert not path.exists()
        assert name not in {m["name"] for m in client.get("/sagemaker/models").json()["folders"]["loras"]}
    finally:
        path.unlink(missing_ok=True)
    assert console_errors(page, (409, f"/api/sagemaker/models/loras/{name}")) == []


def test_download_by_url_refused_then_followed(page: Page, comfyui, client):
    section = open_section(page, "sagemaker-models")
    section.get_by_test_id("sagemaker-models-add").click()
    dialog = page.get_by_test_id("sagemaker-model-dialog")
    dialog.get_by_test_id("sagemaker-model-source-url").check()
    expect(dialog.get_by_test_id("sagemaker-model-file")).to_be_hidden()
    ok = dialog.get_by_test_id("sagemaker-dialog-ok")
    expect(ok).to_have_text("Download")
    dialog.get_by_test_id("sagemaker-model-url").fill("ftp://example.invalid/models/fancy%20one.safetensors")
    expect(dialog.get_by_test_id("sagemaker-model-name")).to_have_value("fancy one.safetensors")
    dialog.get_by_test_id("sagemaker-model-sha256").fill("abc")
    expect(dialog.get_by_test_id("sagemaker-model-sha256-error")).to_be_visible()
    expect(ok).to_be_disabled()
    dialog.get_by_test_id("sagemaker-model-sha256").fill("")
    with page.expect_response(lambda r: r.url.endswith("/api/sagemaker/models/download")) as answer:
        ok.click()
    assert answer.value.status == 400 and answer.value.json()["error"]["code"] == "download_refused"
    message = answer.value.json()["error"]["message"]
    assert "only http and https" in message
    expect(dialog.get_by_test_id("sagemaker-dialog-error")).to_have_text(message)
    expect(toasts(page, message)).to_be_visible()

    # A host inside this machine's network: the dialog names Connect's setting for it, in the panel's words, and
    # offers to open it (issue 32).
    dialog.get_by_test_id("sagemaker-model-url").fill("http://127.0.0.1:9/m.safetensors")
    with page.expect_response(lambda r: r.url.endswith("/api/sagemaker/models/download")) as answer:
        ok.click()
    assert answer.value.status == 400 and answer.value.json()["error"]["details"]["setting"] == "download_allowed_hosts"
    error = dialog.get_by_test_id("sagemaker-dialog-error")
    expect(error).to_contain_text('"Model downloads may also reach" in Connect')
    expect(error.get_by_test_id("sagemaker-open-connect")).to_be_visible()

    # A host the configuration allows: the download is a task with a progress card, then it is listed.
    name = f"dl{uuid.uuid4().hex[:8]}.safetensors"
    data = bytes(range(256)) * 400
    path = comfyui.base / "models" / "checkpoints" / name
    config = comfyui.user_dir / "__sagemaker" / "config.json"
    assert not config.exists()
    with FileServer({"/m.safetensors": data}) as server:
        config.write_text(json.dumps({"download_allowed_hosts": [f"127.0.0.1:{server.port}"]}))
        try:
            dialog.get_by_test_id("sagemaker-model-url").fill(f"{server.url}/m.safetensors")
            dialog.get_by_test_id("sagemaker-model-name").fill(name)
            dialog.get_by_test_id("sagemaker-model-folder").select_option("checkpoints")
            dialog.get_by_test_id("sagemaker-model-sha256").fill(hashlib.sha256(data).hexdigest())
            with page.expect_response(lambda r: r.url.endswith("/api/sagemaker/models/download")) as answer:
                ok.click()
            assert answer.value.status == 202, answer.value.text()
            task_id = answer.value.json()["task"]["id"]
            expect(dialog).to_have_count(0)
            card = section.locator(f'[data-testid="sagemaker-job"][data-job="{task_id}"]')
            expect(card.get_by_test_id("sagemaker-job-title")).to_have_text(f"Downloading checkpoints/{name}")
            expect(card).to_have_attribute("data-state", "succeeded", timeout=30_000)
            expect(card.get_by_test_id("sagemaker-job-bar")).to_have_attribute("aria-valuenow", "100")
            row = model_row(page, "checkpoints", name)
            expect(row.get_by_test_id("sagemaker-model-size")).to_have_text(human(len(data)))
            assert path.read_bytes() == data
        finally:
            config.unlink(missing_ok=True)
            path.unlink(missing_ok=True)
    assert console_errors(page, (400, "/api/sagemaker/models/download")) == []
