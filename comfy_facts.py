"""Facts about the running ComfyUI, read here and passed below as plain data.

With the other host adapters (comfy_queue.py) and nodes/, the only modules that import ComfyUI's own modules
(__init__.py only looks its `server` up in sys.modules; tests/unit/test_layers.py holds them to it).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from .core.analysis import BUILTIN, NodeInfo, input_specs
from .core.host_facts import ComfyFacts

log = logging.getLogger("comfyui_sagemaker")
OWN_PACKAGE = __name__.rsplit(".", 1)[0]  # the name ComfyUI (or an import) gave this extension


class ComfyCatalog:
    """ComfyUI's node registry (the data behind /object_info) for the node types asked about."""

    @staticmethod
    def _pack(cls) -> str:
        # This extension's own nodes are built into every worker: never a pack an environment carries.
        if str(getattr(cls, "__module__", "")).startswith(OWN_PACKAGE + "."):
            return BUILTIN
        module = getattr(cls, "RELATIVE_PYTHON_MODULE", "nodes") or "nodes"
        return module.split(".", 1)[1] if module.startswith("custom_nodes.") else "core"

    def types_by_pack(self) -> dict[str, list[str]]:
        import nodes

        out: dict[str, list[str]] = {}
        for name, cls in list(nodes.NODE_CLASS_MAPPINGS.items()):
            out.setdefault(self._pack(cls), []).append(name)
        return {pack: sorted(types) for pack, types in out.items()}

    def info(self, node_type: str) -> NodeInfo | None:
        import nodes  # ComfyUI's nodes module (the extension's own is nodes/ inside the package)

        cls = nodes.NODE_CLASS_MAPPINGS.get(node_type)
        if cls is None:
            return None
        pack = self._pack(cls)
        try:
            if hasattr(cls, "GET_NODE_INFO_V1"):  # V3 nodes
                input_types = cls.GET_NODE_INFO_V1().get("input", {})
            else:
                input_types = cls.INPUT_TYPES()
        except Exception:  # a broken node: still a known type of its pack
            input_types = {}
        return NodeInfo(pack=pack, inputs=input_specs(input_types))


def model_folders() -> dict:
    import folder_paths

    return {name: (list(paths), list(exts)) for name, (paths, exts) in folder_paths.folder_names_and_paths.items()}


def gather() -> ComfyFacts:
    import execution  # ComfyUI's own modules: only imported inside ComfyUI
    import folder_paths
    from comfy.cli_args import args
    from server import PromptServer

    from . import comfy_interrupt
    from .comfy_queue import ComfyQueue, validate_prompt

    try:
        from comfyui_version import __version__ as version
    except ImportError:
        version = "unknown"
    server = PromptServer.instance
    interrupt = comfy_interrupt.detect(server)
    listen = tuple(a.strip() for a in str(args.listen or "127.0.0.1").split(",") if a.strip())
    return ComfyFacts(
        version=version,
        listen=listen,
        config_dir=Path(folder_paths.get_system_user_directory("sagemaker")),
        input_dir=Path(folder_paths.get_input_directory()),
        output_dir=Path(folder_paths.get_output_directory()),
        extension_dir=Path(__file__).resolve().parent,
        custom_node_dirs=tuple(folder_paths.get_folder_paths("custom_nodes")),
        model_folders=model_folders,
        catalog=ComfyCatalog(),
        send_event=send_event,
        comfyui_dir=Path(folder_paths.__file__).resolve().parent,
        worker_args="--cpu" if args.cpu else "",
        multi_user=bool(getattr(args, "multi_user", False)),
        validate_prompt=validate_prompt,
        native_queue=ComfyQueue.attach(server, execution, interrupt),
        interrupt=interrupt,
        connected=connected_pages(server),
    )


def connected_pages(server) -> Callable[[str], bool] | None:
    """Whether a page's websocket is open: ComfyUI keeps them in PromptServer.sockets by client id (a reload
    reconnects with the same id). Where that dict is not there, None: a page's lease alone then says it looks
    (core/pages.py), said once in the log."""
    sockets = getattr(server, "sockets", None)
    if not isinstance(sockets, dict):
        log.warning("comfyui-sagemaker: this ComfyUI keeps no PromptServer.sockets dict; a page counts as looking "
                    "until its subscription's lease ends, open or closed")
        return None
    return lambda client_id: client_id in server.sockets  # a lookup, safe from any thread


def send_event(event: str, data: dict, sid: str | None = None) -> None:
    """To one browser (its client id) or all, through ComfyUI's own websocket (send_sync is thread-safe)."""
    from server import PromptServer

    if event == "sagemaker.preview":
        if sid is not None:
            send_preview(PromptServer.instance, data, sid)
        return
    PromptServer.instance.send_sync(event, data, sid)


def send_preview(server, data: dict, sid: str) -> None:
    """A remote run's sampler preview as ComfyUI sends a local one (server.py, progress.py): the
    PREVIEW_IMAGE frame, and the frame with metadata (node, prompt) to a page that declared
    supports_preview_metadata."""
    import io
    import struct

    from protocol import BinaryEventTypes

    image = data["image"]
    kind = 2 if data["image_type"] == "image/png" else 1
    server.send_sync(BinaryEventTypes.PREVIEW_IMAGE, struct.pack(">I", kind) + image, sid)
    flags = (getattr(server, "sockets_metadata", {}).get(sid) or {}).get("feature_flags") or {}
    if flags.get("supports_preview_metadata") and data.get("node_id"):
        # ComfyUI's queue takes this frame only as (image, metadata) and encodes it itself: anything else
        # raises inside its publish loop, which stops ComfyUI's websocket for everyone.
        from PIL import Image

        node = data["node_id"]
        try:
            picture = Image.open(io.BytesIO(image))
            picture.load()
        except (OSError, ValueError):
            return
        metadata = {"node_id": node, "prompt_id": data["prompt_id"], "display_node_id": node,
                    "parent_node_id": None, "real_node_id": node}
        server.send_sync(BinaryEventTypes.PREVIEW_IMAGE_WITH_METADATA,
                         (("PNG" if kind == 2 else "JPEG", picture, None), metadata), sid)
