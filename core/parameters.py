"""Template parameters: the schema a template's parameter nodes describe, and filling values in.

A designer marks a workflow's inputs with the extension's parameter nodes
(nodes/parameters.py) and its outputs with the output node. In the API-format
prompt they are ordinary nodes, `class_type` = a name below, `inputs` = their
widget values; from them publishing extracts a JSON Schema:

    {"type": "object", "properties": {name: {type, default, description, minimum, ...,
     "x-kind": "integer", "x-node": {"id": "3", "input": "default"}}},
     "required": [...], "additionalProperties": false,
     "x-outputs": {name: {"node": "9", "description": ...}}}

`validate_inputs` checks an API caller's values against it (per-field reasons),
`fill` writes them into a copy of the prompt (the parameter node's value input),
and `lower` replaces the extension's nodes by what they stand for (the literal
value, LoadImage, SaveImage), so a prompt sent to an endpoint needs nothing but
ComfyUI's core nodes and the packs the environment carries.
"""

from __future__ import annotations

import base64
import binascii
import copy
import math
import re
from collections.abc import Callable
from typing import Any, TypeGuard

from .errors import BadRequest, SageMakerError

# class_type -> kind; the nodes in nodes/parameters.py use these names.
SCALAR_KINDS = {
    "SageMakerParamText": "text",
    "SageMakerParamInt": "integer",
    "SageMakerParamFloat": "float",
    "SageMakerParamSeed": "seed",
    "SageMakerParamBoolean": "boolean",
    "SageMakerParamChoice": "choice",
}
IMAGE_NODE = "SageMakerParamImage"
# One node class per common model folder: a combo's choices are fixed by INPUT_TYPES, so a
# folder picked by another widget would need frontend code to refresh them.
MODEL_NODES = {
    "SageMakerParamCheckpoint": "checkpoints",
    "SageMakerParamLora": "loras",
    "SageMakerParamVAE": "vae",
    "SageMakerParamControlNet": "controlnet",
    "SageMakerParamUpscaleModel": "upscale_models",
    "SageMakerParamCLIP": "text_encoders",
    "SageMakerParamDiffusionModel": "diffusion_models",
}
OUTPUT_NODE = "SageMakerTemplateOutput"
PARAMETER_NODES = {**SCALAR_KINDS, IMAGE_NODE: "image", **{c: "model" for c in MODEL_NODES}}

PARAMETER_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
SEED_MAX = 0xFFFFFFFFFFFFFFFF
MAX_IMAGE_BYTES = 8 * 1024 * 1024
IMAGE_MAGIC = {b"\x89PNG\r\n\x1a\n": ".png", b"\xff\xd8\xff": ".jpg", b"GIF87a": ".gif", b"GIF89a": ".gif",
               b"BM": ".bmp", b"II*\x00": ".tif", b"MM\x00*": ".tif"}
DATA_URL = re.compile(r"data:image/[A-Za-z0-9.+-]+;base64,", re.IGNORECASE)


class ParametersInvalid(BadRequest):
    """A template's parameter or output nodes are inconsistent (duplicate name, bad name, default off limits)."""

    code = "invalid_parameters"

    def __init__(self, problems: list[str]):
        super().__init__("invalid template parameters: " + "; ".join(problems))
        self.problems = problems


class InputsInvalid(SageMakerError):
    """Values sent to run a template do not match its parameters; `fields` says why, per parameter."""

    code = "invalid_inputs"

    def __init__(self, fields: dict[str, str]):
        listed = "; ".join(f"{k}: {v}" for k, v in sorted(fields.items()))
        super().__init__(f"invalid inputs: {listed}")
        self.fields = fields


def split_choices(text: object) -> list[str]:
    """Allowed values written comma- or newline-separated; blanks dropped, order kept."""
    if not isinstance(text, str):
        return []
    return [c.strip() for c in re.split(r"[,\n]", text) if c.strip()]


def _is_int(v: object) -> TypeGuard[int]:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: object) -> TypeGuard[int | float]:
    return (_is_int(v) or isinstance(v, float)) and math.isfinite(v)


def _value(node_id: str, inputs: dict, key: str, check: Callable[[Any], bool], what: str,
           problems: list[str], default: object = None) -> Any:
    """inputs[key] (or `default`) if it passes `check`, else None with a problem."""
    v = inputs.get(key, default)
    if isinstance(v, list):
        problems.append(f"node {node_id}: {key} must be a widget value, not a link")
        return None
    if not check(v):
        problems.append(f"node {node_id}: {key} must be {what}, got {v!r}")
        return None
    return v


def _property(node_id: str, kind: str, class_type: str, inputs: dict, problems: list[str]) -> dict | None:
    """One parameter's JSON Schema, or None (with problems) when the node is inconsistent."""
    n = len(problems)
    desc = _value(node_id, inputs, "description", lambda v: isinstance(v, str), "a string", problems, "")
    prop: dict = {"description": desc or ""}
    target = "image" if kind == "image" else "default"
    if kind == "text":
        default = _value(node_id, inputs, "default", lambda v: isinstance(v, str), "a string", problems)
        max_length = _value(node_id, inputs, "max_length", lambda v: _is_int(v) and v >= 0, "a whole number >= 0",
                            problems, 0)
        prop.update(type="string", default=default)
        if max_length:
            prop["maxLength"] = max_length
            if isinstance(default, str) and len(default) > max_length:
                problems.append(f"node {node_id}: default is {len(default)} characters, over max_length {max_length}")
    elif kind in ("integer", "float"):
        check, what = (_is_int, "a whole number") if kind == "integer" else (_is_number, "a number")
        default = _value(node_id, inputs, "default", check, what, problems)
        lo = _value(node_id, inputs, "min", check, what, problems)
        hi = _value(node_id, inputs, "max", check, what, problems)
        step = _value(node_id, inputs, "step", lambda v: check(v) and v > 0, f"{what} > 0", problems)
        prop.update(type="integer" if kind == "integer" else "number", default=default, minimum=lo, maximum=hi)
        if step is not None:
            prop["x-step"] = step
            if kind == "integer" and step > 1 and _is_int(lo) and lo % step == 0:
                prop["multipleOf"] = step
        if lo is not None and hi is not None and lo > hi:
            problems.append(f"node {node_id}: min {lo} is over max {hi}")
        elif default is not None and lo is not None and hi is not None and not lo <= default <= hi:
            problems.append(f"node {node_id}: default {default} is outside {lo}..{hi}")
    elif kind == "seed":
        default = _value(node_id, inputs, "default", _is_int, "a whole number", problems)
        prop.update(type="integer", default=default, minimum=0, maximum=SEED_MAX)
        if default is not None and not 0 <= default <= SEED_MAX:
            problems.append(f"node {node_id}: default {default} is outside 0..{SEED_MAX}")
    elif kind == "boolean":
        default = _value(node_id, inputs, "default", lambda v: isinstance(v, bool), "true or false", problems)
        prop.update(type="boolean", default=default)
    elif kind == "choice":
        choices = split_choices(_value(node_id, inputs, "choices", lambda v: isinstance(v, str), "a string",
                                       problems))
        default = _value(node_id, inputs, "default", lambda v: isinstance(v, str), "a string", problems)
        prop.update(type="string", default=default, enum=choices)
        if not choices:
            problems.append(f"node {node_id}: choices lists no value (separate them with commas or new lines)")
        elif len(set(choices)) != len(choices):
            problems.append(f"node {node_id}: choices lists a value twice")
        elif isinstance(default, str) and default not in choices:
            problems.append(f"node {node_id}: default {default!r} is not one of the choices ({', '.join(choices)})")
    elif kind == "image":
        default = _value(node_id, inputs, "image", lambda v: isinstance(v, str), "a file name", problems, "")
        prop.update(type="string", default=default, contentMediaType="image/*",
                    **{"x-accepts": "an input-folder file name, or a base64 image (optionally a data: URL)"})
    else:  # model
        default = _value(node_id, inputs, "default", lambda v: isinstance(v, str), "a file name", problems)
        prop.update(type="string", default=default, **{"x-model-folder": MODEL_NODES[class_type]})
    if len(problems) > n:
        return None
    prop["x-kind"] = kind
    prop["x-node"] = {"id": node_id, "input": target, "class_type": class_type}
    return prop


def extract(prompt: dict) -> dict | None:
    """The parameter schema of an API-format prompt; None when it has no parameter or output nodes.
    ParametersInvalid lists every problem, each naming its node ids."""
    problems: list[str] = []
    props: dict[str, dict] = {}
    owners: dict[str, list[str]] = {}
    outputs: dict[str, dict] = {}
    output_owners: dict[str, list[str]] = {}
    required: list[str] = []
    for node_id, node in sorted(prompt.items(), key=lambda kv: _sort_key(kv[0])):
        class_type = node.get("class_type")
        if class_type not in PARAMETER_NODES and class_type != OUTPUT_NODE:
            continue
        inputs = node.get("inputs") or {}
        name = inputs.get("name")
        if not isinstance(name, str) or not PARAMETER_NAME.fullmatch(name):
            problems.append(f"node {node_id}: name {name!r} is not an identifier (a letter or _, then letters, "
                            "digits or _; at most 64)")
            continue
        if class_type == OUTPUT_NODE:
            output_owners.setdefault(name, []).append(node_id)
            desc = inputs.get("description")
            outputs[name] = {"node": node_id, "description": desc if isinstance(desc, str) else ""}
            continue
        owners.setdefault(name, []).append(node_id)
        prop = _property(node_id, PARAMETER_NODES[class_type], class_type, inputs, problems)
        if prop is not None:
            props[name] = prop
            if inputs.get("required") is True:
                required.append(name)
    for what, table in (("parameter", owners), ("output", output_owners)):
        for name, ids in table.items():
            if len(ids) > 1:
                problems.append(f"{what} name {name!r} is used by nodes {', '.join(ids)}: give each its own name")
    if problems:
        raise ParametersInvalid(problems)
    if not owners and not outputs:
        return None
    return {"type": "object", "properties": props, "required": sorted(set(required)),
            "additionalProperties": False, "x-outputs": outputs}


def _sort_key(node_id: str) -> tuple:
    return (0, int(node_id), "") if node_id.isdigit() else (1, 0, node_id)


def image_extension(data: bytes) -> str | None:
    """The file extension for image bytes, by their magic number; None if they are no image we know."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return ".webp"
    for magic, ext in IMAGE_MAGIC.items():
        if data.startswith(magic):
            return ext
    return None


def _image(value: str, input_exists: Callable[[str], bool], max_bytes: int) -> tuple[object, str | None]:
    """(a file name, or the decoded bytes) for an image value, or (None, reason)."""
    match = DATA_URL.match(value)
    if not match and input_exists(value):
        return value, None
    encoded = value[match.end():] if match else value
    if (len(encoded) * 3) // 4 > max_bytes + 3:
        return None, f"the image is over the limit of {max_bytes} bytes"
    try:
        data = base64.b64decode(re.sub(r"\s+", "", encoded), validate=True)
    except (binascii.Error, ValueError):
        return None, "neither a file in ComfyUI's input folder nor a base64 image"
    if not data:
        return None, "neither a file in ComfyUI's input folder nor a base64 image"
    if len(data) > max_bytes:
        return None, f"the image is over the limit of {max_bytes} bytes"
    if image_extension(data) is None:
        return None, "the base64 data is not an image (PNG, JPEG, WebP, GIF, BMP or TIFF)"
    return data, None


def validate_inputs(schema: dict | None, inputs: object, input_exists: Callable[[str], bool] = lambda name: False,
                    max_image_bytes: int = MAX_IMAGE_BYTES) -> dict:
    """The caller's values, checked against the schema; image values become a file name or decoded bytes.
    InputsInvalid says, per field, what is wrong."""
    if inputs is None:
        inputs = {}
    if not isinstance(inputs, dict):
        raise InputsInvalid({"inputs": "must be an object of parameter name -> value"})
    props = (schema or {}).get("properties") or {}
    fields: dict[str, str] = {}
    out: dict = {}
    for name, value in inputs.items():
        prop = props.get(name)
        if prop is None:
            fields[name] = ("unknown parameter; allowed: " + ", ".join(sorted(props))) if props \
                else "this template has no parameters"
            continue
        reason = _check(prop, value)
        if reason is None and prop.get("x-kind") == "image":
            value, reason = _image(value, input_exists, max_image_bytes)
        if reason is not None:
            fields[name] = reason
        else:
            out[name] = value
    for name in (schema or {}).get("required") or []:
        if name not in inputs:
            fields[name] = "required"
    if fields:
        raise InputsInvalid(fields)
    return out


def _check(prop: dict, value: object) -> str | None:
    kind = prop.get("type")
    if kind == "integer" and not _is_int(value):
        return "must be a whole number"
    if kind == "number" and not _is_number(value):
        return "must be a number"
    if kind == "boolean" and not isinstance(value, bool):
        return "must be true or false"
    if kind == "string" and not isinstance(value, str):
        return "must be a string"
    if kind in ("integer", "number") and isinstance(value, (int, float)):
        lo, hi = prop.get("minimum"), prop.get("maximum")
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            return f"must be from {lo} to {hi}"
        step = prop.get("multipleOf")
        if step and value % step:
            return f"must be a multiple of {step}"
    if kind == "string" and isinstance(value, str):
        if "maxLength" in prop and len(value) > prop["maxLength"]:
            return f"must be at most {prop['maxLength']} characters"
        if "enum" in prop and value not in prop["enum"]:
            return "must be one of " + ", ".join(prop["enum"])
    return None


def fill(prompt: dict, schema: dict | None, values: dict) -> dict:
    """A copy of the prompt with each value set on its parameter node (so the node outputs it)."""
    out = copy.deepcopy(prompt)
    props = (schema or {}).get("properties") or {}
    for name, value in values.items():
        target = props[name]["x-node"]
        out[target["id"]].setdefault("inputs", {})[target["input"]] = value
    return out


def lower(prompt: dict) -> dict:
    """A copy of the prompt without the extension's nodes: a parameter's value is written into the inputs
    it feeds, an image parameter becomes LoadImage and an output node SaveImage (same ids and slots)."""
    out = copy.deepcopy(prompt)
    values: dict[str, object] = {}
    for node_id, node in prompt.items():
        class_type, inputs = node.get("class_type"), node.get("inputs") or {}
        if class_type in SCALAR_KINDS or class_type in MODEL_NODES:
            values[node_id] = inputs.get("default")
            del out[node_id]
        elif class_type == IMAGE_NODE:
            out[node_id] = {"class_type": "LoadImage", "inputs": {"image": inputs.get("image")}}
        elif class_type == OUTPUT_NODE:
            out[node_id] = {"class_type": "SaveImage",
                            "inputs": {"images": inputs.get("images"), "filename_prefix": inputs.get("name")}}
    for node in out.values():
        inputs = node.get("inputs") or {}
        for key, value in inputs.items():
            if isinstance(value, list) and len(value) == 2 and str(value[0]) in values:
                inputs[key] = values[str(value[0])]
    return out
