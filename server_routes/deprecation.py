"""Routes that answer under an old path for one release: the old path is registered with the new route's own
handler, and every answer on it (errors too) says so the standard way: `Deprecation` (RFC 9745, a structured
date: when it was deprecated) and a `Link` to the route to use instead (RFC 8288, relation successor-version of
RFC 5829). docs/http-api.md lists them; the OpenAPI document marks them `deprecated`."""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping

# old route -> the route that replaces it (patterns relative to /sagemaker); removed in the release after 0.1.
SUCCESSORS = {
    "/jobs/{id}": "/tasks/{id}",  # background work is a task; a job is a Comfy API v2 run
    "/jobs/{id}/cancel": "/tasks/{id}/cancel",
}
DEPRECATED_AT = 1796601600  # 2026-12-07T00:00:00Z, as an RFC 9651 date: "@1796601600"


def aliases(table: list[tuple]) -> list[tuple]:
    """The old paths of `table`'s routes, each with the same method and handler as its successor."""
    return [(method, old, fn) for old, new in SUCCESSORS.items() for method, path, fn in table if path == new]


def task_started(task: dict) -> dict:
    """A started task's 202 body: the task under `task`, and under its old name `job` for one release."""
    return {"task": task, "job": task}


def headers(route: str, prefix: str, match_info: Mapping[str, str]) -> dict[str, str]:
    """The headers an answer on `route` (the matched pattern) carries: none unless it is deprecated. `prefix` is
    the one the request used (/sagemaker or ComfyUI's /api/sagemaker), so the link works the same way."""
    new = SUCCESSORS.get(route)
    if new is None:
        return {}
    target = prefix + new.format(**{k: urllib.parse.quote(v, safe="") for k, v in match_info.items()})
    return {"Deprecation": f"@{DEPRECATED_AT}", "Link": f'<{target}>; rel="successor-version"'}
