"""Model hashing throughput against `sha256sum`, and the cached pass.

Writes 1 GiB of random data (8 x 128 MiB) to a temp folder and prints, as
medians of alternating runs: `sha256sum` on the files (the baseline), our cold
hash (no cache) with the default workers and with one, and the throughput
ratio (target >= 0.9). Then the cached pass over 1,000 small files (target:
< 10 ms for all of them). The page cache cannot be flushed here, so every run
reads warm files. Run: ./dev python bench/hashing.py [runs]
"""

from __future__ import annotations

import os
import shutil
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from comfyui_sagemaker.core.fs.hashing import HashCache, hash_files

FILES, FILE_SIZE, WRITE_CHUNK = 8, 128 << 20, 8 << 20
SMALL_FILES = 1000
T = TypeVar("T")


def make_files(root: Path) -> list[Path]:
    paths = []
    for i in range(FILES):
        path = root / f"model{i}.safetensors"
        with open(path, "wb") as f:
            for _ in range(FILE_SIZE // WRITE_CHUNK):
                f.write(os.urandom(WRITE_CHUNK))
        paths.append(path)
    return paths


def timed(fn: Callable[[], T]) -> tuple[float, T]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def sha256sum(paths: list[Path]) -> dict[str, str]:
    out = subprocess.run(["sha256sum", *map(str, paths)], capture_output=True, text=True, check=True).stdout
    return {line[66:]: line[:64] for line in out.splitlines()}


def ours(paths: list[Path], workers: int | None) -> dict[str, str | None]:
    results = hash_files(paths, None, workers=workers)
    return {k: r.sha256 for k, r in results.items()}


def bench_cold(paths: list[Path], runs: int) -> None:
    size = FILES * FILE_SIZE
    version = subprocess.run(["sha256sum", "--version"], capture_output=True, text=True).stdout.splitlines()[0]
    variants = {"sha256sum": lambda: sha256sum(paths), "ours": lambda: ours(paths, None),
                "ours, 1 worker": lambda: ours(paths, 1)}
    times: dict[str, list[float]] = {k: [] for k in variants}
    expected = None
    for _ in range(runs):  # alternate, so drift (turbo, neighbours) hits every variant alike
        for name, fn in variants.items():
            seconds, digests = timed(fn)
            times[name].append(seconds)
            expected = expected or digests
            assert digests == expected, f"{name} disagrees with sha256sum"
    base = statistics.median(times["sha256sum"])
    print(f"ours: hashlib on {ssl.OPENSSL_VERSION}; sha256sum reads 32 KiB at a time in one thread")
    print(f"cold hash of {FILES} x {FILE_SIZE >> 20} MiB (page cache warm: both read from memory), "
          f"medians of {runs} alternating runs, {os.cpu_count()} CPUs")
    print(f"  {version}: {base:6.3f} s  {size / base / 1e9:5.2f} GB/s  (baseline)")
    for name in ("ours", "ours, 1 worker"):
        t = statistics.median(times[name])
        print(f"  {name:15s} {t:6.3f} s  {size / t / 1e9:5.2f} GB/s  throughput ratio {base / t:5.2f} (target >= 0.9)")


def bench_cached(root: Path, runs: int) -> None:
    small = root / "small"
    small.mkdir()
    paths = []
    for i in range(SMALL_FILES):
        path = small / f"lora{i:04d}.safetensors"
        path.write_bytes(os.urandom(4096))
        paths.append(str(path))
    cache_path = root / "hash-cache.json"
    hash_files(paths, HashCache(cache_path))  # fills and saves the cache
    load, cache = timed(lambda: HashCache(cache_path))
    assert len(cache) == SMALL_FILES
    samples = []
    for _ in range(max(runs, 20)):
        seconds, results = timed(lambda: hash_files(paths, cache))
        assert all(r.cached for r in results.values())
        samples.append(seconds)
    median = statistics.median(samples)
    print(f"cached pass over {SMALL_FILES} files (a stat each, no read): median {median * 1000:.2f} ms, "
          f"min {min(samples) * 1000:.2f} ms (target < 10 ms); loading the cache file: {load * 1000:.2f} ms")


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    if not shutil.which("sha256sum"):
        sys.exit("sha256sum is not on PATH: it is the baseline")
    root = Path(tempfile.mkdtemp(prefix="bench-hashing-"))
    try:
        paths = make_files(root)
        bench_cold(paths, runs)
        bench_cached(root, runs)
    finally:
        shutil.rmtree(root)


if __name__ == "__main__":
    main()
