"""Team mode in the real ComfyUI frontend: a designer's ComfyUI and an artist's on one folder store, each
with its own page (the designer's is the browser tier's aws_comfyui: one ComfyUI fewer to start). Shared
lists follow without a reload, the artist's sidebar offers no designer action and runs only on endpoints
(on the environment it loaded), and the Executions list pages through this ComfyUI's runs or everyone's,
with owners, outputs of someone else's run and cancels as the roles allow."""

from __future__ import annotations

import json
import re
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from comfyui_sagemaker.core.changes import ChangeFeed
from comfyui_sagemaker.core.execution_records import FINAL, ExecutionRecords
from comfyui_sagemaker.core.executions import new_id
from comfyui_sagemaker.core.fs.hashing import file_sha256
from comfyui_sagemaker.core.identity import Owner
from comfyui_sagemaker.core.leases import Leases
from comfyui_sagemaker.core.store import blob_key
from comfyui_sagemaker.core.templates import now
from comfyui_sagemaker.local.folder_store import FolderStore
from harness.browser import (
    dismiss_toasts,
    frontend_args,
    new_page,
    open_sidebar,
    reset_page,
    toast_count,
    toasts,
)
from harness.comfyui import ComfyUI
from harness.envs import unique, wait_task
from harness.images import png
from playwright.sync_api import Page, expect

pytestmark = pytest.mark.browser

APP = "window.comfyAPI.app.app"
API_JS = "/extensions/comfyui-sagemaker/js/api.js"
LIVE = 30_000  # ms: a change in one ComfyUI reaches the other's open page within seconds; generous on a busy machine


@dataclass
class Team:
    designer: ComfyUI
    artist: ComfyUI
    store: FolderStore
    artist_owner: Owner
    template: str  # bound to `first`
    first: str  # environments holding `template`, without endpoints
    second: str
    designer_page: Page
    artist_page: Page


ELSEWHERE = Owner("dddddddddddd", "Dana Designer")  # a designer of another ComfyUI on the store


def owner_of(server: ComfyUI) -> Owner:
    identity = server.client().get("/sagemaker/health").json()["identity"]
    return Owner(identity["instance"], identity["name"])


def publish_environments(client, templates: list[str], *names: str) -> None:
    """Publish each environment (of `templates`), side by side; back once all are published."""
    tasks = []
    for name in names:
        r = client.post("/sagemaker/environments", json={"name": name, "templates": templates})
        assert r.status_code == 202, r.text
        tasks.append(r.json()["task"]["id"])
    for task in tasks:
        assert wait_task(client, task)["state"] == "succeeded"


# EmptyImage -> SaveImage as the frontend builds it (so the canvas loads it back).
BUILD_GRAPH = f"""async () => {{
    const app = {APP};
    app.graph.clear();
    const empty = window.LiteGraph.createNode("EmptyImage");
    const save = window.LiteGraph.createNode("SaveImage");
    save.pos = [400, 0];
    app.graph.add(empty);
    app.graph.add(save);
    empty.connect(0, save, 0);
    const {{ workflow, output }} = await app.graphToPrompt();
    return JSON.stringify({{ workflow, output }});
}}"""


@pytest.fixture(scope="module")
def team(browser, aws_comfyui, frontend, tmp_path_factory):
    """A designer's ComfyUI (the tier's aws_comfyui, a designer's on its folder store) and an artist's started on
    that store, a page on each (the tests get them reset), a template bound to the first of two environments
    that hold it. Names are unique: the designer's store holds what other modules left."""
    designer = aws_comfyui
    shared = designer.user_dir / "__sagemaker" / "store"
    artist = ComfyUI(tmp_path_factory.mktemp(f"team-artist-{frontend}"), env={
        "COMFYUI_SAGEMAKER_STORE_PATH": str(shared), "COMFYUI_SAGEMAKER_ROLE": "artist",
        "COMFYUI_SAGEMAKER_DISPLAY_NAME": "Arti Artist"}, extra_args=frontend_args(frontend))
    pages: list[Page] = []
    try:
        artist.start()
        pages = [new_page(browser, server) for server in (designer, artist)]
        built = json.loads(pages[0].evaluate(BUILD_GRAPH))
        client = designer.client()
        template = unique("T")
        r = client.post("/sagemaker/templates", json={"name": template, "workflow": built["workflow"],
                                                       "prompt": built["output"]})
        assert r.status_code == 201, r.text
        first, second = unique("E"), unique("E")
        publish_environments(client, [template], first, second)
        assert client.put(f"/sagemaker/templates/{template}", json={"environment": first}).status_code == 200
        yield Team(designer, artist, FolderStore(shared), owner_of(artist), template, first, second, *pages)
    finally:
        for page in pages:
            page.context.close()
        artist.stop()


@pytest.fixture
def pages(team):
    """(designer's page, artist's page): the module's, reset (reset_page), their sidebars open."""
    for page in (team.designer_page, team.artist_page):
        reset_page(page)
        open_sidebar(page)
    return team.designer_page, team.artist_page


def template_row(page: Page, name: str):
    return page.locator(f'[data-testid="sagemaker-template-row"][data-template="{name}"]')


def environment_row(page: Page, name: str):
    return page.locator(f'[data-testid="sagemaker-environment-row"][data-environment="{name}"]')


def test_a_designers_changes_reach_an_open_artist_page_without_a_reload(team, pages):
    _, page = pages
    expect(template_row(page, team.template)).to_be_visible()
    page.evaluate("() => { window.__sameDocument = true; }")
    name = unique("T")
    r = team.designer.client().post("/sagemaker/templates", json={
        "name": name, "workflow": {"nodes": [], "links": [], "extra": {}}, "prompt": {"1": {
            "class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}}}})
    assert r.status_code == 201, r.text
    expect(template_row(page, name)).to_be_visible(timeout=LIVE)
    environment = unique("E")
    publish_environments(team.designer.client(), [name], environment)
    expect(environment_row(page, environment)).to_be_visible(timeout=LIVE)
    assert team.designer.client().delete(f"/sagemaker/templates/{name}").status_code == 204
    expect(template_row(page, name)).to_have_count(0, timeout=LIVE)
    assert page.evaluate("() => window.__sameDocument") is True


def test_an_artist_sees_no_designer_action_and_runs_on_the_environment_it_loaded(team, pages):
    designer, page = pages
    # The designer's sidebar has the actions the artist's lacks (so the absences below mean something).
    expect(designer.get_by_test_id("sagemaker-templates-publish")).to_have_count(1)
    expect(designer.get_by_test_id("sagemaker-role")).to_have_count(0)
    expect(page.get_by_test_id("sagemaker-role")).to_have_text(
        "Artist: you can run templates; a designer publishes them.")
    expect(template_row(page, team.template)).to_be_visible()
    expect(environment_row(page, team.first)).to_be_visible()
    for testid in ("sagemaker-templates-publish", "sagemaker-template-rebind", "sagemaker-template-delete",
                   "sagemaker-environments-new", "sagemaker-environment-publish", "sagemaker-environment-delete",
                   "sagemaker-models-add", "sagemaker-model-delete", "sagemaker-job-cancel"):
        expect(page.get_by_test_id(testid)).to_have_count(0)
        if testid in ("sagemaker-templates-publish", "sagemaker-template-rebind", "sagemaker-environments-new"):
            expect(designer.get_by_test_id(testid).first).to_be_visible()

    # Prompt on AWS is on by role: shown ticked, not to be unticked, and nothing kept in the browser.
    section = page.get_by_test_id("sagemaker-prompt-on-aws")
    box = section.get_by_test_id("sagemaker-prompt-on-aws-check")
    expect(box).to_be_checked()
    expect(box).to_be_disabled()
    assert page.evaluate("() => localStorage.getItem('sagemaker.promptOnAws')") is None

    # Loaded: the target shows the version and environment loaded, and Run goes to the endpoint route.
    template_row(page, team.template).get_by_test_id("sagemaker-template-name").click()
    expect(section.get_by_test_id("sagemaker-target-template")).to_have_text(team.template)
    expect(section.get_by_test_id("sagemaker-target-version")).to_have_text("v2")
    expect(section.get_by_test_id("sagemaker-target-environment")).to_have_text(team.first)
    # Nothing runs it (no designer shares an endpoint of it): the artist is told who can help, never to deploy.
    expect(section.get_by_test_id("sagemaker-prompt-on-aws-note")).to_have_text(
        f"{team.first} has no endpoint yet: ask a designer to deploy or share one.")
    sent = run(page)
    assert (sent["template"], sent["environment"]) == (team.template, team.first)
    # Local endpoints are their own machine's unless shared: the artist's ComfyUI has none, and says so in a toast.
    expect(toasts(page, f"no endpoint runs environment '{team.first}': ask a designer to deploy or share one")
           ).to_be_visible()
    dismiss_toasts(page)  # it stands over Run on 1.32

    # The designer rebinds it elsewhere: the open page says so, and the loaded template still runs where
    # it was loaded.
    assert team.designer.client().put(f"/sagemaker/templates/{team.template}",
                                      json={"environment": team.second}).status_code == 200
    try:
        newer = section.get_by_test_id("sagemaker-target-newer")
        expect(newer).to_contain_text(f"v3 (bound to {team.second})", timeout=LIVE)
        expect(section.get_by_test_id("sagemaker-target-environment")).to_have_text(team.first)
        assert run(page)["environment"] == team.first
    finally:
        team.designer.client().put(f"/sagemaker/templates/{team.template}", json={"environment": team.first})

    # A designer route called by the page's own client: the server's 403, its words in a toast.
    refusal = page.evaluate(f"""async () => {{
        const {{ call }} = await import("{API_JS}");
        try {{
            await call("DELETE", "/templates/{team.template}");
            return null;
        }} catch (err) {{
            return {{ status: err.status, code: err.code, message: err.message }};
        }}
    }}""")
    assert refusal["status"] == 403 and refusal["code"] == "forbidden_for_role", refusal
    assert "only a designer can" in refusal["message"]
    expect(toasts(page, refusal["message"])).to_be_visible()
    assert toast_count(page, refusal["message"]) == 1
    assert team.designer.client().get(f"/sagemaker/templates/{team.template}").status_code == 200


def run(page: Page) -> dict:
    """Press the host's Run; the body the page posted to /sagemaker/executions (never /prompt)."""
    posts: list[str] = []
    page.on("request", lambda r: posts.append(r.url) if r.method == "POST" and "/api/prompt" in r.url else None)
    with page.expect_response(lambda r: r.url.endswith("/api/sagemaker/executions")
                              and r.request.method == "POST") as answer:
        page.get_by_test_id("queue-button").click()
    assert answer.value.status == 409, answer.value.text()
    assert posts == []
    return answer.value.request.post_data_json


def make_run(team: Team, owner: Owner, state: str, outputs: dict | None = None) -> dict:
    """An execution record straight in the shared store, as the owner's ComfyUI writes it."""
    execution_id = new_id(owner.instance)
    record = {"id": execution_id, "prompt_id": uuid.uuid4().hex, "template": team.template, "template_version": 2,
              "environment": team.first, "environment_version": 1, "endpoint": team.first,
              "owner": owner.to_json(), "client_id": None, "state": state, "created_at": now(),
              "started_at": now(), "finished_at": now() if state in FINAL else None, "inputs": {},
              "outputs": outputs(execution_id) if outputs else {}, "error": None}
    records = ExecutionRecords(team.store)
    records.create(record)
    if state in FINAL:
        records.ended(record)
    time.sleep(0.002)  # ids sort by their microsecond
    return record


def image_outputs(team: Team, tmp: Path):
    data = png(6, 4, (200, 40, 40))
    path = tmp / "team.png"
    path.write_bytes(data)
    digest = file_sha256(path)
    team.store.put(blob_key(digest), data)
    return lambda execution_id: {"9": {"images": [{"filename": "team.png", "subfolder": f"sagemaker/{execution_id}",
                                                   "type": "output", "sha256": digest}]}}


def rows(page: Page):
    return page.get_by_test_id("sagemaker-executions").get_by_test_id("sagemaker-execution-row")


def execution_row(page: Page, execution_id: str):
    return page.locator(f'[data-testid="sagemaker-execution-row"][data-execution="{execution_id}"]')


def test_executions_list_own_or_everyones_runs_a_page_at_a_time(team, browser, tmp_path):
    own = [make_run(team, team.artist_owner, "succeeded") for _ in range(12)]
    # Someone else's: a designer on another ComfyUI of the store (not this module's designer, whose own list
    # would then hold runs whose outputs it never had).
    shown = make_run(team, ELSEWHERE, "succeeded", image_outputs(team, tmp_path))
    running = make_run(team, ELSEWHERE, "running")
    # The artist's and everyone's runs as its ComfyUI lists them: other tests here make some too.
    listed = {owner: [r["id"] for r in team.artist.client().get(
        f"/sagemaker/executions?owner={owner}&limit=500").json()["executions"]] for owner in ("me", "all")}
    page = new_page(browser, team.artist)  # a page of its own: what the list shows by default is what a load gives
    try:
        open_sidebar(page)
        section = page.get_by_test_id("sagemaker-executions")
        older = section.get_by_test_id("sagemaker-executions-older")
        newer = section.get_by_test_id("sagemaker-executions-newer")
        # This ComfyUI's runs by default, newest first, ten a page.
        expect(rows(page)).to_have_count(10)
        assert [r.get_attribute("data-execution") for r in rows(page).all()] == [r["id"] for r in own[::-1][:10]]
        expect(section.get_by_test_id("sagemaker-execution-owner")).to_have_count(0)
        time_shown = execution_row(page, own[-1]["id"]).get_by_test_id("sagemaker-execution-time")
        expect(time_shown).to_have_text(re.compile(r"^(just now|\d+ min ago)$"))
        expect(time_shown).to_have_attribute("title", own[-1]["created_at"])
        expect(newer).to_be_disabled()
        older.click()
        expect(rows(page)).to_have_count(min(10, len(listed["me"]) - 10))
        assert [r.get_attribute("data-execution") for r in rows(page).all()] == listed["me"][10:20]
        assert listed["me"][10:12] == [own[1]["id"], own[0]["id"]]
        if len(listed["me"]) <= 20:
            expect(older).to_be_disabled()
        newer.click()
        expect(rows(page)).to_have_count(10)

        # Everyone's: the designer's runs too, with their owner; an artist cannot cancel them.
        section.get_by_test_id("sagemaker-executions-everyone").check()
        expect(execution_row(page, running["id"])).to_be_visible()
        expect(rows(page)).to_have_count(10)
        theirs = execution_row(page, running["id"])
        expect(theirs.get_by_test_id("sagemaker-execution-owner")).to_have_text(re.compile("Dana Designer"))
        expect(theirs).to_have_attribute("data-state", "running")
        expect(theirs.get_by_test_id("sagemaker-execution-cancel")).to_have_count(0)
        expect(execution_row(page, own[-1]["id"]).get_by_test_id("sagemaker-execution-owner")).to_have_count(0)
        # The next page goes on with the rest of everyone's (the designer's store holds earlier modules' too).
        older.click()
        expect(rows(page)).to_have_count(min(10, len(listed["all"]) - 10))
        assert [r.get_attribute("data-execution") for r in rows(page).all()] == listed["all"][10:20]
        assert listed["all"][10:14] == [r["id"] for r in own[3::-1]]
        newer.click()

        # Someone else's finished run, opened: its outputs are copied here and shown through /view.
        execution_row(page, shown["id"]).click()
        detail = page.locator(f'[data-testid="sagemaker-execution-detail"][data-execution="{shown["id"]}"]')
        # Its id in a short form, the whole id in the tooltip (and copied by a click): issue 32.
        run_id = detail.get_by_test_id("sagemaker-execution-id")
        expect(run_id).to_have_text(f"run {shown['id'].split('-')[1]}")
        expect(run_id).to_have_attribute("title", re.compile(f"^{re.escape(shown['id'])}\n"))
        image = detail.get_by_test_id("sagemaker-execution-image").locator("img")
        expect(image).to_have_attribute("src", re.compile(r"/view\?filename=team\.png"))
        page.wait_for_function("(img) => img.complete && img.naturalWidth === 6", arg=image.element_handle())
        expect(execution_row(page, shown["id"]).get_by_test_id("sagemaker-execution-thumb")).to_be_visible()
    finally:
        page.context.close()
        records = ExecutionRecords(team.store)  # the designer's store lives on: no run is left running
        records.ended(records.swap(running["id"], lambda r: {**r, "state": "cancelled", "finished_at": now()}))


def test_a_designer_cancels_others_runs_and_a_refused_cancel_is_a_toast(team, pages):
    page, _ = pages
    section = page.get_by_test_id("sagemaker-executions")
    section.get_by_test_id("sagemaker-executions-everyone").check()
    expect(section.get_by_test_id("sagemaker-executions-empty").or_(rows(page).first)).to_be_visible()
    # A new run of the artist, announced on the store: the open list follows.
    theirs = make_run(team, team.artist_owner, "running")
    ChangeFeed(team.store, "Arti Artist").touch("executions")
    row = execution_row(page, theirs["id"])
    expect(row).to_be_visible(timeout=LIVE)
    expect(row.get_by_test_id("sagemaker-execution-owner")).to_have_text(re.compile("Arti Artist"))
    cancel = row.get_by_test_id("sagemaker-execution-cancel")
    expect(cancel).to_be_visible()
    # It ends before the click (the list has not heard): the 409 is a toast, and the row shows the end.
    records = ExecutionRecords(team.store)
    ended = records.swap(theirs["id"], lambda r: {**r, "state": "succeeded", "finished_at": now()})
    records.ended(ended)
    cancel.click()
    # Someone else's run: the designer is asked first, told whose it is (issue 32: one click cancelled it).
    dialog = page.get_by_test_id("sagemaker-execution-cancel-dialog")
    expect(dialog.get_by_test_id("sagemaker-execution-cancel-note")).to_contain_text("This is Arti Artist's run of")
    dialog.get_by_test_id("sagemaker-dialog-ok").click()
    message = "only a queued or running one can be cancelled"
    expect(toasts(page, message)).to_be_visible()
    assert toast_count(page, message) == 1
    expect(row).to_have_attribute("data-state", "succeeded")
    expect(row.get_by_test_id("sagemaker-execution-cancel")).to_have_count(0)


def test_an_environment_another_comfyui_is_publishing_says_so_instead_of_offering_actions(team, pages):
    designer, _ = pages
    row = environment_row(designer, team.second)
    expect(row.get_by_test_id("sagemaker-environment-publish")).to_be_visible()
    leases = Leases(team.store, Owner("zzzzzzzzzzzz", "Olga Other"))
    lease = leases.acquire(team.second, "publishing")
    try:
        ChangeFeed(team.store, "Olga Other").touch("environments")
        expect(row.get_by_test_id("sagemaker-environment-busy")).to_have_text("publishing by Olga Other", timeout=LIVE)
        expect(row.get_by_test_id("sagemaker-environment-publish")).to_have_count(0)
        expect(row.get_by_test_id("sagemaker-environment-delete")).to_have_count(0)
    finally:
        leases.release(lease)
    ChangeFeed(team.store, "Olga Other").touch("environments")
    expect(row.get_by_test_id("sagemaker-environment-busy")).to_have_count(0, timeout=LIVE)
    expect(row.get_by_test_id("sagemaker-environment-publish")).to_be_visible()
