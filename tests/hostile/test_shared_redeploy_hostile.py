"""A redeploy ask in the store is written by whoever can write the store: one that is not an ask, or names no
version that can be, deploys nothing (tests/unit/test_shared_redeploy.py); the name it gives is printable and
short wherever it is shown or logged."""

from __future__ import annotations

import json

from comfyui_sagemaker.core.shared_registry import SharedRegistry, redeploy_key
from comfyui_sagemaker.local.folder_store import FolderStore


def test_a_hostile_redeploy_ask_names_nobody_it_should_not(tmp_path):
    store = FolderStore(tmp_path / "store")
    registry = SharedRegistry(store)
    store.put(redeploy_key("Env1"), json.dumps({"by": "\u202eevil\n" + "x" * 200, "at": "", "version": 2}).encode())
    asked, _ = registry.redeploy_asked("Env1")
    assert asked == {"by": ("evil" + "x" * 200)[:64], "at": "", "version": 2}
    store.put(redeploy_key("Env1"), json.dumps({"by": "\n", "at": "", "version": 2}).encode())
    assert registry.redeploy_asked("Env1")[0]["by"] == "a designer"
    store.put(redeploy_key("Env1"), json.dumps([1] * 10).encode())
    assert registry.redeploy_asked("Env1") is None and not store.exists(redeploy_key("Env1"))
