"""Model files on disk, listed the way ComfyUI names them (no hashing here).

ComfyUI's facts arrive as plain data: `{folder: ([base paths], {extensions})}`
(its `folder_paths.folder_names_and_paths`, extra_model_paths.yaml included).
A name is the path relative to its base, with `/` separators, as ComfyUI's
combos show it. Symlinked folders are followed once (a loop is cut), an
unreadable folder or file is skipped and reported.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

# Folders ComfyUI knows that hold no models.
NOT_MODEL_FOLDERS = frozenset({"custom_nodes"})


@dataclass(frozen=True)
class ModelFile:
    folder: str
    name: str
    path: str
    size: int
    mtime_ns: int

    def to_json(self) -> dict:
        return {"folder": self.folder, "name": self.name, "size": self.size, "mtime_ns": self.mtime_ns}


@dataclass
class ModelIndex:
    """Every model file per folder; `problems` lists what could not be read."""

    files: dict[str, dict[str, ModelFile]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def folders_with(self, name: str) -> list[str]:
        return sorted(f for f, names in self.files.items() if name in names)

    def get(self, folder: str, name: str) -> ModelFile | None:
        return self.files.get(folder, {}).get(name)


def _extension_ok(name: str, extensions: Iterable[str]) -> bool:
    exts = {e.lower() for e in extensions}
    # ComfyUI treats an empty extension set as "any file".
    return not exts or os.path.splitext(name)[1].lower() in exts


def walk_files(base: str, problems: list[str]) -> Iterable[tuple[str, os.stat_result]]:
    """(relative name, stat) for every file below `base`, following symlinks without looping."""
    seen: set[tuple[int, int]] = set()

    def onerror(err: OSError) -> None:
        problems.append(f"{err.filename}: {err.strerror}")

    for dirpath, dirnames, filenames in os.walk(base, followlinks=True, onerror=onerror):
        try:
            st = os.stat(dirpath)
        except OSError as err:
            problems.append(f"{dirpath}: {err.strerror}")
            dirnames[:] = []
            continue
        if (st.st_dev, st.st_ino) in seen:  # a symlink loop or a second way in
            dirnames[:] = []
            continue
        seen.add((st.st_dev, st.st_ino))
        dirnames.sort()
        for name in sorted(filenames):
            path = os.path.join(dirpath, name)
            try:
                fst = os.stat(path)
            except OSError as err:  # broken link, unreadable
                problems.append(f"{path}: {err.strerror}")
                continue
            rel = os.path.relpath(path, base).replace(os.sep, "/")
            yield rel, fst


def scan(folders: Mapping[str, tuple[Iterable[str], Iterable[str]]]) -> ModelIndex:
    index = ModelIndex()
    for folder, (bases, extensions) in sorted(folders.items()):
        if folder in NOT_MODEL_FOLDERS:
            continue
        extensions = list(extensions)
        found: dict[str, ModelFile] = {}
        for base in bases:
            if not os.path.isdir(base):
                continue
            for rel, st in walk_files(base, index.problems):
                if rel not in found and _extension_ok(rel, extensions):
                    found[rel] = ModelFile(folder, rel, os.path.join(base, rel), st.st_size, st.st_mtime_ns)
        index.files[folder] = found
    return index
