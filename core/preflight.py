"""Before a prompt goes to an endpoint: does its environment have what the prompt needs?

Checked against the environment's manifest, never against what this
ComfyUI happens to have (an artist's machine may have no models at all):
- every node type is core, or belongs to a pack the manifest carries;
- every model the prompt names is one of the manifest's models;
- every input file it names is in ComfyUI's input folder (it will be uploaded).
"""

from __future__ import annotations

import os

from .analysis import BUILTIN
from .errors import BadRequest

MODEL_EXTENSIONS = (".safetensors", ".ckpt", ".pt", ".pth", ".bin", ".gguf", ".sft", ".onnx", ".pkl")


class EnvironmentLacks(BadRequest):
    """The prompt needs a node type or model that the environment does not carry."""

    code = "environment_lacks"


def check(prompt: dict, analysis: dict, manifest: dict) -> list[str]:
    """Raise EnvironmentLacks naming what is missing; return the input file names the prompt uses."""
    env = manifest["name"]
    packs = {p["folder"]: set(p.get("node_types") or []) for p in manifest["custom_nodes"]}
    remote_types = set().union(*packs.values()) if packs else set()
    problems = []
    for node in analysis["nodes"]:
        if node["pack"] not in ("core", BUILTIN) and node["pack"] not in packs:
            problems.append(f"node type {node['type']} (pack {node['pack']}, nodes {', '.join(node['node_ids'])})")
    for missing in analysis["missing"]:
        if missing["type"] not in remote_types:
            problems.append(f"node type {missing['type']} (nodes {', '.join(missing['node_ids'])})")
    names = {m["name"] for m in manifest["models"]}
    seen = set()
    for node_id, node in prompt.items():
        for value in (node.get("inputs") or {}).values():
            if isinstance(value, str) and value.lower().endswith(MODEL_EXTENSIONS) and value not in names \
                    and value not in seen:
                seen.add(value)
                problems.append(f"model {value} (node {node_id})")
    if problems:
        raise EnvironmentLacks(f"environment {env!r} lacks: {'; '.join(problems)}. Publish a new version of it "
                               "that includes them, or change the prompt")
    return sorted({i["name"] for i in analysis["inputs"]})


def extra_inputs(prompt: dict, analysis: dict, input_exists) -> list[str]:
    """Files named by nodes this ComfyUI does not know (so analysis could not see their combos)."""
    unknown = {nid for m in analysis["missing"] for nid in m["node_ids"]}
    out = []
    for node_id in unknown:
        for value in (prompt.get(node_id, {}).get("inputs") or {}).values():
            if isinstance(value, str) and os.path.splitext(value)[1] and input_exists(value):
                out.append(value)
    return out
