"""sha256 of model files: digests, the cache, per-file errors, flat memory, cancel, progress.

Races (a file growing or vanishing mid-hash) are made deterministic through
`cancel`, which hash_files promises to check before each chunk: a fake Event
whose is_set() changes the file at a chosen chunk.
"""

import hashlib
import json
import os
import subprocess
import sys
import threading

import pytest
from comfyui_sagemaker.core.fs import hashing
from comfyui_sagemaker.core.fs.hashing import CHANGED, HashCache, HashCancelled, HashResult, hash_files

CHUNK = 4096
ZEROS_2GIB_SHA256 = "a7c744c13cc101ed66c29f672f92455547889cc586ce6d44fe76ae824958ea51"  # sha256sum of 2 GiB of zeros


def make(path, size: int, seed: int = 0) -> bytes:
    data = bytes((i * 31 + seed) % 251 for i in range(size))
    path.write_bytes(data)
    return data


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class OnCheck:
    """A stand-in for a threading.Event: runs `action` at the n-th is_set() (1-based), never cancels."""

    def __init__(self, n: int, action):
        self.n, self.action, self.calls = n, action, 0

    def is_set(self) -> bool:
        self.calls += 1
        if self.calls == self.n:
            self.action()
        return False


class CancelAt(threading.Event):
    """A real Event that sets itself at the n-th check, i.e. before the n-th chunk read."""

    def __init__(self, n: int):
        super().__init__()
        self.n = n

    def is_set(self) -> bool:
        self.n -= 1
        if self.n == 0:
            self.set()
        return super().is_set()


@pytest.fixture
def cache(tmp_path):
    return HashCache(tmp_path / "config" / "hash-cache.json")


@pytest.mark.parametrize("workers", [1, 3])
def test_digests_match_hashlib(tmp_path, workers):
    sizes = [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 5 * CHUNK + 7]
    files = {tmp_path / f"m{i}.safetensors": make(tmp_path / f"m{i}.safetensors", n, i) for i, n in enumerate(sizes)}
    got = hash_files(files, None, workers=workers, chunk_size=CHUNK)
    assert list(got) == [str(p) for p in files]  # keyed by the path given, in the order given
    for p, data in files.items():
        r = got[str(p)]
        assert (r.path, r.size, r.sha256, r.error, r.cached, r.ok) == (str(p), len(data), sha(data), None, False, True)


def test_digest_equals_sha256sum(tmp_path):
    p = tmp_path / "model.bin"
    p.write_bytes(os.urandom(3 * hashing.CHUNK_SIZE + 123))
    out = subprocess.run(["sha256sum", str(p)], capture_output=True, text=True, check=True).stdout
    assert hash_files([p])[str(p)].sha256 == out.split()[0]


def test_relative_and_duplicate_paths_hash_once(tmp_path, monkeypatch):
    data = make(tmp_path / "a.bin", 100)
    monkeypatch.chdir(tmp_path)
    seen = []
    got = hash_files(["a.bin", str(tmp_path / "a.bin"), "a.bin"], progress=seen.append)
    assert list(got) == ["a.bin", str(tmp_path / "a.bin")]
    assert got["a.bin"] == got[str(tmp_path / "a.bin")] == HashResult(str(tmp_path / "a.bin"), 100, sha(data))
    assert seen[-1].files_total == 1


def test_cache_hit_does_not_read_the_file(tmp_path, cache):
    p = tmp_path / "m.bin"
    old = make(p, 3 * CHUNK)
    assert hash_files([p], cache)[str(p)].cached is False
    st = p.stat()
    with open(p, "r+b") as f:  # new content, same size, then the old mtime back
        f.write(b"x" * 100)
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))
    r = hash_files([p], cache)[str(p)]
    assert (r.sha256, r.cached) == (sha(old), True)  # the old digest: the file was not read


@pytest.mark.parametrize("change", ["size", "mtime"])
def test_cache_entry_is_invalid_once_size_or_mtime_moves(tmp_path, cache, change):
    p = tmp_path / "m.bin"
    make(p, 1000)
    hash_files([p], cache)
    st = p.stat()
    if change == "size":
        with open(p, "ab") as f:
            f.write(b"more")
        os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))
    else:
        with open(p, "r+b") as f:
            f.write(b"new")
        os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns + 1))
    r = hash_files([p], cache)[str(p)]
    assert (r.sha256, r.cached) == (sha(p.read_bytes()), False)
    assert cache.get(str(p), r.size, p.stat().st_mtime_ns) == r.sha256  # re-cached under the new stamp


def test_cache_survives_a_reload_from_disk(tmp_path, cache):
    p = tmp_path / "m.bin"
    data = make(p, 5000)
    hash_files([p], cache)  # saves at the end of the run
    assert not [f for f in cache.path.parent.iterdir() if f.name != cache.path.name]  # no temp file left
    st = p.stat()
    p.write_bytes(b"y" * 5000)
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))
    reloaded = HashCache(cache.path)
    assert len(reloaded) == 1
    r = hash_files([p], reloaded)[str(p)]
    assert (r.sha256, r.cached) == (sha(data), True)
    assert reloaded.save() is False  # nothing changed: no write


@pytest.mark.parametrize("content", [
    b"", b"{not json", b"\xff\xfe\x00", b"[]", b"null", b"[" * 100_000,
    b'{"version": 99, "entries": {}}', b'{"version": 1, "entries": []}',
])
def test_corrupt_cache_file_starts_empty(tmp_path, content):
    path = tmp_path / "hash-cache.json"
    path.write_bytes(content)
    cache = HashCache(path)
    assert len(cache) == 0
    p = tmp_path / "m.bin"
    data = make(p, 10)
    assert hash_files([p], cache)[str(p)].sha256 == sha(data)
    assert len(HashCache(path)) == 1  # rewritten whole


def test_bad_entries_are_dropped_good_ones_kept(tmp_path):
    path = tmp_path / "hash-cache.json"
    good = ["/m/a.bin", [10, 123, "a" * 64]]
    path.write_text(json.dumps({"version": 1, "entries": dict([
        good, ["/m/b", [10, 123]], ["/m/c", [10, "123", "a" * 64]], ["/m/d", [10, 1, "A" * 64]],
        ["/m/e", [True, 1, "a" * 64]], ["/m/f", "x"],
    ])}))
    cache = HashCache(path)
    assert len(cache) == 1
    assert cache.get("/m/a.bin", 10, 123) == "a" * 64
    assert cache.get("/m/a.bin", 10, 124) is None


def test_unwritable_cache_is_logged_not_raised(tmp_path, caplog):
    (tmp_path / "afile").write_text("")
    cache = HashCache(tmp_path / "afile" / "hash-cache.json")  # its parent is a file: mkdir fails
    p = tmp_path / "m.bin"
    data = make(p, 10)
    assert hash_files([p], cache)[str(p)].sha256 == sha(data)
    assert "could not save the hash cache" in caplog.text
    with pytest.raises(OSError):
        cache.save()


def test_cache_is_thread_safe(tmp_path, cache):
    def writer(t: int) -> None:
        for i in range(300):
            cache.put(f"/m/{t}/{i}", i, i, f"{i:064x}")
            if i % 50 == 0:
                cache.save()

    threads = [threading.Thread(target=writer, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    cache.save()
    reloaded = HashCache(cache.path)
    assert len(reloaded) == 1200
    assert reloaded.get("/m/3/299", 299, 299) == f"{299:064x}"


def test_missing_folder_and_broken_paths_are_per_file_errors(tmp_path, cache):
    good = tmp_path / "good.bin"
    data = make(good, 100)
    (tmp_path / "afile").write_text("")
    (tmp_path / "folder").mkdir()
    os.symlink(tmp_path / "nowhere", tmp_path / "dangling")
    paths = [tmp_path / "missing.bin", tmp_path / "folder", tmp_path / "dangling", tmp_path / "afile" / "x.bin", good]
    got = hash_files(paths, cache)
    assert [got[str(p)].error for p in paths] == [
        "file not found",
        "is a folder, not a file",
        "broken symlink: its target does not exist",
        "file not found (a parent in its path is not a folder)",
        None,
    ]
    assert got[str(good)].sha256 == sha(data)
    assert len(cache) == 1


def test_fifo_is_refused_without_blocking(tmp_path):
    os.mkfifo(tmp_path / "pipe")
    assert hash_files([tmp_path / "pipe"])[str(tmp_path / "pipe")].error.startswith("not a regular file")


def test_unreadable_file(tmp_path, cache, monkeypatch):
    p = tmp_path / "secret.bin"
    make(p, 10)

    def denied(path):
        raise PermissionError(13, "Permission denied", path)

    monkeypatch.setattr(hashing, "_open_for_read", denied)  # tests run as root, where chmod 000 still reads
    r = hash_files([p], cache)[str(p)]
    assert (r.sha256, r.error) == (None, "permission denied (cannot open it for reading)")
    assert len(cache) == 0


def test_file_growing_while_hashed(tmp_path, cache):
    p = tmp_path / "downloading.safetensors"
    make(p, 3 * CHUNK)

    def append():
        with open(p, "ab") as f:
            f.write(b"more bytes")

    r = hash_files([p], cache, chunk_size=CHUNK, cancel=OnCheck(2, append))[str(p)]  # after the first chunk
    assert (r.sha256, r.error) == (None, CHANGED)
    assert len(cache) == 0
    again = hash_files([p], cache, chunk_size=CHUNK)[str(p)]  # complete now
    assert again.sha256 == sha(p.read_bytes())


def test_file_rewritten_in_place_while_hashed(tmp_path):
    p = tmp_path / "m.bin"
    make(p, 3 * CHUNK)
    mtime = p.stat().st_mtime_ns

    def rewrite():
        with open(p, "r+b") as f:
            f.write(b"z" * CHUNK)
        os.utime(p, ns=(mtime + 10**9, mtime + 10**9))  # a coarse clock might not have moved by itself

    assert hash_files([p], chunk_size=CHUNK, cancel=OnCheck(3, rewrite))[str(p)].error == CHANGED


def test_file_removed_while_hashed(tmp_path, cache):
    p = tmp_path / "m.bin"
    make(p, 3 * CHUNK)
    r = hash_files([p], cache, chunk_size=CHUNK, cancel=OnCheck(2, p.unlink))[str(p)]
    assert r.error == "removed while hashing"
    assert len(cache) == 0


def test_file_removed_after_listing_before_open(tmp_path):
    big, small = tmp_path / "big.bin", tmp_path / "small.bin"
    make(big, 3 * CHUNK)
    make(small, CHUNK)
    # One worker, largest first: small.bin is deleted while big.bin is read.
    got = hash_files([small, big], workers=1, chunk_size=CHUNK, cancel=OnCheck(1, small.unlink))
    assert got[str(small)].error == "disappeared before it was hashed"
    assert got[str(big)].ok


def test_file_deleted_before_the_run_drops_its_cache_entry(tmp_path, cache):
    p = tmp_path / "m.bin"
    make(p, 10)
    hash_files([p], cache)
    p.unlink()
    assert hash_files([p], cache)[str(p)].error == "file not found"
    assert len(cache) == 1  # nothing was hashed: the stale entry stays until the file is hashed again


def test_cancel_mid_run(tmp_path, cache):
    files = [tmp_path / f"m{i}.bin" for i in range(3)]
    datas = [make(p, (3 - i) * 2 * CHUNK, i) for i, p in enumerate(files)]  # 6, 4, 2 chunks: read in that order
    # m0 takes 7 checks (6 chunks + EOF); the 9th is the second chunk of m1.
    with pytest.raises(HashCancelled) as info:
        hash_files(files, cache, workers=1, chunk_size=CHUNK, cancel=CancelAt(9))
    assert info.value.code == "cancelled"
    assert info.value.results == {str(files[0]): HashResult(str(files[0]), len(datas[0]), sha(datas[0]))}
    assert len(HashCache(cache.path)) == 1  # what finished was saved


def test_cancel_stops_every_worker(tmp_path, cache):
    class CancelOnceOneIsDone(threading.Event):
        def is_set(self) -> bool:
            if len(cache):
                self.set()
            return super().is_set()

    files = [tmp_path / f"m{i}.bin" for i in range(6)]
    datas = {str(p): make(p, 20 * CHUNK, i) for i, p in enumerate(files)}
    with pytest.raises(HashCancelled) as info:
        hash_files(files, cache, workers=2, chunk_size=CHUNK, cancel=CancelOnceOneIsDone())
    done = info.value.results
    assert 1 <= len(done) <= 2  # the first to finish, and maybe the other worker's file if it was at its EOF
    assert all(r.sha256 == sha(datas[k]) for k, r in done.items())
    assert not [t for t in threading.enumerate() if t.name.startswith("sha256-")]


def test_cancel_before_start(tmp_path, cache):
    p = tmp_path / "m.bin"
    make(p, 10)
    stop = threading.Event()
    stop.set()
    with pytest.raises(HashCancelled) as info:
        hash_files([p], cache, cancel=stop)
    assert info.value.results == {}


def test_progress_totals(tmp_path, cache, monkeypatch):
    monkeypatch.setattr(hashing, "PROGRESS_INTERVAL", 0.001)
    files = [tmp_path / f"m{i}.bin" for i in range(5)]
    for i, p in enumerate(files):
        make(p, (i + 1) * 50 * CHUNK, i)
    hash_files(files[:2], cache)  # two of them cached
    seen: list[hashing.Progress] = []
    got = hash_files([*files, tmp_path / "missing.bin"], cache, workers=2, chunk_size=CHUNK, progress=seen.append)
    total = sum(p.stat().st_size for p in files)
    assert seen[-1] == hashing.Progress(total, total, 6, 6, None)
    assert all(s.bytes_total == total and s.files_total == 6 for s in seen)
    assert [s.bytes_done for s in seen] == sorted(s.bytes_done for s in seen)
    assert [s.files_done for s in seen] == sorted(s.files_done for s in seen)
    assert sum(r.cached for r in got.values()) == 2


def test_progress_once_when_all_cached(tmp_path, cache):
    p = tmp_path / "m.bin"
    make(p, 10)
    hash_files([p], cache)
    seen = []
    hash_files([p], cache, progress=seen.append)
    assert seen == [hashing.Progress(10, 10, 1, 1, None)]


def test_progress_error_stops_the_workers(tmp_path, monkeypatch):
    monkeypatch.setattr(hashing, "PROGRESS_INTERVAL", 0.0)
    p = tmp_path / "m.bin"
    make(p, 64 * CHUNK)

    def boom(progress):
        raise RuntimeError("ui gone")

    with pytest.raises(RuntimeError, match="ui gone"):
        hash_files([p], chunk_size=CHUNK, progress=boom)
    assert not [t for t in threading.enumerate() if t.name.startswith("sha256-")]  # joined before raising


@pytest.mark.slow  # hashes 2 GiB (seconds of CPU): the whole suite runs it, the fast tier does not
def test_2gib_sparse_file_hashes_with_flat_memory(tmp_path):
    p = tmp_path / "sparse.safetensors"
    with open(p, "wb") as f:
        f.truncate(2 << 30)
    # A fresh process: ru_maxrss is a lifetime peak, so the growth must be measured from a clean start.
    code = (
        "import resource, sys\n"
        "from comfyui_sagemaker.core.fs.hashing import hash_files\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "r = hash_files([sys.argv[1]])[sys.argv[1]]\n"
        "after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "print(r.sha256, after - before)\n"
    )
    out = subprocess.run([sys.executable, "-P", "-c", code, str(p)], capture_output=True, text=True, check=True)
    p.unlink()  # also drops the 2 GiB of zero pages it put in the page cache
    digest, grew = out.stdout.split()
    grew_bytes = int(grew) * (1 if sys.platform == "darwin" else 1024)
    assert digest == ZEROS_2GIB_SHA256
    assert grew_bytes < 64 << 20, f"peak RSS grew by {grew_bytes >> 20} MiB"
