"""What the services need from a ComfyUI, for a process that has none (the gateway).

Without ComfyUI there is no node registry, no input or output folder and no ComfyUI validation. A prompt's
node types are checked against the environment's manifest instead: each pack's `node_types` and the
`core_node_types` its publish recorded (the designer's ComfyUI core nodes and this extension's). An
environment published before manifests recorded them is checked on packs only: a core node type the
endpoint lacks is then refused by the endpoint's own ComfyUI (the run fails with prompt_invalid).

Input files: without ComfyUI's input specs (which inputs are upload combos), a literal value that names a
media file (`photo.png`, `clip.mp4`, ...) is taken as an input file. The gateway has no input folder, so
such a prompt is refused before anything is spent (InputMissing: send it as an asset or base64) rather
than failing on the endpoint.
"""

from __future__ import annotations

import hashlib
from pathlib import Path, PurePosixPath

from ..core import analysis
from ..core.analysis import NodeInfo
from ..core.errors import SageMakerError
from ..core.host import Host
from ..core.identity import Owner
from ..core.model_files import ModelIndex
from ..core.worker_contract import WorkerRuntime

NEEDS_COMFYUI = "needs a running ComfyUI (its nodes, models and folders); the gateway only runs templates"
MEDIA_EXTENSIONS = {".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".tif", ".tiff", ".mp4", ".webm", ".mov",
                    ".mkv", ".avi", ".wav", ".mp3", ".flac", ".ogg", ".m4a"}


def media_inputs(prompt: object) -> dict[str, list[str]]:
    """{file name: node ids} of literal input values that name a media file."""
    found: dict[str, list[str]] = {}
    for node_id, node in (prompt.items() if isinstance(prompt, dict) else ()):
        for value in ((node.get("inputs") or {}).values() if isinstance(node, dict) else ()):
            if isinstance(value, str) and 0 < len(value) <= 255 and "\n" not in value \
                    and PurePosixPath(value).suffix.lower() in MEDIA_EXTENSIONS:
                found.setdefault(value, []).append(str(node_id))
    return found


class ManifestCatalog:
    """The node types an environment carries, as analysis asks for them (no input specs: no combos)."""

    def __init__(self, manifest: dict):
        self.packs = {t: p["folder"] for p in manifest.get("custom_nodes") or [] for t in p.get("node_types") or []}
        core = manifest.get("core_node_types")
        self.core = set(core) if isinstance(core, list) else None  # None: a manifest from before they were kept

    def info(self, node_type: str) -> NodeInfo | None:
        if node_type in self.packs:
            return NodeInfo(self.packs[node_type], ())
        if self.core is None or node_type in self.core:
            return NodeInfo("core", ())
        return None

    def types_by_pack(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {"core": sorted(self.core or ())}
        for node_type, pack in self.packs.items():
            out.setdefault(pack, []).append(node_type)
        return out


class HeadlessHost(Host):
    """core/host.py's Host without ComfyUI: no validation of its own, no native queue (the defaults)."""

    def __init__(self, extension_dir: Path):
        self.extension_dir = extension_dir

    def input_dir(self) -> None:
        return None

    def output_dir(self) -> None:
        return None

    def analyze(self, workflow: object, manifest: dict | None = None) -> dict:
        if manifest is None:
            raise SageMakerError("analysis " + NEEDS_COMFYUI)
        result = analysis.analyze(workflow, ManifestCatalog(manifest), ModelIndex(), lambda name: False).to_json()
        known = {i["name"] for i in result["inputs"]}
        extra = [{"name": name, "present": False, "node_ids": ids} for name, ids in media_inputs(workflow).items()
                 if name not in known]
        result["inputs"] = sorted(result["inputs"] + extra, key=lambda i: i["name"])
        return result

    def snapshot(self) -> dict:
        raise SageMakerError("publishing " + NEEDS_COMFYUI)

    def model_index(self) -> ModelIndex:
        raise SageMakerError("publishing " + NEEDS_COMFYUI)

    def node_types_by_pack(self) -> dict[str, list[str]]:
        return {}

    def model_folders(self) -> dict:
        return {}

    def worker_runtime(self) -> WorkerRuntime:
        # Local endpoints are read (state, invoke, cancel), never started, from here: their ComfyUI runs them.
        return WorkerRuntime(Path("/nonexistent-comfyui"), "", self.extension_dir)


def gateway_owner(store_uri: str, display: str = "") -> Owner:
    """Every replica on one store is one owner: any of them reads, follows and cancels the others' runs as
    its own. The instance id is derived from the store, 12 characters like a ComfyUI's."""
    return Owner(hashlib.sha256(f"gateway:{store_uri}".encode()).hexdigest()[:12], display or "gateway")
