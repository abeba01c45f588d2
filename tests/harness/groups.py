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
import os
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


def write_groups(folder: Path, worker: str, groups: dict[str, str]) -> None:
    """Whole or not at all: written aside and renamed, so the controller never reads half a file."""
    part = folder / f"{worker}.json.part"
    part.write_text(json.dumps(groups))
    os.replace(part, folder / f"{worker}.json")


def read_groups(folder: Path, workers: Iterable[str]) -> dict[str, str]:
    """Every worker's groups; a worker's missing file is an error (its tests would be scheduled without their
    groups, apart from the processes they share), never a silent fallback."""
    groups: dict[str, str] = {}
    for worker in sorted(workers):
        path = folder / f"{worker}.json"
        if not path.exists():
            raise RuntimeError(f"worker {worker} wrote no groups to {folder} before it reported its collection")
        groups.update(json.loads(path.read_text()))
    return groups


@pytest.hookimpl(tryfirst=True)
def pytest_collection_finish(session):
    """Worker: writes the groups of what it collected (every worker collects the same tests), before xdist's own
    hook of this name tells the controller the collection is done (tryfirst): the controller reads them then.
    Written after it, a whole run once died at its start reading half a file (JSONDecodeError)."""
    folder = getattr(session.config, "workerinput", {}).get(FOLDER)
    if folder:
        write_groups(Path(folder), session.config.workerinput.get("workerid", "worker"), groups_of(session.items))


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
                self.groups = read_groups(Path(config._sm_groups_dir),
                                          (node.gateway.id for node in self.registered_collections))
            return self.groups.get(nodeid, nodeid)

    return GroupScheduling(config, log)


def pytest_unconfigure(config):
    folder = getattr(config, "_sm_groups_dir", None)
    if folder:
        shutil.rmtree(folder, ignore_errors=True)
