"""Leftovers and hygiene (issue 25, point 11): work that must happen once across ComfyUIs is leased, what a
killed process left in temporary files is swept at the next start whatever its age, and idempotency keys
expire and go."""

from __future__ import annotations

import threading

import pytest
from comfyui_sagemaker.core.environments import EnvironmentService
from comfyui_sagemaker.core.hashing import HashCache
from comfyui_sagemaker.core.identity import Owner
from comfyui_sagemaker.core.jobs import JobManager
from comfyui_sagemaker.core.leases import DeployInProgress, Leases
from comfyui_sagemaker.core.templates import TemplateService
from comfyui_sagemaker.local.folder_store import FolderStore
from harness.hosts import FolderHost, model
from harness.waiting import wait_for

# --- two ComfyUIs publishing one environment at once -----------------------------------------------------------
#
# Two EnvironmentService objects on one folder store (two FolderStore objects on one folder, each with its own
# owner): the store is all two ComfyUIs share, so this is the race as two processes meet it, with its order
# forced instead of left to chance. A publish plans first (the snapshot of packs and packages takes seconds);
# the second request arrives while the first is in flight and the first ends while the second still plans:
# then both were accepted and made v1 and v2. A publish now holds the lease from the moment it is asked for.


class SlowSnapshot(FolderHost):
    """A host whose snapshot takes until `until` is set (the second ComfyUI still planning)."""

    def __init__(self, root, until: threading.Event):
        super().__init__(root)
        self.until = until
        self.planning = threading.Event()

    def snapshot(self):
        self.planning.set()
        self.until.wait(30)
        return super().snapshot()


def comfyui(store_root, host, tmp_path, who: str) -> EnvironmentService:
    store = FolderStore(store_root)
    owner = Owner(who * 12, f"{who}'s ComfyUI")
    return EnvironmentService(store, TemplateService(store, lambda n: False), host, JobManager(),
                              HashCache(tmp_path / f"hc-{who}.json"), 4, leases=Leases(store, owner))


def test_two_comfyuis_publishing_one_environment_at_once_one_is_refused(tmp_path):
    first_done = threading.Event()
    host_a, host_b = FolderHost(tmp_path / "a"), SlowSnapshot(tmp_path / "b", first_done)
    for host in (host_a, host_b):
        model(host, "a.safetensors", b"a" * 1000)
    a = comfyui(tmp_path / "store", host_a, tmp_path, "a")
    b = comfyui(tmp_path / "store", host_b, tmp_path, "b")
    answers: dict = {}

    def publish_b():
        try:
            answers["b"] = b.publish("Env1", include="all")
        except Exception as err:  # noqa: BLE001 - the answer under test
            answers["b"] = err

    job_a = a.publish("Env1", include="all")  # 202
    second = threading.Thread(target=publish_b)
    second.start()
    # B is planning (or already answered) while A's publish is in flight; then A ends.
    wait_for(lambda: host_b.planning.is_set() or "b" in answers, 30, "the second publish planning or answered")
    assert a.jobs.wait(job_a.id, 60).state == "succeeded"
    first_done.set()
    second.join(60)
    assert isinstance(answers["b"], DeployInProgress), answers["b"]  # 409 deploy_in_progress, as the README says
    assert "a's ComfyUI is publishing" in answers["b"].message
    assert a.versions("Env1") == [1]
    # Once the first has ended, a publish is a publish: v2.
    job = b.publish("Env1", include="all")
    assert b.jobs.wait(job.id, 60).state == "succeeded" and b.versions("Env1") == [1, 2]


def test_a_publish_refused_while_planning_leaves_the_lease_and_the_name_free(tmp_path):
    host = FolderHost(tmp_path / "a")
    a = comfyui(tmp_path / "store", host, tmp_path, "a")
    with pytest.raises(Exception, match="no templates"):
        a.publish("Env2")  # planning refuses it (nothing to publish)
    assert a.leases.current("Env2") is None and a.canonical("Env2") is None
