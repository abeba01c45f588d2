"""comfyui-sagemaker: ComfyUI's entry point.

Kept thin: ComfyUI gets the node mappings, the web folder and the routes;
everything else lives below and is testable without ComfyUI. Imported outside
ComfyUI (tests, the CLI, the worker import `comfyui_sagemaker`), it registers nothing.
"""

import os
import sys


def _prompt_server():
    # ComfyUI's main.py imports `server` and creates PromptServer before loading
    # custom nodes; without both we are not inside ComfyUI.
    server = sys.modules.get("server")
    return getattr(getattr(server, "PromptServer", None), "instance", None)


def _claim(prompt_server) -> None:
    """One copy per ComfyUI: a second one (cloned twice under two folder names) refuses to load,
    naming the first, before it registers anything (nodes, routes, sidebar)."""
    here = os.path.dirname(os.path.realpath(__file__))
    first = getattr(prompt_server, "comfyui_sagemaker_dir", None)
    if first and first != here:
        raise ImportError(f"comfyui-sagemaker is already loaded from {first}; this second copy in {here} "
                          "is not loaded. Remove one of the two folders (or add .disabled to its name).")
    prompt_server.comfyui_sagemaker_dir = here


_PROMPT_SERVER = _prompt_server()
if _PROMPT_SERVER is not None:
    _claim(_PROMPT_SERVER)

from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS  # noqa: E402

WEB_DIRECTORY = "./web"

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "WEB_DIRECTORY"]


def _register_with_comfyui(prompt_server) -> None:
    from .comfy_facts import gather
    from .server_routes import register

    register(prompt_server.routes, prompt_server.app, gather())


if _PROMPT_SERVER is not None:
    _register_with_comfyui(_PROMPT_SERVER)
