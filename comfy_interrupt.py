"""ComfyUI's Cancel (POST /interrupt with a prompt id): the host adapter that finds the door the extension takes
for remote runs.

ComfyUI 0.3.75's /interrupt (server.py) interrupts whatever runs locally when the prompt id it is given is among
its running items, and a remote run's is (comfy_queue.py); so the extension's middleware (server_routes/http.py)
answers it first for a remote run's prompt id. `detect` reads the routes ComfyUI itself declared
(`PromptServer.routes`, whose handlers live in its `server` module; custom nodes' routes are theirs) before
they are added to the application, and says which paths to answer, or why it cannot: no /interrupt at all, or
another door of ComfyUI's that stops a run by its prompt id (a newer ComfyUI's /api/jobs/{job_id}/cancel),
which the extension does not answer. Either is logged once and shown by /sagemaker/health (`host.interrupt`).
"""

from __future__ import annotations

import logging
import re

from .core.host_facts import InterruptDoor

log = logging.getLogger("comfyui_sagemaker")

DOOR = "/interrupt"
PATHS = (DOOR, "/api" + DOOR)  # ComfyUI serves each of its routes under /api too (PromptServer.add_routes)
HOST_MODULE = "server"  # ComfyUI's server.py, where PromptServer declares its own routes
STOPS = re.compile(r"(^|/)(interrupt|cancel)(/|$)")  # a route that stops something


def detect(server: object) -> InterruptDoor:
    """The door for this ComfyUI's PromptServer; never raises (a door it cannot read is a degraded one)."""
    try:
        door = _detect(server)
    except Exception as err:  # a host of another shape must not stop the extension (or ComfyUI) from loading
        door = InterruptDoor((), f"degraded: ComfyUI's routes could not be read ({type(err).__name__}: {err})")
    if door.status != "ok":
        log.warning("comfyui-sagemaker: ComfyUI's Cancel for remote runs: %s", door.status)
    return door


def _detect(server: object) -> InterruptDoor:
    own = {route.path for route in getattr(server, "routes", ())
           if getattr(route, "method", None) == "POST"
           and getattr(getattr(route, "handler", None), "__module__", None) == HOST_MODULE}
    if DOOR not in own:
        return InterruptDoor((), "degraded: ComfyUI declares no POST /interrupt, so its Cancel cannot reach a "
                                 "remote run; cancel remote runs from the sidebar")
    uncovered = tuple(sorted(path for path in own if path != DOOR and STOPS.search(path)))
    if uncovered:
        return InterruptDoor(PATHS, f"degraded: ComfyUI also stops runs through POST {', '.join(uncovered)}, which "
                                    "this extension does not answer for remote runs; remote runs are kept out of "
                                    "ComfyUI's running list, so a Cancel there never interrupts the local prompt",
                             uncovered)
    return InterruptDoor(PATHS, "ok")
