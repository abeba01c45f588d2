"""Which worker runs a test when the whole suite runs on several pytest-xdist workers (`./dev test`: `-n 3 --dist
loadgroup`). A group runs on one worker, which starts the session's processes the group shares once:
- `processes`: the tests on the session's shared ComfyUI, local endpoints, shared worker and AWS rig (`comfyui`);
- `installed`: the as-installed tests (their own ComfyUI Python and copies of the extension);
- `browser-<frontend>`: each frontend's browser tests (one Chromium, one ComfyUI per frontend);
- none: every other test goes to the first free worker.

A plugin (tests/conftest.py loads it). xdist's own `xdist_group` mark does not work with pytest 9 (xdist 3.8
renames the node id through an attribute pytest 9 no longer reads), so the groups are ours: each worker writes
the groups of the tests it collected to a folder the controller names, and the controller's scheduler (xdist's
load-by-scope, with our groups as the scopes) reads them once every worker has collected."""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path

import pytest

FOLDER = "sm_groups_dir"


def group_of(markers: Iterable[str], frontend: str | None = None) -> str | None:
    marks = set(markers)
    if "browser" in marks:
        return f"browser-{frontend}" if frontend else None
    if "installed" in marks:
        return "installed"
    if "comfyui" in marks:
        return "processes"
    return None


def groups_of(items) -> dict[str, str]:
    out = {}
    for item in items:
        callspec = getattr(item, "callspec", None)
        group = group_of((m.name for m in item.iter_markers()), callspec.params.get("frontend") if callspec else None)
        if group:
            out[item.nodeid] = group
    return out


def _grouping(config) -> bool:
    return config.getvalue("dist") == "loadgroup"


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node):
    """Controller: tells each worker where to write its groups."""
    if _grouping(node.config):
        if not hasattr(node.config, "_sm_groups_dir"):
            node.config._sm_groups_dir = tempfile.mkdtemp(prefix="sm-test-groups-")
        node.workerinput[FOLDER] = node.config._sm_groups_dir


def pytest_collection_finish(session):
    """Worker: writes the groups of what it collected (every worker collects the same tests)."""
    folder = getattr(session.config, "workerinput", {}).get(FOLDER)
    if folder:
        worker = session.config.workerinput.get("workerid", "worker")
        (Path(folder) / f"{worker}.json").write_text(json.dumps(groups_of(session.items)))


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    if not _grouping(config):
        return None
    from xdist.scheduler import LoadScopeScheduling

    class GroupScheduling(LoadScopeScheduling):
        """xdist's load-by-scope with our groups as scopes; a test of no group is a scope of its own."""

        groups: dict[str, str] | None = None

        def _split_scope(self, nodeid: str) -> str:
            if self.groups is None:  # asked once every worker has collected (and written its groups)
                self.groups = {}
                for written in Path(config._sm_groups_dir).glob("*.json"):
                    self.groups.update(json.loads(written.read_text()))
            return self.groups.get(nodeid, nodeid)

    return GroupScheduling(config, log)


def pytest_unconfigure(config):
    folder = getattr(config, "_sm_groups_dir", None)
    if folder:
        shutil.rmtree(folder, ignore_errors=True)
