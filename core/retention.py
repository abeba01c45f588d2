"""Execution retention: a designer's ComfyUI removes execution records (and their outputs) older than
execution_retention_days, sparing the blobs an environment still uses (ExecutionService.apply_retention)."""

from __future__ import annotations

from .executions import KeepAll
from .store import Store
from .unreadable import Unreadable, load_object, report


def environment_blobs(store: Store) -> set[str] | KeepAll:
    """The blobs every environment version uses (its models and custom node packs); every blob (KeepAll) while
    one manifest cannot be read: none is removed (fail safe) until it is mended or gone."""
    keep: set[str] = set()
    for key in store.list("environments/"):
        if "/versions/" not in key:
            continue
        try:
            manifest = load_object(store.get(key).data, key)
            keep |= {m["sha256"] for m in manifest.get("models", [])}
            keep |= {p["archive"]["sha256"] for p in manifest.get("custom_nodes", [])}
        except (Unreadable, KeyError, TypeError, AttributeError) as err:
            report(key, (err.reason if isinstance(err, Unreadable) else "") or f"incomplete ({err})")
            return KeepAll()
    return keep
