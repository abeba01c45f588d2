"""What a workflow needs: node packs, models and input files.

Exact where ComfyUI knows, explicit where it guesses:
- node type -> pack through ComfyUI's own registry (`python_module`); core
  nodes are `core`; frontend-only types are neither packs nor missing;
- a model reference is a combo value of an installed node found in a model
  folder's file list (ComfyUI lists file names, not folders, so the folder is
  inferred; a name found in several folders is reported with all of them);
  a node type that is not installed has its widget values matched against
  every model list; any node's `properties.models` (name, directory, url)
  are declared models, `present: false` when not on disk;
- inputs are the values of upload combos (LoadImage, LoadVideo, ...) and of
  combos whose options are files of the input folder.
Subgraphs (`definitions.subgraphs`) are flattened; a subgraph that contains
itself is cut, never followed forever.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from .errors import BadRequest
from .model_files import ModelIndex

BUILTIN = "builtin"  # the pack name of this extension's own nodes: every worker has them
FRONTEND_ONLY = frozenset({"Note", "MarkdownNote", "Reroute", "PrimitiveNode"})
UPLOAD_FLAGS = ("image_upload", "video_upload", "audio_upload", "upload")
WIDGET_TYPES = frozenset({"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"})


@dataclass(frozen=True)
class InputSpec:
    """One input of an installed node type, as far as analysis cares."""

    name: str
    widget: bool  # has a widget value in a UI-format workflow
    options: tuple[str, ...] | None = None  # a combo's choices
    upload: bool = False  # an upload combo (its values are input files)
    extra_widgets: int = 0  # widgets the frontend adds after it (control_after_generate, upload button)
    minimum: float | None = None  # an INT or FLOAT input's limits (ComfyUI checks a value against them)
    maximum: float | None = None


@dataclass(frozen=True)
class NodeInfo:
    pack: str  # "core" or the custom node folder
    inputs: tuple[InputSpec, ...]


class NodeCatalog(Protocol):
    """ComfyUI's node registry, as plain data (the ComfyUI face implements it)."""

    def info(self, node_type: str) -> NodeInfo | None:
        """The installed node type's pack and inputs; None if not installed."""

    def types_by_pack(self) -> dict[str, list[str]]:
        """Every installed node type, grouped by pack ("core" or the custom node folder)."""


def input_specs(input_types: dict) -> tuple[InputSpec, ...]:
    """InputSpecs from a node's INPUT_TYPES()-shaped dict, in widget order."""
    out = []
    for section in ("required", "optional"):
        for name, spec in (input_types.get(section) or {}).items():
            if not isinstance(spec, (list, tuple)) or not spec:
                continue
            kind, opts = spec[0], (spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {})
            options = None
            if isinstance(kind, (list, tuple)):
                options = tuple(str(o) for o in kind)
            elif kind == "COMBO":
                options = tuple(str(o) for o in opts.get("options", ()))
            widget = (options is not None or kind in WIDGET_TYPES) and not opts.get("forceInput")
            upload = any(opts.get(flag) for flag in UPLOAD_FLAGS)
            extra = int(bool(opts.get("control_after_generate"))) + int(upload)
            lo, hi = (_limit(opts.get("min")), _limit(opts.get("max"))) if kind in ("INT", "FLOAT") else (None, None)
            out.append(InputSpec(name, widget, options, upload, extra if widget else 0, lo, hi))
    return tuple(out)


def _limit(value: object) -> float | None:
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


@dataclass
class Analysis:
    format: str
    nodes: dict[str, dict] = field(default_factory=dict)  # type -> {type, pack, node_ids}
    missing_nodes: dict[str, list[str]] = field(default_factory=dict)
    models: dict[tuple[str, str], dict] = field(default_factory=dict)
    inputs: dict[str, dict] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        nodes = sorted(self.nodes.values(), key=lambda n: (n["pack"] != "core", n["pack"], n["type"]))
        return {
            "format": self.format,
            "nodes": nodes,
            "packs": sorted({n["pack"] for n in nodes if n["pack"] not in ("core", BUILTIN, None)}),
            "missing_nodes": sorted(self.missing_nodes),
            "missing": [{"type": t, "node_ids": ids} for t, ids in sorted(self.missing_nodes.items())],
            "models": sorted(self.models.values(), key=lambda m: (m["folder"], m["name"])),
            "inputs": sorted(self.inputs.values(), key=lambda i: i["name"]),
            "warnings": self.warnings,
        }


@dataclass
class FlatNode:
    id: str
    type: str
    values: dict[str, Any] | list[Any]  # API inputs by name, or UI widgets_values
    properties: dict


class NodeTypeUnknown(BadRequest):
    """An API-format node has no class_type: ComfyUI's frontend writes none for a node type it lacks."""

    code = "node_type_not_installed"


def untyped(node: object) -> bool:
    """An API-format node without its type: the frontend's prompt of a node type this ComfyUI does not have
    (`class_type: node.comfyClass`, undefined for such a node, is left out of the JSON); it keeps its inputs."""
    return isinstance(node, dict) and node.get("class_type") is None and isinstance(node.get("inputs"), dict)


def detect_format(workflow: object) -> str:
    if isinstance(workflow, dict) and isinstance(workflow.get("nodes"), list):
        return "ui"
    if isinstance(workflow, dict) and workflow and all(
        (isinstance(n, dict) and isinstance(n.get("class_type"), str)) or untyped(n) for n in workflow.values()
    ):
        return "api"  # an untyped node is a node type not installed here, not another format
    raise BadRequest(
        "unknown workflow format: expected ComfyUI's UI format (an object with a `nodes` list) "
        "or API format (an object of {node_id: {class_type, inputs}})"
    )


def flatten_ui(workflow: dict, warnings: list[str]) -> list[FlatNode]:
    subgraphs = {}
    for sg in (workflow.get("definitions") or {}).get("subgraphs") or []:
        if isinstance(sg, dict) and isinstance(sg.get("id"), str):
            subgraphs[sg["id"]] = sg
    out: list[FlatNode] = []

    def walk(nodes: Iterable, prefix: str, path: tuple[str, ...]) -> None:
        for node in nodes:
            if not isinstance(node, dict):
                continue
            node_type = node.get("type")
            if not isinstance(node_type, str):
                continue
            node_id = f"{prefix}{node.get('id')}"
            if node_type in subgraphs:
                if node_type in path:
                    warnings.append(f"subgraph {node_type} contains itself (node {node_id}); not followed")
                    continue
                walk(subgraphs[node_type].get("nodes") or [], f"{node_id}:", path + (node_type,))
                continue
            values, properties = node.get("widgets_values"), node.get("properties")
            out.append(FlatNode(node_id, node_type, values if isinstance(values, (list, dict)) else [],
                                properties if isinstance(properties, dict) else {}))

    walk(workflow["nodes"], "", ())
    return out


def ui_node(workflow: object, node_id: object) -> dict | None:
    """The UI-format node behind an API prompt's node id ("12" or, inside subgraphs, "12:5")."""
    if not isinstance(workflow, dict):
        return None
    subgraphs = {sg.get("id"): sg for sg in (workflow.get("definitions") or {}).get("subgraphs") or []
                 if isinstance(sg, dict)}
    nodes: object = workflow.get("nodes")
    found = None
    for part in str(node_id).split(":"):
        found = next((n for n in nodes if isinstance(n, dict) and str(n.get("id")) == part), None) \
            if isinstance(nodes, list) else None
        if found is None:
            return None
        nodes = (subgraphs.get(found.get("type")) or {}).get("nodes")
    return found


def flatten_api(prompt: dict) -> list[FlatNode]:
    missing = sorted(str(node_id) for node_id, node in prompt.items() if untyped(node))
    if missing:
        raise NodeTypeUnknown(f"node{'s' if len(missing) > 1 else ''} #{', #'.join(missing)}: the node type is not "
                              "installed here (ComfyUI's frontend sends such a node without its type)")
    return [
        FlatNode(str(node_id), node["class_type"],
                 node.get("inputs") if isinstance(node.get("inputs"), dict) else {},
                 node.get("_meta") if isinstance(node.get("_meta"), dict) else {})
        for node_id, node in prompt.items()
    ]


def widget_values_by_name(values: list, specs: tuple[InputSpec, ...]) -> dict[str, Any]:
    """Map a UI node's positional widgets_values onto its widget inputs."""
    out, i = {}, 0
    for spec in specs:
        if not spec.widget:
            continue
        if i >= len(values):
            break
        out[spec.name] = values[i]
        i += 1 + spec.extra_widgets
    return out


def strip_annotation(value: str) -> str:
    # Combos may annotate a file with its folder: "x.png [input]".
    for suffix in (" [input]", " [output]", " [temp]"):
        if value.endswith(suffix):
            return value[: -len(suffix)]
    return value


def _strings(values: dict | list) -> list[str]:
    items = values.values() if isinstance(values, dict) else values
    return [v for v in items if isinstance(v, str) and v]


def analyze(
    workflow: object,
    catalog: NodeCatalog,
    models: ModelIndex,
    input_exists: Callable[[str], bool],
) -> Analysis:
    """What `workflow` (UI or API format) needs from this ComfyUI."""
    fmt = detect_format(workflow)
    result = Analysis(fmt)
    assert isinstance(workflow, dict)  # detect_format refused anything else
    flat = flatten_ui(workflow, result.warnings) if fmt == "ui" else flatten_api(workflow)

    def add_model(folders: list[str], name: str, node_id: str, present: bool = True, url: str | None = None):
        key = (folders[0] if len(folders) == 1 else "?", name)
        entry = result.models.setdefault(key, {"folder": key[0], "name": name, "present": present, "node_ids": []})
        if len(folders) > 1:
            entry["candidates"] = folders
        if url:
            entry["url"] = url
        if node_id not in entry["node_ids"]:
            entry["node_ids"].append(node_id)

    def add_input(name: str, node_id: str):
        entry = result.inputs.setdefault(name, {"name": name, "present": input_exists(name), "node_ids": []})
        if node_id not in entry["node_ids"]:
            entry["node_ids"].append(node_id)

    infos: dict[str, NodeInfo | None] = {}
    for node in flat:
        if node.type in FRONTEND_ONLY:
            continue
        if node.type not in infos:
            infos[node.type] = catalog.info(node.type)
        info = infos[node.type]
        if info is None:
            result.missing_nodes.setdefault(node.type, []).append(node.id)
            for value in _strings(node.values):
                folders = models.folders_with(value)
                if folders:
                    add_model(folders, value, node.id)
        else:
            entry = result.nodes.setdefault(node.type, {"type": node.type, "pack": info.pack, "node_ids": []})
            entry["node_ids"].append(node.id)
            specs = {s.name: s for s in info.inputs}
            named = (widget_values_by_name(node.values, info.inputs) if isinstance(node.values, list)
                     else node.values)
            for name, value in named.items():
                spec = specs.get(name)
                if spec is None or spec.options is None or not isinstance(value, str):
                    continue
                if spec.upload:
                    add_input(strip_annotation(value), node.id)
                elif value in spec.options:
                    folders = models.folders_with(value)
                    if folders:
                        add_model(folders, value, node.id)
                    elif input_exists(strip_annotation(value)) and value.endswith(" [input]"):
                        add_input(strip_annotation(value), node.id)
        for declared in node.properties.get("models") or []:
            if not isinstance(declared, dict) or not isinstance(declared.get("name"), str):
                continue
            folder = declared.get("directory")
            if not isinstance(folder, str) or not folder:
                folders = models.folders_with(declared["name"]) or ["?"]
            else:
                folders = [folder]
            present = all(models.get(f, declared["name"]) is not None for f in folders)
            url = declared.get("url") if isinstance(declared.get("url"), str) else None
            add_model(folders, declared["name"], node.id, present, url)
    return result


def safe_input_exists(input_dir: str) -> Callable[[str], bool]:
    """A `present` check for input names that never looks outside the input folder."""
    root = os.path.realpath(input_dir)

    def exists(name: str) -> bool:
        if not name or "\0" in name or os.path.isabs(name):
            return False
        path = os.path.realpath(os.path.join(root, name))
        return path.startswith(root + os.sep) and os.path.isfile(path)

    return exists
