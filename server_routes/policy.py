"""Roles: which routes this ComfyUI may call to change a shared store, one list beside the guard; the
sidebar only mirrors it (GET /sagemaker/health says the role). Whose run may be cancelled is decided with
the record in hand (core/identity.py), and a change from the page never raises the role (core/config.py).

- designer (the default: a single user is their own designer): everything.
- artist: reads everything shared, runs templates (Prompt on AWS and the template API), manages
  their own executions and this ComfyUI's input sync, and nothing else. Changes are allowed by this
  list only, so a route added later is designer-only until it is put here.
"""

from __future__ import annotations

from ..core.errors import Forbidden
from ..core.identity import may_change_execution

SAFE_METHODS = frozenset({"GET", "HEAD"})  # reads, e.g. HEAD /v2/{environment}/api/v2/assets/by-hash/{hash}
# (method, route pattern relative to /sagemaker) an artist may call besides reads.
ARTIST_CHANGES = frozenset({
    ("POST", "/executions"),
    ("POST", "/executions/{id}/cancel"),  # their own; someone else's is checked by the service
    ("POST", "/templates/{name}/executions"),
    ("POST", "/templates/{name}/prompt"),
    ("POST", "/analyze"),
    ("POST", "/names/check"),
    ("POST", "/inputs/watcher"),
    ("POST", "/inputs/scan"),
    ("POST", "/events/subscribe"),
    # config.json as it is now: the file is the authority (only it, or the environment, makes a designer)
    ("POST", "/config/reload"),
    # the Comfy API v2 (server_routes/v2.py): run jobs, cancel their own, upload their inputs
    ("POST", "/v2/{environment}/api/v2/jobs"),
    ("POST", "/v2/{environment}/api/v2/jobs/{id}/cancel"),  # someone else's is checked by the service
    ("POST", "/v2/{environment}/api/v2/assets"),
    ("POST", "/v2/{environment}/api/v2/assets/from-hash"),
})
WHAT = {
    "/templates": "publish, replace, rebind or delete templates",
    "/environments": "publish, roll back or delete environments",
    "/endpoints": "deploy, stop, start or delete endpoints",
    "/tasks": "cancel publish or download tasks",
    "/jobs": "cancel publish or download tasks",  # the deprecated /tasks (server_routes/deprecation.py)
    "/models": "add or delete model files",
    "/config": "change the configuration",
    "/connect": "check the AWS set-up",
}


class ForbiddenForRole(Forbidden):
    """This ComfyUI's role (configuration key `role`) does not allow the change."""

    code = "forbidden_for_role"


def check(role: str, method: str, route: str, config_error: str | None = None) -> None:
    """Raise ForbiddenForRole unless `role` may call `method route` (the route's pattern). `config_error`: why
    the role is the fail-safe one (the configuration could not be read), said in the refusal."""
    if role == "designer" or method.upper() in SAFE_METHODS or (method.upper(), route) in ARTIST_CHANGES:
        return
    what = next((w for prefix, w in WHAT.items() if route.startswith(prefix)), "make this change")
    if config_error is not None:
        raise ForbiddenForRole(f"only a designer can {what}; this ComfyUI has an artist's rights until its "
                               f"configuration can be read ({config_error}): fix config.json, then reload it")
    raise ForbiddenForRole(f"only a designer can {what}; this ComfyUI is configured as an artist "
                           "(configuration key role) and can read, run templates and manage its own runs")


# Who may cancel or change a run (its owner; someone else's a designer's single-user ComfyUI): decided with
# the record in hand, by the execution service, with the rule of core/identity.py.
may_cancel = may_change_execution
