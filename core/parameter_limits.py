"""A template parameter's limits, as far as the inputs it is wired to accept them.

A parameter node outputs its value into other nodes' inputs; ComfyUI checks a value against an input's
`min`, `max` and combo choices (its /object_info) only when the value is written on that input, which is
how an endpoint runs the template (core/parameters.py `lower`). A parameter declared wider than its
inputs would be accepted by the form and the API, then refused by the endpoint (or, run on a ComfyUI
where it stays a link, run with a value the node does not expect). So publishing narrows each numeric
parameter to the intersection of its range and its inputs', and a choice parameter to the choices its
inputs offer, and says so in a warning (the template still runs every value it now accepts); what the
designer declared stays under `x-declared`. An empty intersection is refused (ParametersInvalid): no
value could run.
Image and model parameters are not narrowed: the environment may carry files this ComfyUI lacks.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

from .analysis import InputSpec, NodeInfo
from .parameters import ParametersInvalid

NARROWED_KINDS = frozenset({"integer", "float", "seed", "choice"})


def wired_inputs(prompt: dict, node_id: str) -> list[tuple[str, str, str]]:
    """(node id, input name, class_type) of every input a node's output is linked to."""
    out = []
    for other_id, node in prompt.items():
        for name, value in ((node or {}).get("inputs") or {}).items():
            if isinstance(value, list) and len(value) == 2 and str(value[0]) == str(node_id):
                out.append((str(other_id), name, str(node.get("class_type"))))
    return sorted(out)


def _fmt(value: float | None) -> str:
    return "-" if value is None else (str(int(value)) if float(value).is_integer() else str(value))


def _range(lo: float | None, hi: float | None) -> str:
    return f"{_fmt(lo)} to {_fmt(hi)}"


def narrow(schema: dict | None, prompt: dict,
           node_info: Callable[[str], NodeInfo | None]) -> tuple[dict | None, list[str]]:
    """(the schema with each parameter's limits narrowed to its inputs', the warnings); ParametersInvalid
    when a parameter and its inputs have no value in common."""
    if not schema or not schema.get("properties"):
        return schema, []
    schema = copy.deepcopy(schema)
    warnings: list[str] = []
    problems: list[str] = []
    for name, prop in schema["properties"].items():
        kind = prop.get("x-kind")
        if kind not in NARROWED_KINDS:
            continue
        for target_id, input_name, class_type in wired_inputs(prompt, prop["x-node"]["id"]):
            info = node_info(class_type)
            spec = next((s for s in info.inputs if s.name == input_name), None) if info else None
            if spec is None:
                continue
            where = f"{class_type}'s {input_name} (node #{target_id})"
            problem = _choices(name, prop, spec, where, warnings) if kind == "choice" \
                else _numbers(name, prop, spec, where, warnings)
            if problem:
                problems.append(problem)
                break
    if problems:
        raise ParametersInvalid(problems)
    return schema, warnings


def _declare(prop: dict, key: str) -> None:
    prop.setdefault("x-declared", {}).setdefault(key, copy.deepcopy(prop.get(key)))


def _numbers(name: str, prop: dict, spec: InputSpec, where: str, warnings: list[str]) -> str | None:
    lo, hi = prop.get("minimum"), prop.get("maximum")
    new_lo = spec.minimum if spec.minimum is not None and (lo is None or spec.minimum > lo) else lo
    new_hi = spec.maximum if spec.maximum is not None and (hi is None or spec.maximum < hi) else hi
    if (new_lo, new_hi) == (lo, hi):
        return None
    if prop.get("type") == "integer":  # an INT parameter into a FLOAT input: whole numbers within its limits
        new_lo = None if new_lo is None else int(-(-new_lo // 1))
        new_hi = None if new_hi is None else int(new_hi // 1)
    accepts = _range(spec.minimum, spec.maximum)
    if new_lo is not None and new_hi is not None and new_lo > new_hi:
        return f"parameter {name}: its range {_range(lo, hi)} and what {where} accepts ({accepts}) have no value " \
               "in common"
    _declare(prop, "minimum")
    _declare(prop, "maximum")
    prop["minimum"], prop["maximum"] = new_lo, new_hi
    warnings.append(f"parameter {name}: its range {_range(lo, hi)} exceeds what {where} accepts ({accepts}); "
                    f"the form and the API accept {_range(new_lo, new_hi)}")
    default = prop.get("default")
    if isinstance(default, (int, float)) and ((new_lo is not None and default < new_lo)
                                              or (new_hi is not None and default > new_hi)):
        warnings.append(f"parameter {name}: its default {_fmt(default)} is outside that range: a run that does "
                        "not set it is refused")
    return None


def _choices(name: str, prop: dict, spec: InputSpec, where: str, warnings: list[str]) -> str | None:
    if spec.options is None:
        return None
    choices = prop.get("enum") or []
    kept = [c for c in choices if c in spec.options]
    if kept == choices:
        return None
    dropped = ", ".join(c for c in choices if c not in spec.options)
    if not kept:
        return f"parameter {name}: none of its choices is one {where} accepts ({', '.join(spec.options[:10])})"
    _declare(prop, "enum")
    prop["enum"] = kept
    warnings.append(f"parameter {name}: {where} does not accept {dropped}; the form and the API offer "
                    f"{', '.join(kept)}")
    if prop.get("default") not in kept:
        warnings.append(f"parameter {name}: its default {prop.get('default')!r} is not among them: a run that "
                        "does not set it is refused")
    return None
