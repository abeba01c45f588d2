"""The worker's caches go to the largest writable local volume (worker/volumes.py), and a manifest whose
bytes do not fit there is refused at start with the numbers. On SageMaker the instance's storage is /tmp
while /opt/ml is on the container's root overlay; here every volume is a folder of tmp_path and
`os.statvfs` is stubbed (no real big disks)."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest
from comfyui_sagemaker.core.worker_contract import read_report
from comfyui_sagemaker.worker import volumes
from comfyui_sagemaker.worker.server import Worker
from comfyui_sagemaker.worker.settings import WorkerSettings

GB = 10 ** 9


class Disks:
    """A statvfs for folders of tmp_path: the longest matching folder's (fs id, free, total, read-only)."""

    def __init__(self, **disks: tuple[int, int, int, bool]):
        self.disks = disks

    def add(self, folder: Path, fsid: int, free: int, total: int | None = None, read_only: bool = False) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        self.disks[str(folder)] = (fsid, free, total or 2 * free, read_only)
        return folder

    def __call__(self, path: str) -> os.statvfs_result:
        match = max((p for p in self.disks if path == p or path.startswith(p + "/")), key=len, default=None)
        if match is None:
            return os.statvfs_result((4096, 4096, 10 ** 6, 10 ** 6, 10 ** 6, 0, 0, 0, 0, 255), {"f_fsid": 999})
        fsid, free, total, read_only = self.disks[match]
        return os.statvfs_result((4096, 1, total, free, free, 0, 0, 0, os.ST_RDONLY if read_only else 0, 255),
                                 {"f_fsid": fsid})


@pytest.fixture
def disks(monkeypatch, tmp_path):
    stub = Disks()
    monkeypatch.setattr(os, "statvfs", stub)
    mounts = tmp_path / "mounts"
    mounts.write_text("/dev/vda / ext4 rw 0 0\n")
    monkeypatch.setattr(volumes, "MOUNTS", mounts)
    return stub


def test_the_instance_storage_wins_over_the_root_overlay(disks, tmp_path):
    overlay = disks.add(tmp_path / "opt-ml", fsid=1, free=100 * GB)
    nvme = disks.add(tmp_path / "tmp", fsid=2, free=1700 * GB)
    placed = volumes.place(overlay / "cache", overlay / "comfyui", [overlay / "cache", nvme])
    assert placed is not None and placed.volume.candidate == nvme
    assert placed.cache_dir == nvme / "comfyui-sagemaker" / "cache"
    assert placed.base_dir == nvme / "comfyui-sagemaker" / "comfyui"  # packs, user, input, output, temp
    assert placed.disk()["free_bytes"] == 1700 * GB


@pytest.mark.parametrize("case", ["one file system", "a tie", "the cache is larger"])
def test_the_cache_folder_stays_where_it_is_unless_another_volume_is_larger(disks, tmp_path, case):
    cache = disks.add(tmp_path / "cache", fsid=1, free=500 * GB)
    other = disks.add(tmp_path / "tmp", fsid={"one file system": 1}.get(case, 2),
                      free={"a tie": 500 * GB, "the cache is larger": 10 * GB}.get(case, 900 * GB))
    placed = volumes.place(cache, tmp_path / "base", volumes.candidates_from(str(other), cache))
    assert placed is not None and (placed.cache_dir, placed.base_dir) == (cache, tmp_path / "base")


def test_read_only_and_in_memory_volumes_are_never_chosen(disks, tmp_path):
    cache = disks.add(tmp_path / "cache", fsid=1, free=10 * GB)
    ram = disks.add(tmp_path / "ram", fsid=2, free=64 * GB)
    frozen = disks.add(tmp_path / "frozen", fsid=3, free=900 * GB, read_only=True)
    mounts = f"/dev/vda / ext4 rw 0 0\ntmpfs {ram} tmpfs rw 0 0\n"
    placed = volumes.place(cache, tmp_path / "base", [cache, ram, frozen], mounts=mounts)
    assert placed is not None and placed.volume.candidate == cache


def test_candidates_default_to_the_cache_folder_and_tmp():
    assert volumes.candidates_from("", Path("/opt/ml/cache")) == [Path("/opt/ml/cache"), Path("/tmp")]
    assert volumes.candidates_from("/opt/ml/cache", Path("/opt/ml/cache")) == [Path("/opt/ml/cache")]
    assert WorkerSettings.from_env({"SAGEMAKER_MANIFEST_URI": "file:///s/environments/e/versions/v1.json",
                                    "WORKER_LOCAL_VOLUMES": "/a:/b"}).local_volumes == "/a:/b"


def manifest(store: Path, model_bytes: int) -> str:
    path = store / "environments" / "big" / "versions" / "v000001.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"name": "big", "version": 1, "custom_nodes": [], "models": [
        {"folder": "checkpoints", "name": "huge.safetensors", "sha256": "ab" * 32, "size": model_bytes}]}))
    return f"file://{path}"


def started(tmp_path: Path, uri: str) -> Worker:
    overlay, nvme = tmp_path / "opt-ml", tmp_path / "tmp"
    worker = Worker(WorkerSettings(manifest_uri=uri, cache_dir=overlay / "cache", base_dir=overlay / "comfyui",
                                   local_volumes=str(nvme), exit_after_failure=-1, extension_dir=None))
    asyncio.run(worker.prepare())
    return worker


def test_a_manifest_larger_than_the_largest_volume_is_refused_at_start(disks, tmp_path):
    disks.add(tmp_path / "opt-ml", fsid=1, free=100 * GB)
    disks.add(tmp_path / "tmp", fsid=2, free=200 * GB)
    worker = started(tmp_path, manifest(tmp_path / "store", 300 * GB))
    report = read_report(worker.report_body())
    assert report["state"] == "failed"
    reason = report["reason"] or ""
    assert "300.0 GB (300000000000 bytes)" in reason and "200.0 GB (200000000000 bytes) free" in reason
    assert str(tmp_path / "tmp") in reason
    assert report["disk"]["path"] == str(tmp_path / "tmp")
    assert (report["disk"]["needed_bytes"], report["disk"]["free_bytes"]) == (300 * GB, 200 * GB)
    assert [(p["name"], p["state"]) for p in report["phases"]] == [("manifest", "failed")]  # nothing fetched
    assert report["phases"][0]["error"] == reason[:300]


def test_a_manifest_that_fits_goes_on_to_fetch_onto_the_chosen_volume(disks, tmp_path):
    disks.add(tmp_path / "opt-ml", fsid=1, free=100 * GB)
    disks.add(tmp_path / "tmp", fsid=2, free=200 * GB)
    worker = started(tmp_path, manifest(tmp_path / "store", 150 * GB))
    report = read_report(worker.report_body())
    read = report["phases"][0]
    assert read["state"] == "done" and (read["free_bytes"], read["needed_bytes"]) == (200 * GB, 150 * GB)
    assert read["disk_path"] == str(tmp_path / "tmp")
    assert "missing from the store" in (report["reason"] or "")  # the next step ran: the blob is not there
    assert worker.materialiser.cache == tmp_path / "tmp" / "comfyui-sagemaker" / "cache"
    assert report["disk"]["cache_dir"] == str(tmp_path / "tmp" / "comfyui-sagemaker" / "cache")
