"""Model management: list, add (upload or URL) and delete model files without a shell.

A new file is written under a temporary name in the folder's first base path
and renamed when complete, so ComfyUI never lists half a model.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Callable
from pathlib import Path

from . import fetch, model_files
from .errors import BadRequest, NotFound
from .hashing import HashCache
from .jobs import Job, JobManager

NAME_RE = re.compile(r"[^/\\\x00]+")


class ModelNotFound(NotFound):
    """No such model file in that folder."""

    code = "not_found"


class ModelService:
    def __init__(self, folders: Callable[[], dict], hash_cache: HashCache, jobs: JobManager,
                 allowed_hosts: Callable[[], list[str]]):
        self.folders = folders
        self.hash_cache = hash_cache
        self.jobs = jobs
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

    def temp_for(self, target: Path) -> Path:
        target.parent.mkdir(parents=True, exist_ok=True)
        return target.with_name(f".{target.name}.{uuid.uuid4().hex}.upload")

    def download(self, folder: object, name: object, url: object, sha256: object = None) -> Job:
        target = self.target(folder, name)
        if not isinstance(url, str):
            raise BadRequest("url must be a string")
        if sha256 is not None and (not isinstance(sha256, str) or not re.fullmatch(r"[0-9a-fA-F]{64}", sha256)):
            raise BadRequest("sha256 must be 64 hex digits")
        fetch.check_url(url, self.allowed_hosts())  # refuse before starting a job

        def task(job: Job) -> dict:
            job.update(phase="downloading", files_total=1, current=target.name)

            def progress(done: int, total: int | None) -> None:
                job.update(bytes_done=done, bytes_total=total or 0)

            digest = fetch.download(url, target, sha256=sha256, allowed_hosts=self.allowed_hosts(),
                                    progress=progress)
            job.update(files_done=1)
            return {"folder": folder, "name": name, "sha256": digest, "size": target.stat().st_size}

        return self.jobs.start("model download", f"{folder}/{name}", task)

    def delete(self, folder: object, name: object) -> None:
        index = model_files.scan(self.folders())
        if not isinstance(folder, str) or not isinstance(name, str):
            raise BadRequest("folder and name must be strings")
        found = index.get(folder, name)
        if found is None:
            raise ModelNotFound(f"no model {folder}/{name}")
        os.remove(found.path)
