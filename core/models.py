"""Model management: list, add (upload or URL) and delete model files without a shell.

A new file is written under a temporary name in the folder's first base path
and given its real name when complete, so ComfyUI never lists half a model;
without `overwrite` that last step never replaces a file (not even one that
appeared meanwhile). Listing follows symlinked folders (users link model
folders elsewhere), but a delete only removes an entry whose folder really
lies inside one of the model folder's base paths, and removes a symlinked
model file's link, never its target.
"""

from __future__ import annotations

import builtins
import errno
import os
import re
import time
from collections.abc import Callable
from pathlib import Path

from . import model_files
from .errors import BadRequest, Conflict, NotFound
from .fs import scratch
from .fs.hashing import HashCache
from .net import fetch
from .tasks import Task, TaskManager

UPLOAD_SUFFIX = ".upload"
UPLOAD_PREFIX = ".sagemaker-model-"  # a model file being uploaded or copied in: `<prefix><owner>-<random>.upload`
NAME_RE = re.compile(r"[^/\\\x00]+")
DOWNLOAD_TASK = "model download"


class ModelNotFound(NotFound):
    """No such model file in that folder."""

    code = "not_found"


class ModelExists(Conflict):
    """A model of that name exists in that folder and replacing it was not asked for."""

    code = "model_exists"


class ModelOutsideFolder(BadRequest):
    """The model file is reached through a symlinked folder that leads out of the model folder."""

    code = "model_outside_folder"


def _inside(path: str, base: str) -> bool:
    try:
        return os.path.commonpath([path, base]) == base
    except ValueError:  # another drive (Windows)
        return False


def _unlink_beneath(base: str, parent: str, leaf: str) -> None:
    """Unlink `parent/leaf`, `parent` being a real path inside the real path `base`, without following a
    symlink that replaced a folder on the way since it was checked (and never the leaf's own link)."""
    if not (os.unlink in os.supports_dir_fd and os.open in os.supports_dir_fd and hasattr(os, "O_NOFOLLOW")):
        os.remove(os.path.join(parent, leaf))  # Windows: no dir_fd; the check above is what there is
        return
    rel = os.path.relpath(parent, base)
    fd = os.open(base, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for part in [] if rel == "." else rel.split(os.sep):
            step = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = step
        os.unlink(leaf, dir_fd=fd)
    finally:
        os.close(fd)


class ModelService:
    def __init__(self, folders: Callable[[], dict], hash_cache: HashCache, tasks: TaskManager,
                 allowed_hosts: Callable[[], list[str]]):
        self.folders = folders
        self.hash_cache = hash_cache
        self.tasks = tasks
        self.allowed_hosts = allowed_hosts

    def list(self) -> dict:
        index = model_files.scan(self.folders())
        out = {}
        for folder, files in index.files.items():
            out[folder] = [{**f.to_json(), "sha256": self.hash_cache.get(os.path.abspath(f.path), f.size, f.mtime_ns)}
                           for f in files.values()]
        return {"folders": out, "problems": index.problems}

    def target(self, folder: object, name: object) -> Path:
        """The path a new model `name` in `folder` gets; BadRequest for anything that could escape it."""
        folders = {k: v for k, v in self.folders().items() if k not in model_files.NOT_MODEL_FOLDERS}
        if not isinstance(folder, str) or folder not in folders:
            raise BadRequest(f"unknown model folder {folder!r}; ComfyUI knows: {', '.join(sorted(folders))}")
        if not isinstance(name, str) or not NAME_RE.fullmatch(name) or name.startswith(".") or name in ("..",):
            raise BadRequest("model name must be a plain file name: no '/', '\\\\', '..', NUL or leading '.'")
        bases, exts = folders[folder]
        exts = [e.lower() for e in exts]
        if exts and os.path.splitext(name)[1].lower() not in exts:
            raise BadRequest(f"{folder} holds {', '.join(sorted(exts))} files; {name!r} would not be listed")
        bases = list(bases)
        if not bases:
            raise BadRequest(f"model folder {folder!r} has no path on disk")
        return Path(bases[0]) / name

    def refuse_existing(self, folder: str, name: str, how_to_replace: str) -> None:
        """ModelExists if `folder` has `name` in any of its base paths (ComfyUI lists them all as one)."""
        for base in self.folders()[folder][0]:
            if os.path.lexists(os.path.join(base, name)):
                raise ModelExists(f"{name} exists in {folder}; {how_to_replace} to replace it")

    def temp_for(self, target: Path) -> Path:
        target.parent.mkdir(parents=True, exist_ok=True)
        return target.with_name(scratch.temp_name(UPLOAD_PREFIX, UPLOAD_SUFFIX))

    def sweep(self, older_than: float = scratch.UNKNOWN_AFTER_S) -> builtins.list[str]:
        """Remove uploads a killed ComfyUI left half-written: any age once their writer is known dead
        (core/fs/scratch.py), else older than `older_than` s (an older version's names)."""
        removed = []
        for folder, (bases, _exts) in self.folders().items():
            if folder in model_files.NOT_MODEL_FOLDERS:
                continue
            for base in bases:
                removed += scratch.sweep(base, (UPLOAD_PREFIX,), recursive=True, unknown_after=older_than)
                removed += self._sweep_older(base, older_than)
        return removed

    @staticmethod
    def _sweep_older(base: str, older_than: float) -> builtins.list[str]:
        """Uploads named by an older version (`.<name>.<hex>.upload`, no owner): by age only."""
        removed, cutoff = [], time.time() - older_than
        for dirpath, _dirs, files in os.walk(base):
            for name in files:
                path = os.path.join(dirpath, name)
                try:
                    if name.startswith(".") and not name.startswith(UPLOAD_PREFIX) and name.endswith(UPLOAD_SUFFIX) \
                            and os.lstat(path).st_mtime < cutoff:
                        os.unlink(path)
                        removed.append(path)
                except OSError:
                    continue
        return removed

    def install(self, tmp: Path, target: Path, folder: str, overwrite: bool, how_to_replace: str) -> None:
        """Rename the complete `tmp` to `target`; without `overwrite`, ModelExists if the name is taken."""
        try:
            fetch.install(tmp, target, overwrite=overwrite)
        except FileExistsError:
            raise ModelExists(f"{target.name} appeared in {folder} meanwhile and was kept; "
                              f"{how_to_replace} to replace it") from None

    def download(self, folder: object, name: object, url: object, sha256: object = None,
                 overwrite: object = False) -> Task:
        target = self.target(folder, name)
        if not isinstance(url, str):
            raise BadRequest("url must be a string")
        if sha256 is not None and (not isinstance(sha256, str) or not re.fullmatch(r"[0-9a-fA-F]{64}", sha256)):
            raise BadRequest("sha256 must be 64 hex digits")
        if not isinstance(overwrite, bool):
            raise BadRequest("overwrite must be true or false")
        if not overwrite:
            self.refuse_existing(str(folder), str(name), "send overwrite: true")  # strings: target() checked
        fetch.check_url(url, self.allowed_hosts())  # refuse before starting a task
        if self.tasks.running(DOWNLOAD_TASK, f"{folder}/{name}"):  # two writers would share one .part
            raise Conflict(f"a download to {folder}/{name} is running; wait for it or cancel it first")

        def work(task: Task) -> dict:
            task.update(phase="downloading", files_total=1, current=target.name)

            def progress(done: int, total: int | None) -> None:
                task.update(bytes_done=done, bytes_total=total or 0)

            try:
                digest = fetch.download(url, target, sha256=sha256, allowed_hosts=self.allowed_hosts(),
                                        progress=progress, overwrite=overwrite)
            except FileExistsError:
                raise ModelExists(f"{name} appeared in {folder} during the download and was kept; download "
                                  "again with overwrite: true to replace it (the downloaded data is reused)") from None
            task.update(files_done=1)
            return {"folder": folder, "name": name, "sha256": digest, "size": target.stat().st_size}

        return self.tasks.start(DOWNLOAD_TASK, f"{folder}/{name}", work)

    def delete(self, folder: object, name: object) -> None:
        if not isinstance(folder, str) or not isinstance(name, str):
            raise BadRequest("folder and name must be strings")
        folders = self.folders()
        found = model_files.scan(folders).get(folder, name)
        if found is None:
            raise ModelNotFound(f"no model {folder}/{name}")
        # The folder the entry is in, links resolved; the entry itself is not resolved: a linked model
        # file is removed as a link.
        parent = os.path.realpath(os.path.dirname(found.path))
        leaf = os.path.basename(found.path)
        base = next((b for b in map(os.path.realpath, folders[folder][0]) if _inside(parent, b)), None)
        if base is None:
            raise ModelOutsideFolder(
                f"{folder}/{name} lives in {parent}, outside the {folder} model folder, through a symlinked "
                "folder; it is not deleted from here: delete it where it lives if you mean to")
        try:
            _unlink_beneath(base, parent, leaf)
        except FileNotFoundError:
            raise ModelNotFound(f"no model {folder}/{name}") from None
        except OSError as err:
            if err.errno not in (errno.ELOOP, errno.ENOTDIR):
                raise
            raise ModelOutsideFolder(f"a folder on the way to {folder}/{name} was replaced by a link while "
                                     "deleting; nothing was deleted") from None
