"""The Host seam: what the services need from the ComfyUI they run in, as plain data.

`ComfyHost` is a ComfyUI's, built from the facts its face gathered (core/host_facts.py); the gateway's
`HeadlessHost` (gateway/host.py) is a process without ComfyUI. Every method a caller uses is declared here;
those a host may lack answer "nothing here" by default (no ComfyUI validation, no native queue).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from . import analysis, model_files, snapshot
from .errors import SageMakerError
from .host_facts import ComfyFacts
from .records import Manifest
from .worker_contract import WorkerRuntime

if TYPE_CHECKING:
    from .executions import NativeQueue


class Host(Protocol):
    """What the environment and execution services need from the ComfyUI they run in."""

    def snapshot(self) -> dict:
        """What this ComfyUI runs (version, custom node packs, models), for a publish."""
        ...

    def model_index(self) -> model_files.ModelIndex:
        """The model files of this ComfyUI's folders."""
        ...

    def analyze(self, workflow: object, manifest: Manifest | None = None) -> dict:
        """What `workflow` needs (node types, models, input files); `manifest`, the environment a run targets,
        where the host has no node registry of its own."""
        ...

    def node_types_by_pack(self) -> dict[str, list[str]]:
        """This ComfyUI's node types by the pack that registers them."""
        ...

    def input_dir(self) -> Path | None:
        """ComfyUI's input folder; None without one (inputs then come from the store only)."""
        ...

    def output_dir(self) -> Path | None:
        """ComfyUI's output folder; None without one."""
        ...

    def model_folders(self) -> dict:
        """ComfyUI's model folder registry: {folder: ([paths], [extensions])}."""
        ...

    def worker_runtime(self) -> WorkerRuntime:
        """How a local endpoint's worker starts here; SageMakerError where it cannot."""
        ...

    def validate(self, prompt: dict) -> tuple | None:
        """ComfyUI's own validate_prompt result for `prompt`; None where it cannot be run (the endpoint's
        ComfyUI is then the check)."""
        return None

    def native_queue(self) -> NativeQueue | None:
        """ComfyUI's own queue and history, told of remote runs; None where there is none."""
        return None

    def node_info(self, node_type: str) -> analysis.NodeInfo | None:
        """An installed node type's pack and inputs (ComfyUI's /object_info); None where unknown."""
        return None


class ComfyHost(Host):
    """A ComfyUI's Host, built from the facts its face gathered."""

    def __init__(self, facts: ComfyFacts):
        self.facts = facts

    def snapshot(self) -> dict:
        f = self.facts
        return snapshot.take(snapshot.SnapshotFacts(f.version, f.custom_node_dirs, f.model_folders(),
                                                    str(f.extension_dir)))

    def model_index(self) -> model_files.ModelIndex:
        return model_files.scan(self.facts.model_folders())

    def node_types_by_pack(self) -> dict[str, list[str]]:
        return self.facts.catalog.types_by_pack() if self.facts.catalog else {}

    def input_dir(self) -> Path:
        return self.facts.input_dir

    def output_dir(self) -> Path:
        return self.facts.output_dir

    def model_folders(self) -> dict:
        return self.facts.model_folders()

    def worker_runtime(self) -> WorkerRuntime:
        if self.facts.comfyui_dir is None:
            raise SageMakerError("local endpoints need to know where ComfyUI is installed")
        return WorkerRuntime(self.facts.comfyui_dir, self.facts.worker_args, self.facts.extension_dir)

    def validate(self, prompt: dict) -> tuple | None:
        return self.facts.validate_prompt(prompt) if self.facts.validate_prompt else None

    def native_queue(self) -> NativeQueue | None:
        return self.facts.native_queue

    def node_info(self, node_type: str) -> analysis.NodeInfo | None:
        return self.facts.catalog.info(node_type) if self.facts.catalog else None

    def analyze(self, workflow: object, manifest: Manifest | None = None) -> dict:
        """By this ComfyUI's node registry (the manifest a run targets is judged by preflight, not here)."""
        if self.facts.catalog is None:
            raise SageMakerError("analysis needs ComfyUI's node registry")
        exists = analysis.safe_input_exists(str(self.facts.input_dir))
        return analysis.analyze(workflow, self.facts.catalog, self.model_index(), exists).to_json()
