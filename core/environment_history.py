"""An environment's versions as a history: who published each, when, what changed against the version before
it, and which one the endpoint serves now (GET /sagemaker/environments/{name}/versions, the sidebar).

Each version's manifest is read once and never changes, so the history is computed from them alone; a version
whose manifest cannot be read is listed with its problem and compared past (the next one is compared with the
last readable one before it).
"""

from __future__ import annotations

from typing import Any

from .records import Manifest


def _packs(manifest: Manifest) -> dict[str, str]:
    """Pack folder -> its digest (a pack changes when its files do, under the same folder)."""
    return {p["folder"]: p.get("digest") or p["archive"]["sha256"] for p in manifest["custom_nodes"]}


def _models(manifest: Manifest) -> dict[str, str]:
    return {f"{m['folder']}/{m['name']}": m["sha256"] for m in manifest["models"]}


def _compare(before: dict[str, str], after: dict[str, str]) -> dict[str, list[str]]:
    return {"added": sorted(set(after) - set(before)), "removed": sorted(set(before) - set(after)),
            "changed": sorted(k for k in set(after) & set(before) if after[k] != before[k])}


def changes(previous: Manifest | None, manifest: Manifest) -> dict[str, Any]:
    """What `manifest` changed against `previous` (None: the first version, everything is added)."""
    empty: Manifest = {"name": manifest["name"], "version": 0, "custom_nodes": [], "models": [], "templates": []}
    before = previous or empty
    old_templates, new_templates = set(before.get("templates") or []), set(manifest.get("templates") or [])
    return {
        "packs": _compare(_packs(before), _packs(manifest)),
        "models": _compare(_models(before), _models(manifest)),
        "templates": {"added": sorted(new_templates - old_templates), "removed": sorted(old_templates - new_templates)},
        "endpoint_changed": previous is not None and previous.get("endpoint") != manifest.get("endpoint"),
    }


def entry(manifest: Manifest, previous: Manifest | None, serving: int | None) -> dict[str, Any]:
    """One version in the history."""
    return {
        "version": manifest["version"], "created_at": manifest.get("created_at"),
        # who published it: recorded since version histories exist; None for versions published before
        "published_by": manifest.get("published_by"),
        "compared_with": previous["version"] if previous else None,
        "changes": changes(previous, manifest), "serving": manifest["version"] == serving,
        "endpoint_kind": endpoint["kind"] if (endpoint := manifest.get("endpoint")) else None,
        "packs": len(manifest["custom_nodes"]), "models": len(manifest["models"]),
        "templates": list(manifest.get("templates") or []),
    }
