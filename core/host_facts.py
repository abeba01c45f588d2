"""Facts about the running ComfyUI, as plain data: gathered by the ComfyUI face (comfy_facts.py), read by the
routes and the services, so that nothing below the face imports ComfyUI."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .analysis import NodeCatalog
from .executions import NativeQueue


@dataclass(frozen=True)
class InterruptDoor:
    """ComfyUI's Cancel for a remote run (POST /interrupt with its prompt id), as the ComfyUI face found it
    (comfy_interrupt.py): the paths the extension answers first for a remote run's prompt id, since ComfyUI's
    own handler would interrupt whatever runs locally; `uncovered`, ComfyUI's other doors that stop a run by
    its prompt id and that the extension does not answer (remote runs are then kept out of ComfyUI's running
    list); `status` "ok" or "degraded: <why>"."""

    paths: tuple[str, ...] = ()
    status: str = "absent: no ComfyUI routes"
    uncovered: tuple[str, ...] = ()


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
    interrupt: InterruptDoor = InterruptDoor()
    # Whether the page of a client id has its websocket open (ComfyUI's PromptServer.sockets); None where the
    # host cannot say (core/pages.py: then a page's lease alone says it looks).
    connected: Callable[[str], bool] | None = None

    def host_status(self) -> dict[str, str]:
        """What /sagemaker/health says of the host surfaces the extension touches: "ok" or "degraded: <why>"."""
        queue = self.native_queue if self.native_queue is not None else NativeQueue()
        return {"queue": queue.status, "interrupt": self.interrupt.status}
