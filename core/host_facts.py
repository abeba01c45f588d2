"""Facts about the running ComfyUI, as plain data: gathered by the ComfyUI face (comfy_facts.py), read by the
routes and the services, so that nothing below the face imports ComfyUI."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .analysis import NodeCatalog
from .executions import NativeQueue


@dataclass(frozen=True)
class ComfyFacts:
    """ComfyUI facts, gathered by the ComfyUI face so nothing below imports ComfyUI."""

    version: str
    listen: tuple[str, ...]
    config_dir: Path
    input_dir: Path
    output_dir: Path
    extension_dir: Path
    custom_node_dirs: tuple[str, ...] = ()
    # Called per request: ComfyUI's folder registry can change while it runs.
    model_folders: Callable[[], dict] = dict
    catalog: NodeCatalog | None = None
    send_event: Callable[..., None] = lambda event, data, sid=None: None
    comfyui_dir: Path | None = None
    worker_args: str = ""  # e.g. --cpu when this ComfyUI runs on the CPU
    multi_user: bool = False  # ComfyUI's --multi-user: requests name their ComfyUI user (comfy-user header)
    validate_prompt: Callable[[dict], tuple] | None = None  # ComfyUI's validate_prompt (valid, error, outputs, errors)
    native_queue: NativeQueue | None = None  # ComfyUI's queue and history
