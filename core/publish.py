"""Publishing an environment: plan what goes in, then pack, hash, upload, and write the manifest last.

The plan is made before the task starts (so a template that needs a missing
model is a 400 at once); the task then hashes models (cached), archives node
packs deterministically, uploads only blobs the store lacks, and writes the
manifest as the last step, with an exclusive create of version n+1. An
interrupted or cancelled publish therefore leaves no visible environment, and
a retry uploads only what is missing.
"""

from __future__ import annotations

import os
import platform
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field

from . import packing
from .analysis import BUILTIN
from .errors import BadRequest, SageMakerError
from .fs import scratch
from .fs.hashing import HashCache, HashCancelled, hash_files
from .inputs import put_inputs
from .model_files import ModelFile, ModelIndex
from .records import EndpointConfig, Manifest, WarmupPrompt
from .store import BlobMismatch, Store
from .tasks import Task, TaskCancelled
from .warmup import WarmupPlan


class PublishInvalid(BadRequest):
    """What the templates need is not all here (a missing model or node type), or nothing was chosen."""

    code = "publish_invalid"


@dataclass
class Plan:
    name: str
    templates: list[str]
    include: str
    endpoint: EndpointConfig | None
    packs: list[dict]  # snapshot entries (folder, path, identity, digest, dirty)
    models: list[ModelFile]
    snapshot: dict  # comfyui_version, python, platform, torch, python_packages
    notes: list[str] = field(default_factory=list)
    warmup: WarmupPlan | None = None  # what its workers run before ready (core/warmup.py)

    @property
    def model_bytes(self) -> int:
        return sum(m.size for m in self.models)


def make_plan(
    name: str,
    templates: list[dict],
    include: str,
    endpoint: EndpointConfig | None,
    snapshot: dict,
    index: ModelIndex,
    analyze: Callable[[dict], dict],
) -> Plan:
    """Union of what the templates need, minus this extension and ComfyUI-Manager.
    PublishInvalid names a missing model or node type."""
    installed = {p["folder"]: p for p in snapshot["custom_nodes"] if not p.get("builtin")}
    notes: list[str] = []
    if include == "all":
        packs = sorted(installed)
        models = [f for folder in index.files.values() for f in folder.values()]
    else:
        if not templates:
            raise PublishInvalid(
                f"environment {name!r} has no templates: bind templates to it, list them in `templates`, "
                'or publish with include: "all"'
            )
        pack_names: set[str] = set()
        wanted: dict[tuple[str, str], ModelFile] = {}
        for t in templates:
            a = analyze(t["workflow"])
            if a["missing_nodes"]:
                raise PublishInvalid(
                    f"template {t['name']!r} uses node types this ComfyUI does not have: "
                    f"{', '.join(a['missing_nodes'])}"
                )
            for m in a["models"]:
                folders = m.get("candidates") or [m["folder"]]
                found = [index.get(f, m["name"]) for f in folders]
                if not m["present"] or not any(found):
                    raise PublishInvalid(
                        f"template {t['name']!r} needs model {m['folder']}/{m['name']}, which is not in this "
                        "ComfyUI's model folders"
                    )
                if len(folders) > 1:
                    notes.append(f"{m['name']} is in several folders ({', '.join(folders)}): all are included")
                for f in found:
                    if f is not None:
                        wanted[(f.folder, f.name)] = f
            pack_names |= {p for p in a["packs"] if p in installed}
        packs = sorted(pack_names)
        models = sorted(wanted.values(), key=lambda f: (f.folder, f.name))
    return Plan(name, [t["name"] for t in templates], include, endpoint, [installed[p] for p in packs], models,
                snapshot, notes)


def warmup_entry(warmup: WarmupPlan | None, store: Store, cache: HashCache) -> WarmupPrompt | None:
    """The manifest's `warmup`, its input files put in the store by content (as a run's are)."""
    if warmup is None:
        return None
    inputs = put_inputs(store, warmup.input_dir, warmup.inputs, cache) if warmup.inputs and warmup.input_dir else {}
    return {"template": warmup.template, "prompt": warmup.prompt, "inputs": inputs}


def platform_note() -> dict:
    return {"system": platform.system(), "machine": platform.machine()}


def run_publish(
    task: Task,
    plan: Plan,
    store: Store,
    cache: HashCache,
    write_manifest: Callable[[Manifest], int],
    node_types: dict[str, list[str]] | None = None,
    temp: scratch.Scratch | None = None,
) -> dict:
    """The publish task's work: returns {name, version}. Raises TaskCancelled or a SageMakerError. The packs are made
    in a folder of `temp` (removed at the end; one a killed ComfyUI left is swept at its next start)."""
    task.update(phase="hashing", files_total=len(plan.models), bytes_total=plan.model_bytes)

    def on_hash(p) -> None:
        task.update(bytes_done=p.bytes_done, files_done=p.files_done, current=os.path.basename(p.current or ""))

    try:
        hashes = hash_files([m.path for m in plan.models], cache, progress=on_hash, cancel=task.cancel_event)
    except HashCancelled:
        raise TaskCancelled() from None
    failed = [f"{m.folder}/{m.name}: {hashes[m.path].error}" for m in plan.models if not hashes[m.path].ok]
    if failed:
        raise SageMakerError("cannot hash models: " + "; ".join(failed))
    digests = {path: r.sha256 for path, r in hashes.items() if r.sha256 is not None}  # all of them: none failed

    work = (temp or scratch.system()).dir("publish")
    try:
        task.update(phase="packing", files_total=len(plan.packs), files_done=0, bytes_done=0, bytes_total=0)
        archives = []
        for i, pack in enumerate(plan.packs):
            task.update(current=pack["folder"], files_done=i)
            path, sha, size = packing.make_archive(os.path.realpath(pack["path"]), work)
            archives.append((pack, path, sha, size))

        # A model rewritten after it was hashed must not become a blob under its old digest: the hash cache
        # says whether the file still has the (size, mtime) it was hashed with; the store checks the bytes.
        for m in plan.models:
            st = os.stat(m.path)
            if cache.get(os.path.abspath(m.path), st.st_size, st.st_mtime_ns) != digests[m.path]:
                raise BlobMismatch(f"model {m.folder}/{m.name} changed after it was hashed; publish again once it "
                                   "is complete")
        uploads = [(m.path, digests[m.path], m.size, f"{m.folder}/{m.name}") for m in plan.models]
        uploads += [(path, sha, size, f"custom_nodes/{pack['folder']}") for pack, path, sha, size in archives]
        task.update(phase="uploading", files_total=len(uploads), files_done=0, bytes_done=0,
                   bytes_total=sum(u[2] for u in uploads))
        written = skipped = 0
        for i, (path, sha, size, label) in enumerate(uploads):
            task.update(current=label, files_done=i)
            if store.has_blob(sha, size, path):  # content-addressed and checked: present means identical
                skipped += 1
                task.add_bytes(size)
                continue
            store.put_blob(sha, path, on_bytes=task.add_bytes)  # BlobMismatch if the file changed since hashed
            written += size
        task.update(files_done=len(uploads), current=None, phase="writing manifest")

        manifest: Manifest = {
            "name": plan.name,
            "version": 0,  # write_manifest numbers it
            "comfyui_version": plan.snapshot["comfyui_version"],
            "python": plan.snapshot["python"],
            "platform": plan.snapshot["platform"],
            "torch": plan.snapshot.get("torch"),
            "python_packages": plan.snapshot["python_packages"],
            "custom_nodes": [
                {"folder": p["folder"], "identity": p["identity"], "dirty": p.get("dirty", False),
                 "digest": p["digest"], "archive": {"sha256": sha, "size": size},
                 "node_types": (node_types or {}).get(p["folder"], [])}
                for p, _path, sha, size in archives
            ],
            "models": [{"folder": m.folder, "name": m.name, "size": m.size, "sha256": digests[m.path]}
                       for m in plan.models],
            # What a caller without ComfyUI (the gateway) checks a prompt's node types against: the designer's
            # core nodes and this extension's own, beside each pack's node_types above.
            "core_node_types": sorted({*(node_types or {}).get("core", []), *(node_types or {}).get(BUILTIN, [])}),
            "templates": plan.templates,
            "include": plan.include,
            "endpoint": plan.endpoint,
            "size": sum(u[2] for u in uploads),
            "notes": plan.notes,
            "warmup": warmup_entry(plan.warmup, store, cache),
        }
        task.check_cancelled()  # last chance: after the manifest the environment exists
        version = write_manifest(manifest)
        return {"name": plan.name, "version": version, "bytes_written": written, "blobs_skipped": skipped}
    finally:
        shutil.rmtree(work, ignore_errors=True)
