"""Pinning: a template pinned to a version of its environment runs only where that version is served.

The endpoint of an environment serves one version at a time (core/endpoints.py's view names it); a run of a
pinned template is refused, before anything is spent, when that is another version, with what to do: roll the
endpoint back to the pinned version, or unpin the template so it follows what the endpoint serves. Runs of an
unpinned template go to whatever version the endpoint serves (the newest, once deployed).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from .errors import Conflict, EnvironmentNotFound
from .templates import Template


class EndpointVersionMismatch(Conflict):
    """A pinned template's environment endpoint serves another version than its pin."""

    code = "endpoint_version_mismatch"


def pin_of(template: Template, environment: str) -> int | None:
    """The version a run of `template` on `environment` needs, or None. A pin names a version of the template's
    bound environment: a run sent elsewhere (a canvas that loaded the template before a rebind) is not held to it."""
    if template.environment_version is None or (template.environment or "").lower() != environment.lower():
        return None
    return template.environment_version


def check_served(template: Template, environment: str, served: int, versions: Callable[[], Iterable[int]]) -> None:
    """Refuse a run of `template` on `environment` whose endpoint serves version `served` when the template is
    pinned to another; `versions()` lists those published (asked only then)."""
    pinned = pin_of(template, environment)
    if pinned is None or pinned == served:
        return
    if pinned not in versions():  # deleted since it was pinned (the environment was deleted and published again)
        raise EnvironmentNotFound(f"template {template.name!r} is pinned to version {pinned} of {environment}, "
                                  f"which no longer exists; its endpoint serves version {served}: pin the template "
                                  "to a published version, or unpin it")
    raise EndpointVersionMismatch(f"template {template.name!r} is pinned to version {pinned} of {environment}; its "
                                  f"endpoint serves version {served}: roll back, or unpin the template")
