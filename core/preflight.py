"""Before a prompt goes to an endpoint: does its environment have what the prompt needs?

Checked against the environment's manifest, never against what this
ComfyUI happens to have (an artist's machine may have no models at all):
- every node has its type: ComfyUI's frontend sends a node type this ComfyUI lacks without one, and that
  is said as "node type X is not installed here" in /prompt's 400 shape (`not_installed`);
- every node type is core, or belongs to a pack the manifest carries;
- every model the prompt names is one of the manifest's models;
- every input file it names is in ComfyUI's input folder (it will be uploaded);
- ComfyUI's own validation of the prompt passes (`comfy_validation`), where this ComfyUI knows every
  node type: its refusal goes back to the page as /prompt's 400 (`node_errors`), so the nodes get
  their red outlines and ComfyUI's own messages. A model this ComfyUI lacks but the environment
  carries is not an error.
"""

from __future__ import annotations

import os

from .analysis import BUILTIN, ui_node, untyped
from .errors import BadRequest, SageMakerError
from .records import Manifest

MODEL_EXTENSIONS = (".safetensors", ".ckpt", ".pt", ".pth", ".bin", ".gguf", ".sft", ".onnx", ".pkl")


class EnvironmentLacks(BadRequest):
    """The prompt needs a node type or model that the environment does not carry. `node_errors` says it
    per node: {node id: [{"reason": "node_type_missing" | "model_missing", "class_type", "field"?, "value"?}]}."""

    code = "environment_lacks"

    def __init__(self, message: str, node_errors: dict | None = None):
        super().__init__(message)
        self.node_errors = node_errors or {}


def check(prompt: dict, analysis: dict, manifest: Manifest) -> list[str]:
    """Raise EnvironmentLacks naming what is missing; return the input file names the prompt uses."""
    env = manifest["name"]
    packs = {p["folder"]: set(p.get("node_types") or []) for p in manifest["custom_nodes"]}
    remote_types = set().union(*packs.values()) if packs else set()
    problems = []
    node_errors: dict[str, list[dict]] = {}

    def lacks_type(node_type: str, node_ids: list[str]) -> None:
        for node_id in node_ids:
            node_errors.setdefault(node_id, []).append({"reason": "node_type_missing", "class_type": node_type})

    for node in analysis["nodes"]:
        if node["pack"] not in ("core", BUILTIN) and node["pack"] not in packs:
            problems.append(f"node type {node['type']} (pack {node['pack']}, nodes {', '.join(node['node_ids'])})")
            lacks_type(node["type"], node["node_ids"])
    for missing in analysis["missing"]:
        if missing["type"] not in remote_types:
            problems.append(f"node type {missing['type']} (nodes {', '.join(missing['node_ids'])})")
            lacks_type(missing["type"], missing["node_ids"])
    names = {m["name"] for m in manifest["models"]}
    seen = set()
    for node_id, node in prompt.items():
        for field, value in (node.get("inputs") or {}).items():
            if isinstance(value, str) and value.lower().endswith(MODEL_EXTENSIONS) and value not in names:
                node_errors.setdefault(str(node_id), []).append(
                    {"reason": "model_missing", "class_type": node.get("class_type"), "field": field, "value": value})
                if value not in seen:
                    seen.add(value)
                    problems.append(f"model {value} (node {node_id})")
    if problems:
        raise EnvironmentLacks(f"environment {env!r} lacks: {'; '.join(problems)}. Publish a new version of it "
                               "that includes them, or change the prompt", node_errors)
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


class PromptRefused(SageMakerError):
    """ComfyUI's own validation refused the prompt: `comfy_error` and `node_errors` are /prompt's."""

    code = "prompt_invalid"

    def __init__(self, comfy_error: dict, node_errors: dict):
        super().__init__(_refusal_message(comfy_error, node_errors))
        self.comfy_error = comfy_error
        self.node_errors = node_errors


def _refusal_message(comfy_error: dict, node_errors: dict) -> str:
    message = str(comfy_error.get("message") or "the prompt is not valid")
    details = [f"{errors.get('class_type', 'node')} #{node_id}: {e.get('message')}: {e.get('details')}"
               for node_id, errors in node_errors.items() for e in errors.get("errors", [])[:3]]
    return message + (" (" + "; ".join(details[:5]) + ")" if details else "")


def comfy_validation(result: tuple | None, manifest: Manifest) -> list[str] | None:
    """ComfyUI's validate_prompt result (valid, error, outputs, node_errors), or None when it was not run.
    Raises PromptRefused unless every error is a model list this ComfyUI lacks but the environment has;
    returns the output node ids ComfyUI would execute (None when unknown)."""
    if result is None:
        return None
    valid, error, outputs, node_errors = result
    if valid:
        return list(outputs)
    models = {m["name"] for m in manifest["models"]}
    remaining: dict = {}
    for node_id, entry in (node_errors or {}).items():
        errors = [e for e in entry.get("errors", []) if not (
            e.get("type") == "value_not_in_list" and (e.get("extra_info") or {}).get("received_value") in models)]
        if errors:
            remaining[node_id] = {**entry, "errors": errors}
    if remaining or not node_errors:  # a refusal of the prompt as a whole (no node at fault) stands
        raise PromptRefused(error or {"type": "prompt_invalid", "message": "the prompt is not valid",
                                      "details": "", "extra_info": {}}, remaining)
    return None


MISSING_NODE_TYPE = "missing_node_type"  # newer ComfyUIs' /prompt error type for a node type they lack


class NodeTypeNotInstalled(PromptRefused):
    """A node's type is not installed in this ComfyUI, so its frontend sent the node without it: said per
    node in /prompt's 400 shape (`node_errors`), naming the pack and environment that have it, if known."""

    code = "node_type_not_installed"

    def __init__(self, comfy_error: dict, node_errors: dict):
        super().__init__(comfy_error, node_errors)
        self.message = str(comfy_error["message"])  # said once: the node errors say the same per node
        self.args = (self.message,)


def _pack_of(node_type: str, manifest: Manifest | None) -> str | None:
    for pack in manifest["custom_nodes"] if manifest is not None else []:
        if node_type in (pack.get("node_types") or []):
            return pack["folder"]
    return None


def not_installed(prompt: dict, workflow: object, manifest: Manifest | None) -> None:
    """Raise NodeTypeNotInstalled when a node of the prompt has no type; the UI workflow names it."""
    ids = [str(node_id) for node_id, node in prompt.items() if untyped(node)]
    if not ids:
        return
    said: list[str] = []
    node_errors: dict[str, dict] = {}
    for node_id in ids:
        node = ui_node(workflow, node_id) or {}
        node_type = node.get("type") if isinstance(node.get("type"), str) else None
        if node_type is None:
            message = f"node #{node_id} has no class_type: a node type not installed here (ComfyUI's frontend sends " \
                      "those without one)"
        else:
            message = f"node type {node_type} is not installed here"
            pack = _pack_of(node_type, manifest)
            if pack is not None and manifest is not None:
                message += f" (it is in pack {pack} of environment {manifest['name']})"
        if message not in said:
            said.append(message)
        extra = {"node_id": node_id, "class_type": node_type,
                 "node_title": node.get("title") if isinstance(node.get("title"), str) else None}
        node_errors[node_id] = {"errors": [{"type": MISSING_NODE_TYPE, "message": message,
                                            "details": f"Node ID '#{node_id}'", "extra_info": extra}],
                                "dependent_outputs": [], "class_type": node_type}
    first = node_errors[ids[0]]["errors"][0]
    raise NodeTypeNotInstalled({**first, "message": "; ".join(said)}, node_errors)
