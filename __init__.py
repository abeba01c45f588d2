"""comfyui-sagemaker: ComfyUI's entry point.

Kept thin: ComfyUI gets the node mappings, the web folder and the routes;
everything else lives below and is testable without ComfyUI. Imported outside
ComfyUI (tests, the CLI, the worker import `comfyui_sagemaker`), it registers nothing.
"""

import sys

from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

WEB_DIRECTORY = "./web"

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "WEB_DIRECTORY"]


def _register_with_comfyui() -> None:
    # ComfyUI's main.py imports `server` and creates PromptServer before loading
    # custom nodes; without both we are not inside ComfyUI.
    server = sys.modules.get("server")
    prompt_server = getattr(getattr(server, "PromptServer", None), "instance", None)
    if prompt_server is None:
        return
    from .comfy_facts import gather
    from .server_routes import register

    register(prompt_server.routes, prompt_server.app, gather())


_register_with_comfyui()
