"""The Connect panel in the real ComfyUI frontend: from the folder store to an S3 store made by `aws setup` (on
moto; the image build simulated by pushing a manifest to moto's ECR, since moto's CloudFormation makes no
CodeBuild project), checked and applied from the sidebar without a restart, a page reload or a file edited by
hand; bad input refused in the server's words; a file broken by hand replaced from the form; the New
Environment dialog sending a user to Connect; a designer making this ComfyUI an artist's."""

from __future__ import annotations

import json
import uuid

import pytest
from comfyui_sagemaker.aws.s3_store import S3Store
from comfyui_sagemaker.aws.setup import Aws, setup
from comfyui_sagemaker.aws.teardown import teardown
from comfyui_sagemaker.core.execution_records import ExecutionRecords
from comfyui_sagemaker.core.executions import new_id
from comfyui_sagemaker.core.identity import Owner
from comfyui_sagemaker.core.templates import TemplateService, now
from comfyui_sagemaker.local.folder_store import FolderStore
from harness.browser import frontend_args, new_page, open_sidebar, toasts
from harness.comfyui import ComfyUI
from playwright.sync_api import Locator, Page, expect

pytestmark = pytest.mark.browser

INDEX = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
         "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "size": 1000,
                        "digest": "sha256:" + "c" * 64, "platform": {"os": "linux", "architecture": "amd64"}}]}
WORKFLOW = {"nodes": [], "links": [], "extra": {}}
PROMPT = {"1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}}}
TOKEN = "connect-token-" + "5" * 8
AUTH = {"X-SageMaker-Token": TOKEN}
APPLY = 15_000  # ms: an Apply rebuilds the services, then the sidebar draws again


def unique(prefix: str) -> str:
    return prefix + uuid.uuid4().hex[:8]


@pytest.fixture(scope="session")
def stack(moto_server):
    """What `aws setup` makes (bucket, ECR repository, execution role) on moto, its image pushed; the
    configuration values it returns. Once for both frontends (each applies its own prefix); its own
    repository name: other modules make stacks on this moto too."""
    aws = Aws("us-east-1", moto_server.client)
    name = unique("cs-ui-")
    said: list[str] = []
    cfg = setup(aws, name, {"StorePrefix": "ui", "RepositoryName": name}, None, said.append, build=False, poll=0.2)
    repository, tag = cfg["worker_image_uri"].split("/", 1)[1].split(":")  # --no-build: the tag to push
    moto_server.client("ecr").put_image(repositoryName=repository, imageManifest=json.dumps(INDEX), imageTag=tag,
                                        imageManifestMediaType=INDEX["mediaType"])
    try:
        yield cfg
    finally:
        teardown(aws, name, said.append, force=True, delete_data=True, poll=0.2)


@pytest.fixture
def designer(aws_designer):
    """The browser tier's ComfyUI whose boto3 talks to moto (one per frontend), a designer's on the folder store;
    whatever a test did to its config.json is undone and applied after it."""
    return aws_designer


@pytest.fixture
def designer_page(browser, designer):
    page = new_page(browser, designer)
    try:
        open_sidebar(page)
        yield page
    finally:
        page.context.close()


def fact(section: Locator, key: str) -> Locator:
    return section.locator(f'[data-testid="sagemaker-connect-fact"][data-key="{key}"]')


def template_row(page: Page, name: str) -> Locator:
    return page.locator(f'[data-testid="sagemaker-template-row"][data-template="{name}"]')


def finished_run(server: ComfyUI, template: str) -> str:
    """A succeeded run of this ComfyUI, straight in its folder store as the ComfyUI writes it; its id."""
    identity = server.client().get("/sagemaker/health").json()["identity"]
    owner = Owner(identity["instance"], identity["name"])
    execution_id = new_id(owner.instance)
    record = {"id": execution_id, "prompt_id": uuid.uuid4().hex, "template": template, "template_version": 1,
              "environment": None, "environment_version": None, "endpoint": None, "owner": owner.to_json(),
              "client_id": None, "state": "succeeded", "created_at": now(), "started_at": now(),
              "finished_at": now(), "inputs": {}, "outputs": {}, "error": None}
    records = ExecutionRecords(FolderStore(server.user_dir / "__sagemaker" / "store"))
    records.create(record)
    records.ended(record)
    return execution_id


def wait_toasts(page: Page, text: str, count: int) -> None:
    """Until the page has asked the host for `count` notifications saying `text` (then shown as usual)."""
    page.wait_for_function("([t, n]) => window.__smToasts.filter((m) => `${m.summary} ${m.detail}`.includes(t))"
                           ".length >= n", arg=[text, count], timeout=APPLY)
    expect(toasts(page, text)).to_be_visible()


def execution_row(page: Page, execution_id: str) -> Locator:
    return page.locator(f'[data-testid="sagemaker-execution-row"][data-execution="{execution_id}"]')


def extension_errors(page: Page, *allowed: int) -> list[str]:
    """The page's errors about the extension, minus the refusals a test provoked (said by their status)."""
    return [e for e in page.console.errors_from("sagemaker")
            if not any(f"status of {status}" in e for status in allowed)]


def test_folder_store_to_s3_through_the_panel_without_a_restart(designer, designer_page, stack, moto_server, frontend):
    client, page = designer.client(), designer_page
    bucket, prefix = stack["s3_bucket"], f"ui-{frontend}"  # each frontend's ComfyUI its own store in the bucket
    here = unique("F")
    assert client.post("/sagemaker/templates", json={"name": here, "workflow": WORKFLOW,
                                                     "prompt": PROMPT}).status_code == 201
    there = unique("S")
    TemplateService(S3Store(bucket, prefix, s3_client=moto_server.client("s3")), lambda name: False).create(
        there, WORKFLOW, PROMPT)
    run = finished_run(designer, here)
    page.get_by_test_id("sagemaker-templates-refresh").click()
    page.get_by_test_id("sagemaker-executions-refresh").click()
    expect(template_row(page, here)).to_be_visible()
    expect(execution_row(page, run)).to_be_visible()
    page.evaluate("() => { window.__sameDocument = true; }")

    # The folder store (a first-time user's): the section is open and says so.
    connect = page.get_by_test_id("sagemaker-connect")
    expect(connect).to_have_attribute("data-expanded", "true")
    expect(fact(connect, "store")).to_contain_text("folder store on this machine")
    expect(fact(connect, "token")).to_contain_text("not set")
    expect(connect.get_by_test_id("sagemaker-connect-apply")).to_be_disabled()  # nothing changed yet

    connect.get_by_test_id("sagemaker-connect-store").select_option("s3")
    for key, value in (("s3-bucket", bucket), ("s3-prefix", prefix), ("region", stack["region"]),
                       ("sagemaker-role-arn", stack["sagemaker_role_arn"]),
                       ("worker-image-uri", stack["worker_image_uri"])):
        connect.get_by_test_id(f"sagemaker-connect-{key}").fill(value)

    # Check: each prerequisite tried for real; moto has no IAM policy simulator, the one check AWS answers
    # differently, said as a warning.
    connect.get_by_test_id("sagemaker-connect-check").click()
    results = connect.get_by_test_id("sagemaker-connect-result")
    expect(results).to_have_count(6, timeout=60_000)
    verdicts = {r.get_attribute("data-name"): r.get_attribute("data-status") for r in results.all()}
    assert verdicts == {"credentials": "ok", "region": "ok", "bucket": "ok", "execution role": "ok",
                        "worker image": "ok", "permissions": "warning"}, verdicts
    permissions = connect.locator('[data-testid="sagemaker-connect-result"][data-name="permissions"]')
    expect(permissions.get_by_test_id("sagemaker-connect-result-status")).to_have_text("warning")
    expect(permissions.get_by_test_id("sagemaker-connect-result-detail")).to_contain_text(
        "AWS did not run the permission simulation here")
    expect(permissions.get_by_test_id("sagemaker-connect-result-fix")).to_contain_text("designer-policy.json")
    worker = connect.locator('[data-testid="sagemaker-connect-result"][data-name="worker image"]')
    expect(worker).to_contain_text("linux/amd64")
    expect(connect.get_by_test_id("sagemaker-connect-check")).to_be_enabled()
    assert client.get("/sagemaker/health").json()["store"]["kind"] == "folder"  # a Check writes nothing

    # Apply: the configuration runs at once and every section reads the new store, in this very page.
    connect.get_by_test_id("sagemaker-connect-apply").click()
    wait_toasts(page, "Configuration applied", 1)
    connect = page.get_by_test_id("sagemaker-connect")
    expect(fact(connect, "s3_bucket")).to_contain_text(f"s3://{bucket}/{prefix}", timeout=APPLY)
    expect(fact(connect, "sagemaker_role_arn")).to_contain_text(stack["sagemaker_role_arn"])
    expect(connect.get_by_test_id("sagemaker-connect-store")).to_have_value("s3")
    expect(page.get_by_test_id("sagemaker-store")).to_contain_text(f"s3://{bucket}/{prefix}")
    expect(template_row(page, there)).to_be_visible(timeout=APPLY)
    expect(template_row(page, here)).to_have_count(0)
    expect(execution_row(page, run)).to_have_count(0)  # the folder store's run is not the S3 store's
    expect(page.get_by_test_id("sagemaker-executions-empty")).to_be_visible()
    assert page.evaluate("() => window.__sameDocument") is True
    health = client.get("/sagemaker/health").json()
    assert health["store"] == {"kind": "s3", "bucket": bucket, "prefix": prefix}
    assert health["endpoints"] == "sagemaker"
    written = json.loads((designer.user_dir / "__sagemaker" / "config.json").read_text())
    assert written == {"store": "s3", "s3_bucket": bucket, "s3_prefix": prefix, "region": stack["region"],
                       "sagemaker_role_arn": stack["sagemaker_role_arn"],
                       "worker_image_uri": stack["worker_image_uri"]}  # only what was changed
    on_disk = client.get("/sagemaker/connect").json()
    assert on_disk["file"]["error"] is None and on_disk["file"]["differs"] is False
    assert on_disk["file"]["values"] == on_disk["effective"]  # the file and the running configuration agree
    assert extension_errors(page) == []


def test_bad_input_is_refused_in_the_servers_words_and_a_broken_file_is_replaced(designer, designer_page):
    client, page = designer.client(), designer_page
    path = designer.user_dir / "__sagemaker" / "config.json"
    connect = page.get_by_test_id("sagemaker-connect")
    before = client.get("/sagemaker/health").json()["store"]
    written = path.read_text() if path.exists() else None

    # The folder store's Check: two rows, both ok, and what to do for SageMaker.
    connect.get_by_test_id("sagemaker-connect-check").click()
    results = connect.get_by_test_id("sagemaker-connect-result")
    expect(results).to_have_count(2, timeout=30_000)
    assert [(r.get_attribute("data-name"), r.get_attribute("data-status")) for r in results.all()] == [
        ("store", "ok"), ("AWS", "ok")]

    # S3 without a bucket: refused in the server's words, nothing written, nothing applied.
    connect.get_by_test_id("sagemaker-connect-store").select_option("s3")
    expect(results).to_have_count(0)  # the results were for other values
    connect.get_by_test_id("sagemaker-connect-apply").click()
    error = connect.get_by_test_id("sagemaker-connect-error")
    expect(error).to_have_text("store is s3 but s3_bucket is not set")
    assert client.get("/sagemaker/health").json()["store"] == before
    assert (path.read_text() if path.exists() else None) == written
    expect(fact(connect, "store")).to_contain_text("folder store on this machine")

    # config.json broken by hand: the panel says so in the server's words; the services keep the last good one.
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text('{"store": "s3", ')
    connect.get_by_test_id("sagemaker-connect-refresh").click()
    expect(connect.get_by_test_id("sagemaker-connect-file-error")).to_contain_text("config.json is not readable JSON")
    expect(connect.get_by_test_id("sagemaker-connect-last-good")).to_have_text(
        "ComfyUI keeps running with the last good configuration.")
    expect(connect.get_by_test_id("sagemaker-connect-badge")).to_have_text("needs attention")
    assert client.get("/sagemaker/health").json()["store"] == before

    # A plain change is refused (the file cannot be read); the form offers replacing it, which fixes it.
    connect.get_by_test_id("sagemaker-connect-more-toggle").click()
    connect.get_by_test_id("sagemaker-connect-display-name").fill("Studio A")
    connect.get_by_test_id("sagemaker-connect-apply").click()
    expect(error).to_contain_text("fix the file, or replace it with these settings")
    assert path.read_text() == '{"store": "s3", '
    offer = connect.get_by_test_id("sagemaker-connect-replace-offer")
    expect(offer).to_be_visible()
    # The store and the role stay: the other sections are not drawn again (issue 32: an open form and the
    # models' hashes were thrown away); this mark on the Templates section stays on the same element.
    page.get_by_test_id("sagemaker-templates").evaluate("(s) => { s.dataset.smKept = '1'; }")
    offer.get_by_test_id("sagemaker-connect-replace").click()
    expect(toasts(page, "Configuration applied")).to_be_visible(timeout=APPLY)
    connect = page.get_by_test_id("sagemaker-connect")
    expect(fact(connect, "display_name")).to_contain_text("Studio A", timeout=APPLY)
    expect(page.get_by_test_id("sagemaker-templates")).to_have_attribute("data-sm-kept", "1")
    expect(connect.get_by_test_id("sagemaker-connect-file-error")).to_have_count(0)
    fixed = json.loads(path.read_text())
    assert fixed["store"] == "folder" and fixed["display_name"] == "Studio A", fixed
    on_disk = client.get("/sagemaker/connect").json()
    assert on_disk["file"]["error"] is None and on_disk["file"]["differs"] is False
    assert on_disk["file"]["values"] == on_disk["effective"]  # the file and the running configuration agree
    assert client.get("/sagemaker/health").json()["identity"]["name"] == "Studio A"
    assert extension_errors(page, 400) == []


def test_new_environment_on_sagemaker_without_aws_says_what_is_missing_and_opens_connect(designer, designer_page):
    """On the ComfyUI of the tests that change its configuration, not the session's: the services that refused
    SageMaker fail a later local deploy ("no AWS region": Endpoints.deploy asks the provider the refused check
    made), and the configuration applied after each test here makes new services."""
    client, page = designer.client(), designer_page
    connect = page.get_by_test_id("sagemaker-connect")
    expect(connect).to_have_attribute("data-expanded", "true")  # on the folder store
    connect.get_by_test_id("sagemaker-connect-toggle").click()
    expect(connect).to_have_attribute("data-expanded", "false")
    expect(connect.get_by_test_id("sagemaker-connect-body")).to_be_hidden()

    name = unique("E")
    page.get_by_test_id("sagemaker-environments-new").click()
    dialog = page.get_by_test_id("sagemaker-environment-dialog")
    dialog.get_by_test_id("sagemaker-environment-name").fill(name)
    dialog.get_by_test_id("sagemaker-environment-include-all").check()
    dialog.get_by_test_id("sagemaker-endpoint-kind").select_option("sagemaker")
    dialog.get_by_test_id("sagemaker-dialog-ok").click()
    error = dialog.get_by_test_id("sagemaker-dialog-error")
    expect(error).to_contain_text("SageMaker endpoints read their environment from S3: set store to s3")
    error.get_by_test_id("sagemaker-open-connect").click()
    expect(dialog).to_have_count(0)
    expect(connect).to_have_attribute("data-expanded", "true")
    expect(connect.get_by_test_id("sagemaker-connect-store")).to_be_in_viewport()
    names = [e["name"] for e in client.get("/sagemaker/environments").json()["environments"]]
    assert name not in names  # refused before anything was written


@pytest.fixture
def fresh(browser, frontend, tmp_path_factory):
    """A ComfyUI of its own started on an artist's config.json broken by hand (it runs fail-safe, then is made a
    designer's in the file, then an artist's for good), its display name set by its environment, and two pages
    on it, their sidebars open."""
    base = tmp_path_factory.mktemp("connect-artist")
    (base / "user" / "__sagemaker").mkdir(parents=True)
    (base / "user" / "__sagemaker" / "config.json").write_text('{"role": "artist",')
    server = ComfyUI(base, extra_args=frontend_args(frontend),
                     env={"COMFYUI_SAGEMAKER_DISPLAY_NAME": "Env Name"}).start()
    pages: list[Page] = []
    try:
        for _ in range(2):
            pages.append(new_page(browser, server))
            open_sidebar(pages[-1])
        yield server, pages
    finally:
        for page in pages:
            page.context.close()
        server.stop()


def test_a_broken_start_a_token_and_a_designer_who_makes_this_comfyui_an_artists(fresh):
    server, (page, other) = fresh
    client = server.client()
    connect = page.get_by_test_id("sagemaker-connect")
    for p in (page, other):
        p.evaluate("() => { window.__sameDocument = true; }")

    # Started on a file it could not read (an artist's, with a typo): an artist's rights until it can be read,
    # no form; the page cannot make it a designer's.
    expect(connect).to_have_attribute("data-expanded", "true")
    expect(connect.get_by_test_id("sagemaker-connect-startup-error")).to_contain_text(
        "config.json cannot be read: config.json is not readable JSON")
    expect(connect.get_by_test_id("sagemaker-connect-fail-safe")).to_contain_text("an artist's rights")
    expect(connect.get_by_test_id("sagemaker-connect-effective")).to_have_count(0)
    expect(connect.get_by_test_id("sagemaker-connect-form")).to_have_count(0)
    expect(page.get_by_test_id("sagemaker-config-error")).to_be_visible()
    r = client.put("/sagemaker/config", json={"replace": True, "changes": {"role": "designer"}})
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden_for_role", r.text
    # Still broken: Reload says why. Fixed by hand (the file's owner makes it a designer's): Reload runs it.
    connect.get_by_test_id("sagemaker-connect-reload").click()
    expect(connect.get_by_test_id("sagemaker-connect-apply-file-error")).to_contain_text("not readable JSON")
    (server.user_dir / "__sagemaker" / "config.json").write_text('{"role": "designer"}')
    connect.get_by_test_id("sagemaker-connect-reload").click()
    wait_toasts(page, "Configuration applied", 1)
    for p in (page, other):
        section = p.get_by_test_id("sagemaker-connect")
        expect(fact(section, "store")).to_contain_text("folder store on this machine", timeout=APPLY)
        expect(section.get_by_test_id("sagemaker-connect-startup-error")).to_have_count(0)
        expect(p.get_by_test_id("sagemaker-config-error")).to_have_count(0)
        expect(p.get_by_test_id("sagemaker-templates-empty")).to_be_visible()
    assert json.loads((server.user_dir / "__sagemaker" / "config.json").read_text())["role"] == "designer"
    connect = page.get_by_test_id("sagemaker-connect")

    # A key set by the environment is shown fixed.
    expect(fact(connect, "display_name").get_by_test_id("sagemaker-connect-env")).to_have_text(
        "set by COMFYUI_SAGEMAKER_DISPLAY_NAME")
    expect(fact(connect, "display_name").get_by_test_id("sagemaker-connect-env")).to_have_attribute(
        "title", "set by COMFYUI_SAGEMAKER_DISPLAY_NAME: environment variables win over config.json")
    expect(fact(connect, "display_name")).to_contain_text("Env Name")
    connect.get_by_test_id("sagemaker-connect-more-toggle").click()
    name = connect.get_by_test_id("sagemaker-connect-display-name")
    expect(name).to_be_disabled()
    expect(name).to_have_value("Env Name")
    expect(connect.locator('[data-testid="sagemaker-connect-env-note"][data-key="display_name"]')).to_contain_text(
        "set by COMFYUI_SAGEMAKER_DISPLAY_NAME")

    # A token: write-only. This page keeps it and goes on; the other page is asked for it.
    connect.get_by_test_id("sagemaker-connect-token").fill(TOKEN)
    connect.get_by_test_id("sagemaker-connect-apply").click()
    wait_toasts(page, "Configuration applied", 2)
    connect = page.get_by_test_id("sagemaker-connect")
    expect(fact(connect, "token").get_by_test_id("sagemaker-connect-fact-value")).to_have_text("set", timeout=APPLY)
    expect(page.get_by_test_id("sagemaker-templates-publish")).to_be_visible()
    assert page.evaluate("() => localStorage.getItem('sagemaker.token')") == TOKEN
    assert client.get("/sagemaker/connect").status_code == 403
    answer = client.get("/sagemaker/connect", headers=AUTH)
    assert answer.json()["effective"]["token"] is True and TOKEN not in answer.text
    assert TOKEN not in connect.inner_text()
    expect(connect.get_by_test_id("sagemaker-connect-token")).to_have_value("")
    token_form = other.get_by_test_id("sagemaker-token")
    expect(token_form).to_be_visible(timeout=APPLY)
    token_form.get_by_test_id("sagemaker-token-input").fill(TOKEN)
    token_form.get_by_test_id("sagemaker-token-save").click()
    expect(other.get_by_test_id("sagemaker-templates-publish")).to_be_visible()

    # Role artist: a warning first; Cancel changes nothing.
    connect.get_by_test_id("sagemaker-connect-more-toggle").click()
    connect.get_by_test_id("sagemaker-connect-role").select_option("artist")
    connect.get_by_test_id("sagemaker-connect-apply").click()
    warning = connect.get_by_test_id("sagemaker-connect-artist-dialog")
    expect(warning).to_contain_text("This ComfyUI will no longer be able to change the configuration")
    warning.get_by_test_id("sagemaker-dialog-cancel").click()
    expect(warning).to_have_count(0)
    assert client.get("/sagemaker/health", headers=AUTH).json()["role"] == "designer"

    # Confirmed: applied, and both pages draw an artist's sidebar without a reload.
    expect(other.get_by_test_id("sagemaker-templates-publish")).to_be_visible()
    connect.get_by_test_id("sagemaker-connect-apply").click()
    connect.get_by_test_id("sagemaker-connect-artist-dialog").get_by_test_id("sagemaker-dialog-ok").click()
    wait_toasts(page, "Configuration applied", 3)
    assert client.get("/sagemaker/health", headers=AUTH).json()["role"] == "artist"
    for p in (page, other):
        section = p.get_by_test_id("sagemaker-connect")
        expect(fact(section, "role")).to_contain_text("artist", timeout=APPLY)
        expect(section.get_by_test_id("sagemaker-connect-read-only")).to_be_visible()
        for testid in ("sagemaker-connect-form", "sagemaker-connect-check", "sagemaker-connect-apply",
                       "sagemaker-connect-apply-file", "sagemaker-connect-replace"):
            expect(section.get_by_test_id(testid)).to_have_count(0)
        expect(p.get_by_test_id("sagemaker-role")).to_be_visible()
        expect(p.get_by_test_id("sagemaker-templates-publish")).to_have_count(0)
        expect(p.get_by_test_id("sagemaker-prompt-on-aws-check")).to_be_disabled()  # an artist runs on AWS
        assert p.evaluate("() => window.__sameDocument") is True
    r = client.put("/sagemaker/config", json={"changes": {"role": "designer"}}, headers=AUTH)
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden_for_role", r.text
    # Refused: the sections' reads while no configuration ran, the other page's until it had the token.
    assert extension_errors(page, 500) == [] and extension_errors(other, 500, 403) == []
