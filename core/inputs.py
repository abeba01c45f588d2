"""Input files in the store, by content: the one primitive that puts them there.

Executions call it for exactly the inputs a prompt references, right before
invoking (skipping blobs already present); the input watcher calls it as
files appear. A file's digest comes from the hash cache (by path, size,
mtime_ns), so a prompt never waits for a timer and an unchanged file is
never read twice.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path

from .errors import BadRequest
from .fs import scratch
from .fs.hashing import HashCache, file_sha256, hash_files
from .store import Store

# Temporary names in ComfyUI's input folder while a file comes in (core/fs/scratch.py: swept at start).
INPUT_TEMPS = (".sagemaker-asset-", ".sagemaker-upload-")
INPUT_TEMP = INPUT_TEMPS[0]


class InputMissing(BadRequest):
    """A prompt references an input file that is not in ComfyUI's input folder."""

    code = "input_missing"


def input_path(input_dir: Path, name: str) -> Path | None:
    """The file `name` names under `input_dir`, or None if it would escape it or is not a file."""
    if not name or "\0" in name or os.path.isabs(name):
        return None
    root = os.path.realpath(input_dir)
    path = os.path.realpath(os.path.join(root, name))
    if not path.startswith(root + os.sep) or not os.path.isfile(path):
        return None
    return Path(path)


def put_inputs(store: Store, input_dir: Path, names: Iterable[str], cache: HashCache,
               synced: Callable[[str], str | None] = lambda name: None) -> dict[str, str]:
    """Put the named input files in the store by content; return {name: sha256}.
    `synced(name)` gives the digest of a file input sync has already stored unchanged (no work then).
    InputMissing names every file that is not there."""
    names = sorted(set(names))
    paths = {n: input_path(input_dir, n) for n in names}
    missing = [n for n, p in paths.items() if p is None]
    if missing:
        raise InputMissing(f"input file(s) not found in ComfyUI's input folder: {', '.join(missing)}")
    # Input sync's index says what it uploaded, the store what is still there (a blob nothing referred to
    # may have been swept since, core/retention.py): a synced digest the store lost is uploaded again.
    found = {n: p for n, p in paths.items() if p is not None}
    out = {n: d for n, p in found.items() if (d := synced(n)) and store.has_blob(d, p.stat().st_size)}
    found = {n: p for n, p in found.items() if n not in out}
    hashed = hash_files([str(p) for p in found.values()], cache)
    for name, path in found.items():
        result = hashed[str(path)]
        if result.sha256 is None or result.size is None:
            raise InputMissing(f"input file {name}: {result.error}")
        if not store.has_blob(result.sha256, result.size, str(path)):
            store.put_blob(result.sha256, str(path))
        out[name] = result.sha256
    return out


def get_inputs(store: Store, input_dir: Path, stored: dict[str, str], cache: HashCache) -> None:
    """Files the store holds ({name: sha256}, e.g. a v2 job's assets) into ComfyUI's input folder, so this
    ComfyUI's own validation sees them as its input files. Written once under their name (exclusively, never
    over another file); a file of that name with other content is InputMissing's refusal."""
    from .store import KeyNotFound, blob_key

    for name, digest in sorted(stored.items()):
        dest = Path(input_dir) / name
        if input_path(input_dir, name) is None and (dest.exists() or os.path.dirname(name)):
            raise InputMissing(f"input file {name}: not a plain file name of ComfyUI's input folder")
        if dest.exists():
            result = hash_files([str(dest)], cache)[str(dest)]
            if result.ok and result.sha256 == digest:
                continue
            raise InputMissing(f"input file {name} exists in ComfyUI's input folder with other content")
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(scratch.temp_name(INPUT_TEMP))
        try:
            try:
                store.get_file(blob_key(digest), str(tmp))
            except KeyNotFound:
                raise InputMissing(f"input file {name}: its bytes ({digest}) are not in the store") from None
            if file_sha256(tmp) != digest:
                raise InputMissing(f"input file {name}: the stored bytes do not match their digest {digest}")
            try:
                os.link(tmp, dest)
            except FileExistsError:
                pass  # written by another request meanwhile: the same name is the same content
        finally:
            tmp.unlink(missing_ok=True)
