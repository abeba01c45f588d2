"""Input sync with the real watcher (watchdog, inotify here) on a real folder and real stores."""

import hashlib
import os
import subprocess
import sys
import threading
import time

import pytest
from comfyui_sagemaker.core.errors import StoreUnavailable
from comfyui_sagemaker.core.fs.hashing import HashCache
from comfyui_sagemaker.core.input_sync import InputSync
from comfyui_sagemaker.local.folder_store import FolderStore
from comfyui_sagemaker.local.input_watcher import InputWatcher
from harness.waiting import wait_for


class CountingStore(FolderStore):
    """A real folder store that counts uploads and can be made to fail for a while."""

    def __init__(self, root):
        super().__init__(root)
        self.uploads = []
        self.failures_left = 0
        self.lock = threading.Lock()

    def put_blob(self, sha256, path, on_bytes=None):
        with self.lock:
            if self.failures_left:
                self.failures_left -= 1
                raise StoreUnavailable("store is down")
            self.uploads.append(f"blobs/sha256/{sha256}")
        super().put_blob(sha256, path, on_bytes)


@pytest.fixture
def rig(tmp_path):
    store = CountingStore(tmp_path / "store")
    sync = InputSync(store, tmp_path / "input", HashCache(tmp_path / "hc.json"), tmp_path / "index.json",
                     backoff=0.05, retries=3)
    watcher = InputWatcher(sync)
    (tmp_path / "input").mkdir()
    watcher.start()
    yield store, sync, tmp_path / "input"
    watcher.stop()
    sync.close()


def state(sync, name):
    return next((e for e in sync.entries() if e["name"] == name), {}).get("state")


def test_new_file_is_stored_by_content(rig):
    store, sync, folder = rig
    (folder / "a.png").write_bytes(b"png bytes")
    wait_for(lambda: state(sync, "a.png") == "synced")
    digest = hashlib.sha256(b"png bytes").hexdigest()
    assert store.get(f"blobs/sha256/{digest}").data == b"png bytes"
    assert sync.digest("a.png") == digest


def test_zero_byte_file(rig):
    store, sync, folder = rig
    (folder / "empty.png").write_bytes(b"")
    wait_for(lambda: state(sync, "empty.png") == "synced")
    assert store.size(f"blobs/sha256/{hashlib.sha256(b'').hexdigest()}") == 0


@pytest.mark.slow  # waits out a writer's seconds: the whole suite runs it, the fast tier does not
def test_slow_writer_is_uploaded_once_complete(rig):
    store, sync, folder = rig
    data = b""
    with open(folder / "slow.png", "wb") as f:
        for i in range(10):  # about 3 s, the file open all along
            chunk = bytes([i]) * 1000
            f.write(chunk)
            f.flush()
            data += chunk
            time.sleep(0.3)
    wait_for(lambda: state(sync, "slow.png") == "synced")
    assert sync.wait_idle()
    digest = hashlib.sha256(data).hexdigest()
    assert store.uploads == [f"blobs/sha256/{digest}"]
    assert store.get(f"blobs/sha256/{digest}").data == data


THOUSAND = """
import resource, sys, time
from pathlib import Path
from comfyui_sagemaker.core.fs.hashing import HashCache
from comfyui_sagemaker.core.input_sync import InputSync
from comfyui_sagemaker.local.folder_store import FolderStore
from comfyui_sagemaker.local.input_watcher import InputWatcher

root = Path(sys.argv[1])
store = FolderStore(root / "store")
sync = InputSync(store, root / "input", HashCache(root / "hc.json"), root / "index.json", backoff=0.05, retries=3)
watcher = InputWatcher(sync)
(root / "input").mkdir()
watcher.start()


def burst(first, count):
    for i in range(first, first + count):
        (root / "input" / f"f{i:04d}.png").write_bytes(f"content {i}".encode() * 50)
    deadline = time.monotonic() + 600  # generous: a deadline, not a measure
    while sum(1 for e in sync.entries() if e["state"] == "synced") < first + count:
        if time.monotonic() > deadline:
            sys.exit(f"not all {first + count} files were synced")
        time.sleep(0.05)


burst(0, 20)  # warm up: threads, pools and caches exist before the measure
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
burst(20, 1000)
grew = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
watcher.stop()
sync.close()
print(len(store.list("blobs/")), grew)
"""


@pytest.mark.slow  # another Python process syncing 1,000 files: the whole suite runs it, the fast tier does not
def test_a_thousand_files_at_once_with_bounded_memory(tmp_path):
    # A fresh process, its peak RSS measured around the burst (ru_maxrss is a lifetime peak): tracing every
    # allocation instead (tracemalloc) made this one test cost a minute.
    out = subprocess.run([sys.executable, "-P", "-c", THOUSAND, str(tmp_path)], capture_output=True, text=True,
                         timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    blobs, grew = (int(x) for x in out.stdout.split())
    grew_bytes = grew * (1 if sys.platform == "darwin" else 1024)
    assert blobs == 1020
    assert grew_bytes < 32 << 20, f"peak RSS grew by {grew_bytes >> 20} MiB syncing 1000 files"


def test_same_content_under_two_names_is_one_blob(rig):
    store, sync, folder = rig
    (folder / "one.png").write_bytes(b"same")
    (folder / "two.png").write_bytes(b"same")
    wait_for(lambda: state(sync, "one.png") == state(sync, "two.png") == "synced")
    assert store.list("blobs/") == [f"blobs/sha256/{hashlib.sha256(b'same').hexdigest()}"]


def test_file_deleted_before_upload_leaves_no_entry(rig):
    store, sync, folder = rig
    for i in range(20):
        path = folder / f"gone{i}.png"
        path.write_bytes(b"x" * i)
        path.unlink()
    assert sync.wait_idle()
    time.sleep(0.2)
    assert sync.wait_idle()
    assert [e for e in sync.entries() if e["name"].startswith("gone")] == []


def test_store_failing_for_a_while_is_retried(rig):
    store, sync, folder = rig
    store.failures_left = 2
    (folder / "retry.png").write_bytes(b"retry")
    wait_for(lambda: state(sync, "retry.png") == "synced")


def test_store_that_keeps_failing_marks_failed_and_the_watcher_lives_on(rig):
    store, sync, folder = rig
    store.failures_left = 100
    (folder / "bad.png").write_bytes(b"bad")
    wait_for(lambda: state(sync, "bad.png") == "failed")
    assert "store is down" in next(e for e in sync.entries() if e["name"] == "bad.png")["error"]
    store.failures_left = 0
    (folder / "good.png").write_bytes(b"good")
    wait_for(lambda: state(sync, "good.png") == "synced")
    os.utime(folder / "bad.png")  # the next change tries again
    (folder / "bad.png").write_bytes(b"bad")
    wait_for(lambda: state(sync, "bad.png") == "synced")


def test_renames_and_deletes_are_recorded(rig):
    store, sync, folder = rig
    (folder / "old.png").write_bytes(b"renamed")
    wait_for(lambda: state(sync, "old.png") == "synced")
    os.rename(folder / "old.png", folder / "new.png")
    wait_for(lambda: state(sync, "new.png") == "synced" and state(sync, "old.png") is None)
    assert len(store.uploads) == 1  # same bytes: no second upload
    (folder / "new.png").unlink()
    wait_for(lambda: state(sync, "new.png") is None)


def test_files_added_while_down_are_found_at_start(tmp_path):
    (tmp_path / "input" / "sub").mkdir(parents=True)
    (tmp_path / "input" / "sub" / "early.png").write_bytes(b"early")
    (tmp_path / "input" / ".hidden.tmp").write_bytes(b"not an input")
    store = CountingStore(tmp_path / "store")
    sync = InputSync(store, tmp_path / "input", HashCache(tmp_path / "hc.json"), tmp_path / "index.json")
    watcher = InputWatcher(sync)
    watcher.start()
    try:
        wait_for(lambda: state(sync, "sub/early.png") == "synced")
        assert [e["name"] for e in sync.entries()] == ["sub/early.png"]
    finally:
        watcher.stop()
        sync.close()
    again = InputSync(store, tmp_path / "input", HashCache(tmp_path / "hc.json"), tmp_path / "index.json")
    assert again.scan() == 0  # the index remembers
    again.close()
