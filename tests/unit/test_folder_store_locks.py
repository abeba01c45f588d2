"""The folder store's locks: replace and delete lock one of a fixed set of lock files (never a file per key), and
the per-key lock files earlier versions left beside deleted objects are swept."""

from __future__ import annotations

import threading

from comfyui_sagemaker.local.folder_store import LOCK_STRIPES, LOCKS, FolderStore


def hidden_files(root):
    files = (p.relative_to(root) for p in root.rglob("*") if p.is_file())
    return sorted(p.as_posix() for p in files if any(part.startswith(".") for part in p.parts))


def test_replacing_and_deleting_many_keys_leaves_no_lock_file_per_key(tmp_path):
    store = FolderStore(tmp_path)
    for i in range(600):
        etag = store.create(f"inflight/run{i}.json", b"{}")
        store.replace(f"inflight/run{i}.json", b"{\"state\": \"done\"}", if_match=etag)
        store.delete(f"inflight/run{i}.json")
    left = hidden_files(tmp_path)
    assert all(name.startswith(f"{LOCKS}/") for name in left), left[:5]
    assert 0 < len(left) <= LOCK_STRIPES
    assert store.list("inflight/") == [] and store.list("") == []


def test_writers_of_one_key_still_exclude_each_other(tmp_path):
    """Compare-and-swap under the striped lock: of 8 threads replacing from the same ETag, one wins."""
    store = FolderStore(tmp_path)
    etag = store.create("k.json", b"before")  # no writer writes these bytes again (ETags are content digests)
    start, results = threading.Barrier(8), []

    def write(i):
        start.wait()
        try:
            store.replace("k.json", str(i).encode(), if_match=etag)
            results.append("won")
        except Exception as err:
            results.append(type(err).__name__)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == ["PreconditionFailed"] * 7 + ["won"]


def test_sweep_removes_earlier_versions_lock_files_of_objects_that_are_gone(tmp_path):
    store = FolderStore(tmp_path)
    store.create("inflight/alive.json", b"{}")
    (tmp_path / "inflight" / ".alive.json.lock").write_bytes(b"")
    (tmp_path / "inflight" / ".gone.json.lock").write_bytes(b"")
    removed = store.sweep()
    assert "inflight/.gone.json.lock" in removed
    assert (tmp_path / "inflight" / ".alive.json.lock").exists()  # its object is there: maybe held by an older writer
    assert not (tmp_path / "inflight" / ".gone.json.lock").exists()
