"""The worker gives root up (issue 28, point 12): started as root with WORKER_USER set, as SageMaker starts the
image, it makes its folders that user's and becomes it before anything else; the order of the system calls
is what matters (own, then drop groups, group, user), so they are recorded on a stand-in for `os`."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from comfyui_sagemaker.worker import privileges
from comfyui_sagemaker.worker.privileges import Account, PrivilegeError, drop
from comfyui_sagemaker.worker.settings import WorkerSettings
from comfyui_sagemaker.worker.volumes import FOLDER

WORKER = Account("comfyui-worker", 10001, 10001, "/home/comfyui-worker")


class Os:
    """Root until setuid; every call recorded."""

    def __init__(self, stays_root: bool = False):
        self.calls: list[tuple] = []
        self.uid = 0
        self.stays_root = stays_root

    def geteuid(self) -> int:
        return self.uid

    getuid = geteuid

    def chmod(self, path, mode):
        self.calls.append(("chmod", Path(path), oct(mode)))

    def chown(self, path, uid, gid):
        self.calls.append(("chown", Path(path), uid, gid))

    def setgroups(self, groups):
        self.calls.append(("setgroups", tuple(groups)))

    def setgid(self, gid):
        self.calls.append(("setgid", gid))

    def setuid(self, uid):
        self.calls.append(("setuid", uid))
        self.uid = 0 if self.stays_root else uid


@pytest.fixture
def settings(tmp_path, monkeypatch):
    monkeypatch.setattr(privileges, "lookup", lambda name: WORKER if name == WORKER.name else pytest.fail(name))
    volume = tmp_path / "tmp"
    volume.mkdir()
    volume.chmod(0o755)  # a mount whose root only root may write
    manifest = "file:///store/environments/e/versions/v000001.json"
    return WorkerSettings(manifest, cache_dir=tmp_path / "opt-ml" / "cache", base_dir=tmp_path / "opt-ml" / "comfyui",
                          local_volumes=str(volume)), volume


def test_root_owns_the_folders_to_the_user_then_becomes_it(settings):
    s, volume = settings
    ops, environ = Os(), {"WORKER_USER": WORKER.name}
    assert drop(s, environ, ops) == WORKER
    names = [c[0] for c in ops.calls]
    assert names[-3:] == ["setgroups", "setgid", "setuid"] and ops.calls[-3:] == [
        ("setgroups", ()), ("setgid", WORKER.gid), ("setuid", WORKER.uid)]
    owned = {c[1] for c in ops.calls if c[0] == "chown"}
    assert owned == {s.cache_dir, s.base_dir, volume / FOLDER}  # every folder worker/volumes.py may choose
    assert all(c[2:] == (WORKER.uid, WORKER.gid) for c in ops.calls if c[0] == "chown")
    assert ("chmod", volume, oct(0o755 | 0o1777)) in ops.calls  # the /tmp convention, so the user may use it
    assert max(i for i, n in enumerate(names) if n in ("chown", "chmod")) < names.index("setgroups")
    assert s.cache_dir.is_dir() and s.base_dir.is_dir()
    assert environ["HOME"] == WORKER.home and environ["USER"] == WORKER.name


def test_a_volume_that_already_lets_everyone_in_is_left_as_it_is(settings):
    s, volume = settings
    volume.chmod(0o1777)
    ops = Os()
    drop(s, {"WORKER_USER": WORKER.name}, ops)
    assert not [c for c in ops.calls if c[0] == "chmod"]


def test_a_worker_not_started_as_root_or_without_a_user_changes_nothing(settings):
    s, _ = settings
    ops = Os()
    ops.uid = 1000  # a local endpoint: the ComfyUI user's own worker
    assert drop(s, {"WORKER_USER": WORKER.name}, ops) is None and ops.calls == []
    ops = Os()
    assert drop(s, {}, ops) is None and ops.calls == []


def test_still_root_after_setuid_is_refused(settings):
    s, _ = settings
    with pytest.raises(PrivilegeError, match="still root after becoming comfyui-worker"):
        drop(s, {"WORKER_USER": WORKER.name}, Os(stays_root=True))


def test_an_unknown_user_is_said(monkeypatch):
    if not hasattr(os, "geteuid"):
        pytest.skip("POSIX users")
    with pytest.raises(PrivilegeError, match="is not a user of this image"):
        privileges.lookup("no-such-user-comfyui-sagemaker")


def test_the_worker_command_drops_before_it_serves(monkeypatch):
    from comfyui_sagemaker.worker import __main__ as entry

    monkeypatch.setenv("SAGEMAKER_MANIFEST_URI", "file:///store/environments/e/versions/v000001.json")
    order: list[str] = []
    monkeypatch.setattr(entry, "drop", lambda settings: order.append("drop"))
    monkeypatch.setattr(entry, "serve", lambda settings: order.append("serve"))
    assert entry.main(["serve"]) == 0 and order == ["drop", "serve"]
