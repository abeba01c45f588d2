"""Which prompt an environment's workers warm with before they report ready (worker/warmup.py runs it).

Chosen at publish and carried in the manifest (`warmup`), not looked up when a worker starts: a version's
warm-up cannot change under its endpoint, and a worker reads nothing but its manifest and blobs.

The source: the template the designer names (`warmup` in the publish request), else the first template the
environment serves (in the order the publish lists them) whose input files are here; `false` publishes
none. The prompt is the template's own with its parameters' defaults (the values left on its parameter
nodes, lowered as a run's is: core/parameters.py), so it needs only what the environment carries plus the
input files it names, which go to the store by content as a run's inputs do.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from . import parameters
from .errors import BadRequest
from .inputs import input_path


class WarmupInvalid(BadRequest):
    """The warm-up the designer named is not one of the environment's templates, or lacks its input files."""

    code = "publish_invalid"


@dataclass
class WarmupPlan:
    template: str
    prompt: dict  # lowered: what the worker submits to each of its ComfyUIs
    inputs: list[str]  # input file names it uses, in `input_dir`
    input_dir: Path | None


def plan_warmup(templates: list[dict], wanted: object, analyze: Callable[[dict], dict],
                input_folder: Callable[[], Path | None]) -> tuple[WarmupPlan | None, list[str]]:
    """(the warm-up, notes for the publish). `wanted`: None (the first usable template), False (none), or a
    template's name; `input_folder()`, ComfyUI's input folder (asked only when a template is considered).
    WarmupInvalid when a named one cannot be used."""
    if wanted is False:
        return None, []
    if wanted is not None and not isinstance(wanted, str):
        raise BadRequest("warmup must be a template's name, or false for none")
    names = [t["name"] for t in templates]
    if isinstance(wanted, str) and wanted not in names:
        raise WarmupInvalid(f"warmup {wanted!r} is not one of the templates this environment serves "
                            f"({', '.join(names) or 'none'})")
    notes: list[str] = []
    for template in templates:
        if wanted is not None and template["name"] != wanted:
            continue
        prompt = parameters.lower(template["prompt"])
        input_dir = input_folder()
        files = sorted({i["name"] for i in analyze(prompt).get("inputs") or []})
        missing = [f for f in files if input_dir is None or input_path(input_dir, f) is None]
        if missing:
            why = f"template {template['name']!r} needs input file(s) not in the input folder: {', '.join(missing)}"
            if wanted is not None:
                raise WarmupInvalid(f"cannot warm up with it: {why}")
            notes.append(f"no warm-up from {why}")
            continue
        return WarmupPlan(template["name"], prompt, files, input_dir), notes
    return None, notes
