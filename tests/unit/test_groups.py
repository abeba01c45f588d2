"""The whole suite's scheduling groups (harness/groups.py): each worker's groups reach the controller whole, before
the controller schedules; a whole run once died at its start reading a worker's half-written file."""

from __future__ import annotations

import json

import pytest
from harness import groups


def test_a_workers_groups_are_written_before_xdist_reports_its_collection_and_whole():
    # xdist's worker reports its collection from its own pytest_collection_finish; ours must run first.
    assert groups.pytest_collection_finish.pytest_impl.get("tryfirst") is True


def test_the_file_appears_only_whole(tmp_path, monkeypatch):
    seen: list[list[str]] = []
    real = groups.os.replace

    def replace(src, dst):
        seen.append(sorted(p.name for p in tmp_path.glob("*.json")))  # what a reader globbing *.json would see
        real(src, dst)

    monkeypatch.setattr(groups.os, "replace", replace)
    groups.write_groups(tmp_path, "gw0", {"tests/a.py::t": "processes"})
    assert seen == [[]] and json.loads((tmp_path / "gw0.json").read_text()) == {"tests/a.py::t": "processes"}
    assert [p.name for p in tmp_path.iterdir()] == ["gw0.json"]


def test_the_controller_reads_every_workers_groups_and_a_missing_one_is_an_error(tmp_path):
    groups.write_groups(tmp_path, "gw0", {"tests/a.py::t": "processes"})
    groups.write_groups(tmp_path, "gw1", {"tests/b.py::t[pinned]": "browser-pinned"})
    assert groups.read_groups(tmp_path, ["gw0", "gw1"]) == {"tests/a.py::t": "processes",
                                                            "tests/b.py::t[pinned]": "browser-pinned"}
    with pytest.raises(RuntimeError, match="worker gw2 wrote no groups"):
        groups.read_groups(tmp_path, ["gw0", "gw1", "gw2"])
