"""Leftovers and hygiene (issue 25, point 11): work that must happen once across ComfyUIs is leased, what a
killed process left in temporary files is swept at the next start whatever its age, and idempotency keys
expire and go."""

from __future__ import annotations

import threading

import pytest
from comfyui_sagemaker.core.environments import EnvironmentService
from comfyui_sagemaker.core.fs.hashing import HashCache
from comfyui_sagemaker.core.identity import Owner
from comfyui_sagemaker.core.leases import DeployInProgress, Leases
from comfyui_sagemaker.core.tasks import TaskManager
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
        self.until.wait(300)
        return super().snapshot()


def comfyui(store_root, host, tmp_path, who: str) -> EnvironmentService:
    store = FolderStore(store_root)
    owner = Owner(who * 12, f"{who}'s ComfyUI")
    return EnvironmentService(store, TemplateService(store, lambda n: False), host, TaskManager(),
                              HashCache(tmp_path / f"hc-{who}.json"), 4, leases=Leases(store, owner))


def test_two_comfyuis_publishing_one_environment_at_once_one_is_refused(tmp_path):
    first_done, b_tried = threading.Event(), threading.Event()
    # A plans until B has asked (its lease held all along, as from the moment it is asked for); B plans until A ends.
    host_a, host_b = SlowSnapshot(tmp_path / "a", b_tried), SlowSnapshot(tmp_path / "b", first_done)
    for host in (host_a, host_b):
        model(host, "a.safetensors", b"a" * 1000)
    a = comfyui(tmp_path / "store", host_a, tmp_path, "a")
    b = comfyui(tmp_path / "store", host_b, tmp_path, "b")
    answers: dict = {}

    def publish(who: str, service: EnvironmentService) -> None:
        try:
            answers[who] = service.publish("Env1", include="all")
        except Exception as err:  # noqa: BLE001 - the answer under test
            answers[who] = err

    first = threading.Thread(target=publish, args=("a", a))
    first.start()
    wait_for(host_a.planning.is_set, 120, "the first publish planning")
    second = threading.Thread(target=publish, args=("b", b))
    second.start()
    # B is planning (or already answered) while A's publish is in flight; then A ends.
    wait_for(lambda: host_b.planning.is_set() or "b" in answers, 120, "the second publish planning or answered")
    b_tried.set()
    first.join(120)
    assert a.tasks.wait(answers["a"].id, 120).state == "succeeded"
    first_done.set()
    second.join(120)
    assert isinstance(answers["b"], DeployInProgress), answers["b"]  # 409 deploy_in_progress, as the README says
    assert "a's ComfyUI is publishing" in answers["b"].message
    assert a.versions("Env1") == [1]
    # Once the first has ended, a publish is a publish: v2.
    job = b.publish("Env1", include="all")
    assert b.tasks.wait(job.id, 120).state == "succeeded" and b.versions("Env1") == [1, 2]


def test_a_publish_refused_while_planning_leaves_the_lease_and_the_name_free(tmp_path):
    host = FolderHost(tmp_path / "a")
    a = comfyui(tmp_path / "store", host, tmp_path, "a")
    with pytest.raises(Exception, match="no templates"):
        a.publish("Env2")  # planning refuses it (nothing to publish)
    assert a.leases.current("Env2") is None and a.canonical("Env2") is None


# --- idempotency keys expire (the Comfy API v2's 24 hours) and are removed ------------------------------------

class Clock:
    def __init__(self, t: float):
        self.t = t

    def __call__(self) -> float:
        return self.t


class CountingStore(FolderStore):
    def __init__(self, root):
        super().__init__(root)
        self.calls: list[str] = []

    def get(self, key):
        self.calls.append("get")
        return super().get(key)

    def list_page(self, folder, start_after="", limit=1000):
        self.calls.append("list_page")
        return super().list_page(folder, start_after, limit)


def test_idempotency_keys_past_24_hours_are_gone_and_the_sweep_reads_only_those(tmp_path):
    from comfyui_sagemaker.core.v2.idempotency import Claim, Idempotency, Replay

    store = CountingStore(tmp_path / "store")
    clock = Clock(1_800_000_000.0)
    keys = Idempotency(store, clock)
    old = [keys.begin(f"jobs.env1.{'a' * 12}", f"old-{i}", "fp") for i in range(3)]
    for claim in old:
        keys.finish(claim, 201, {"id": claim.key})
    clock.t += 23 * 3600
    young = keys.begin(f"assets.{'b' * 12}.alice", "young", "fp")
    keys.finish(young, 201, {"id": "young"})
    clock.t += 3600 + 1  # the old ones are 24 h and 1 s old; the young one 1 h
    assert isinstance(keys.begin(f"assets.{'b' * 12}.alice", "young", "fp"), Replay)  # still in force
    store.calls.clear()
    assert keys.remove_expired() == 3
    for claim in old:
        assert not store.exists(claim.key)
    assert store.exists(young.key)
    assert len(store.list("idempotency/expiry/")) == 1  # the young one's marker
    # An expired key used again is a new request (lazily, on read), and the sweep leaves that claim alone.
    clock.t += 24 * 3600 + 1
    again = keys.begin(f"assets.{'b' * 12}.alice", "young", "other body")
    assert isinstance(again, Claim)
    assert keys.remove_expired() == 0 and store.exists(young.key)


def test_the_idempotency_sweep_costs_what_has_expired_not_every_key(tmp_path):
    from comfyui_sagemaker.core.v2.idempotency import Idempotency

    store = CountingStore(tmp_path / "store")
    clock = Clock(1_800_000_000.0)
    keys = Idempotency(store, clock)
    for i in range(200):
        keys.finish(keys.begin("assets.cccccccccccc", f"k{i}", "fp"), 200, {"i": i})
    store.calls.clear()
    assert keys.remove_expired() == 0
    assert store.calls == ["list_page"]  # nothing expired: one listing (one LIST on S3), nothing read


# --- what a killed process was writing is swept at the next start, however young -------------------------------

WRITER = """
import os, sys, time
from pathlib import Path
from comfyui_sagemaker.core.fs.scratch import Scratch
from comfyui_sagemaker.local.folder_store import FolderStore

root = Path(sys.argv[1])
store, scratch = FolderStore(root / "store"), Scratch(root / "state" / "tmp")
fd, _ = scratch.file("asset")  # an upload being received
os.write(fd, b"x" * 1000)
scratch.dir("publish")  # packs being made for a publish
src = root / f"model-{os.getpid()}.bin"
src.write_bytes(os.urandom(9 * 1024 * 1024))

def held(n):  # a blob half copied into the store: the process is killed here
    (root / f"writing-{os.getpid()}").touch()
    time.sleep(600)

store.put_blob("0" * 64, str(src), on_bytes=held)
"""


def writer(root):
    import os
    import subprocess
    import sys

    return subprocess.Popen([sys.executable, "-c", WRITER, str(root)], env={**os.environ},
                            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)


def temporary(root) -> set[str]:
    return {str(p) for p in (root / "store").rglob(".tmp-*")} | {str(p) for p in (root / "state" / "tmp").glob("*")}


def test_a_sigkilled_writers_temporary_files_are_swept_at_the_next_start_even_if_young(tmp_path):
    from comfyui_sagemaker.core.fs.scratch import Scratch

    killed, alive = writer(tmp_path), None
    try:
        wait_for(lambda: (tmp_path / f"writing-{killed.pid}").exists(), 120, "the writer mid-copy")
        left = temporary(tmp_path)
        assert len(left) == 3, left  # a store temp file, an upload, a publish folder: seconds old
        killed.kill()
        killed.wait(60)
        alive = writer(tmp_path)  # another process writing right now, on the same store and state folder
        wait_for(lambda: (tmp_path / f"writing-{alive.pid}").exists(), 120, "the other writer mid-copy")
        being_written = temporary(tmp_path) - left
        # The next start (services.sweep(): the store's sweep and our scratch folder's, among others).
        FolderStore(tmp_path / "store").sweep()
        Scratch(tmp_path / "state" / "tmp").sweep()
        assert temporary(tmp_path) == being_written and len(being_written) == 3  # the live writer's stay
    finally:
        for proc in (killed, alive):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait(60)


@pytest.mark.comfyui
def test_a_v2_upload_cut_by_a_sigkill_is_in_our_folder_and_swept_when_the_gateway_starts_again(tmp_path):
    import socket

    from harness.gateway import TOKEN, Gateway

    config = tmp_path / "config"
    env = {"COMFYUI_SAGEMAKER_STORE": "folder", "COMFYUI_SAGEMAKER_STORE_PATH": str(tmp_path / "store")}
    first = Gateway(tmp_path, env=env, config_dir=config).start()
    second = None
    sock = socket.create_connection(("127.0.0.1", first.port), timeout=30)
    try:
        boundary = "leftover"
        head = (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.png"\r\n'
                "Content-Type: image/png\r\n\r\n").encode()
        total = len(head) + 25 * 1024 * 1024
        sock.sendall((f"POST /sagemaker/v2/E1/api/v2/assets HTTP/1.1\r\nHost: 127.0.0.1:{first.port}\r\n"
                      f"Authorization: Bearer {TOKEN}\r\nContent-Type: multipart/form-data; boundary={boundary}\r\n"
                      f"Content-Length: {total}\r\n\r\n").encode() + head + b"\0" * (4 * 1024 * 1024))
        scratch = config / "tmp"
        # The upload is being received into our own folder (not the system's temporary folder).
        wait_for(lambda: scratch.is_dir() and any(p.stat().st_size > 0 for p in scratch.iterdir()), 120,
                 "the upload's temporary file in the gateway's folder")
        first.proc.kill()  # SIGKILL mid-upload: nothing is cleaned on the way out
        first.proc.wait(60)
        assert list(scratch.iterdir())  # left behind, seconds old
        second = Gateway(tmp_path, env=env, config_dir=config).start()
        wait_for(lambda: not list(scratch.iterdir()), 120, "the next gateway to sweep it")
    finally:
        sock.close()
        first.stop()
        if second is not None:
            second.stop()
