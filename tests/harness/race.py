"""Workers for race tests: importable by spawned processes (test modules are not)."""

from __future__ import annotations


def publish(args: tuple) -> int | None:
    """Publish template `Race` once the start event is set; return i if this process won."""
    root, i, start = args
    from comfyui_sagemaker.core.errors import TemplateExists
    from comfyui_sagemaker.core.templates import TemplateService
    from comfyui_sagemaker.local.folder_store import FolderStore

    start.wait()
    prompt = {"1": {"class_type": "EmptyImage", "inputs": {"width": i}}}
    try:
        TemplateService(FolderStore(root), lambda n: False).create("Race", {"nodes": []}, prompt)
        return i
    except TemplateExists:
        return None
