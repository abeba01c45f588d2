"""Files that are not files (issue 25, point 8): a FIFO, a socket or a device where the store or the disk
should have a regular file is refused with a reason, never opened for a read that waits for good. A FIFO
as a manifest left a worker `starting` with no reason."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import threading
import uuid
from pathlib import Path

import pytest
from comfyui_sagemaker.core.fs.files import NotARegularFile
from comfyui_sagemaker.core.fs.hashing import file_sha256
from comfyui_sagemaker.core.packing import extract_archive
from comfyui_sagemaker.local.folder_store import FolderStore
from harness.worker import WorkerProcess


def unblock(path: Path) -> None:
    """Give a reader stuck opening the FIFO at `path` a writer, so it ends (on code that waits)."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
    except OSError:
        pass


def within(call, fifo: Path | None = None, timeout: float = 120):
    """`call()`'s outcome (its value or the exception it raised), failing the test if it waits."""
    box: dict = {}

    def run() -> None:
        try:
            box["value"] = call()
        except BaseException as err:  # noqa: BLE001 - handed to the test
            box["error"] = err

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        if fifo is not None:
            unblock(fifo)
        raise AssertionError(f"the read waited over {timeout} s instead of refusing a non-regular file")
    if "error" in box:
        raise box["error"]
    return box.get("value")


def not_files(folder: Path) -> dict[str, Path]:
    """A FIFO, a Unix socket (bound, so it exists) and a link to a device, in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    os.mkfifo(folder / "fifo")
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(folder / "socket"))
    listener.close()  # the socket file stays
    os.symlink("/dev/null", folder / "device")
    return {name: folder / name for name in ("fifo", "socket", "device")}


@pytest.mark.parametrize("kind", ["fifo", "socket", "device"])
def test_the_folder_store_refuses_an_object_that_is_not_a_file(tmp_path, kind):
    store = FolderStore(tmp_path / "store")
    digest = hashlib.sha256(b"x").hexdigest()
    key = f"blobs/sha256/{digest}"
    made = not_files(tmp_path / "store" / "blobs" / "sha256")[kind]
    made.rename(made.with_name(digest))
    path = made.with_name(digest)
    reads = {
        "get": lambda: store.get(key),
        "read_range": lambda: store.read_range(key, 0, 10),
        "get_file": lambda: store.get_file(key, str(tmp_path / "copy")),
        "has_blob": lambda: store.has_blob(digest, os.stat(path).st_size),
        "put_file from it": lambda: store.put_file("inputs/x", str(path)),
    }
    for what, read in reads.items():
        with pytest.raises(NotARegularFile, match="not a regular file") as err:
            within(read, path if kind == "fifo" else None)
        assert err.value.code == "not_a_regular_file", what
        if what != "put_file from it":
            assert key in err.value.message, what


def test_an_archive_or_a_file_to_hash_that_is_a_fifo_is_refused(tmp_path):
    fifo = not_files(tmp_path / "odd")["fifo"]
    with pytest.raises(NotARegularFile, match="FIFO"):
        within(lambda: extract_archive(str(fifo), str(tmp_path / "dest")), fifo)
    assert not (tmp_path / "dest").exists()
    with pytest.raises(NotARegularFile, match="FIFO"):
        within(lambda: file_sha256(fifo), fifo)


def start_failing_worker(store: FolderStore, key: str, root: Path) -> dict:
    w = WorkerProcess(f"{store.root.resolve().as_uri()}/{key}", root).start()
    try:
        return w.wait_state()
    finally:
        w.stop()


@pytest.mark.comfyui
def test_a_fifo_as_the_manifest_fails_the_workers_start_with_the_reason(tmp_path):
    store = FolderStore(tmp_path / "store")
    key = f"environments/f{uuid.uuid4().hex[:8]}/versions/v000001.json"
    manifest = tmp_path / "store" / key
    manifest.parent.mkdir(parents=True)
    os.mkfifo(manifest)
    try:
        status = start_failing_worker(store, key, tmp_path / "w")
    finally:
        unblock(manifest)
    assert status["state"] == "failed", status
    assert key in status["reason"] and "FIFO" in status["reason"], status


@pytest.mark.comfyui
def test_a_pack_blob_that_is_a_fifo_fails_the_workers_start_with_the_reason(tmp_path):
    store = FolderStore(tmp_path / "store")
    digest = hashlib.sha256(b"never read").hexdigest()
    blob = tmp_path / "store" / "blobs" / "sha256" / digest
    blob.parent.mkdir(parents=True)
    os.mkfifo(blob)
    key = f"environments/f{uuid.uuid4().hex[:8]}/versions/v000001.json"
    store.put(key, json.dumps({"custom_nodes": [{"folder": "p", "archive": {"sha256": digest, "size": 1}}],
                               "models": []}).encode())
    try:
        status = start_failing_worker(store, key, tmp_path / "w")
    finally:
        unblock(blob)
    assert status["state"] == "failed" and digest in status["reason"] and "FIFO" in status["reason"], status
