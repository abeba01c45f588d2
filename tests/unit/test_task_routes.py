"""Background tasks under /sagemaker/tasks/{id}, and the old /sagemaker/jobs/{id} answering identically for one
release with RFC 9745's Deprecation header and a Link to the new route (errors too); the OpenAPI document marks the
old routes deprecated."""

from __future__ import annotations

import os
import threading

import pytest
from comfyui_sagemaker.core import config as config_mod
from comfyui_sagemaker.server_routes import ROUTE_TABLES, deprecation, openapi
from harness.inprocess import InProcess

DEPRECATION = "@1796601600"


@pytest.fixture
def app(tmp_path, monkeypatch):
    for var in [v for v in os.environ if v.startswith(config_mod.ENV_PREFIX)]:
        monkeypatch.delenv(var)
    started = InProcess(tmp_path).start()
    yield started
    started.stop()


def running_task(app: InProcess) -> tuple[str, threading.Event]:
    release = threading.Event()

    def work(task):
        while not release.wait(0.02):
            task.check_cancelled()
        return {"done": True}

    assert app.ctx is not None
    return app.ctx.services.tasks.start("publish", "env1", work).id, release


def test_a_task_answers_on_the_new_route_and_identically_on_the_old_one(app):
    task_id, release = running_task(app)
    new, old = app.request("GET", f"/sagemaker/tasks/{task_id}"), app.request("GET", f"/sagemaker/jobs/{task_id}")
    assert new.status_code == old.status_code == 200
    assert new.json() == old.json() and new.json()["state"] == "running" and new.json()["kind"] == "publish"
    assert "Deprecation" not in new.headers and "Link" not in new.headers
    assert old.headers["Deprecation"] == DEPRECATION
    assert old.headers["Link"] == f'</sagemaker/tasks/{task_id}>; rel="successor-version"'
    cancelled = app.request("POST", f"/sagemaker/jobs/{task_id}/cancel")
    assert cancelled.status_code == 200 and cancelled.headers["Deprecation"] == DEPRECATION
    assert cancelled.headers["Link"] == f'</sagemaker/tasks/{task_id}/cancel>; rel="successor-version"'
    assert app.ctx is not None and app.ctx.services.tasks.wait(task_id, 30).state == "cancelled"
    again = app.request("POST", f"/sagemaker/tasks/{task_id}/cancel")  # ended: 409 on both
    assert again.status_code == app.request("POST", f"/sagemaker/jobs/{task_id}/cancel").status_code == 409
    release.set()


def test_errors_on_the_old_route_carry_the_deprecation_too(app):
    new, old = app.request("GET", "/sagemaker/tasks/n%C3%A9"), app.request("GET", "/sagemaker/jobs/n%C3%A9")
    assert new.status_code == old.status_code == 404 and new.json() == old.json()
    assert old.headers["Deprecation"] == DEPRECATION
    assert old.headers["Link"] == '</sagemaker/tasks/n%C3%A9>; rel="successor-version"'


def test_the_link_keeps_the_prefix_the_request_used():
    # ComfyUI's /api/ alias (made by ComfyUI, not by this in-process app) links to the alias's new route
    assert deprecation.headers("/jobs/{id}", "/api/sagemaker", {"id": "a/b"})["Link"] == \
        '</api/sagemaker/tasks/a%2Fb>; rel="successor-version"'
    assert deprecation.headers("/tasks/{id}", "/api/sagemaker", {"id": "x"}) == {}


def test_the_openapi_document_lists_the_new_routes_and_marks_the_old_ones_deprecated():
    paths = openapi.document(ROUTE_TABLES)["paths"]
    assert not paths["/sagemaker/tasks/{id}"]["get"].get("deprecated")
    assert not paths["/sagemaker/tasks/{id}/cancel"]["post"].get("deprecated")
    assert paths["/sagemaker/jobs/{id}"]["get"]["deprecated"] is True
    assert paths["/sagemaker/jobs/{id}/cancel"]["post"]["deprecated"] is True
    ids = [op["operationId"] for ops in paths.values() for op in ops.values()]
    assert len(ids) == len(set(ids))


def test_the_old_routes_share_their_successors_handlers():
    table = {(method, path): fn for rows in ROUTE_TABLES for method, path, fn in rows}
    assert table[("GET", "/jobs/{id}")] is table[("GET", "/tasks/{id}")]
    assert table[("POST", "/jobs/{id}/cancel")] is table[("POST", "/tasks/{id}/cancel")]
