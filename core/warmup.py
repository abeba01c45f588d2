"""Which prompt an environment's workers warm with before they report ready (worker/warmup.py runs it).

Chosen at publish and carried in the manifest (`warmup`), not looked up when a worker starts: a version's
warm-up cannot change under its endpoint, and a worker reads nothing but its manifest and blobs.

The source, `warmup` in the publish request (the designer's choice):
- a prompt (API format): the environment's own warm-up prompt, as peers take one (Salad's
  WARMUP_PROMPT_FILE, runpod worker-comfyui #90);
- a template's name: that template's prompt with its parameters' defaults (the values left on its parameter
  nodes, lowered as a run's prompt is: core/parameters.py);
- true: the same, from the first template the environment serves whose input files are here;
- absent, null or false: none.
Opt-in, because a warm-up is a run nobody asked for: it costs a generation on every ComfyUI at every cold
start and repeats whatever else the workflow does (an S3 Save Image node writes to the bucket, an API node
bills). The input files it names go to the store by content, as a run's do.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from . import parameters
from .errors import BadRequest
from .inputs import input_path
from .templates import check_prompt


class WarmupInvalid(BadRequest):
    """The warm-up the designer named is not one of the environment's templates, or lacks its input files."""

    code = "publish_invalid"


@dataclass
class WarmupPlan:
    template: str | None  # None: the designer's own warm-up prompt
    prompt: dict  # lowered: what the worker submits to each of its ComfyUIs
    inputs: list[str]  # input file names it uses, in `input_dir`
    input_dir: Path | None


def plan_warmup(templates: list[dict], wanted: object, analyze: Callable[[dict], dict],
                input_folder: Callable[[], Path | None]) -> tuple[WarmupPlan | None, list[str]]:
    """(the warm-up, notes for the publish) for the publish's `warmup` (see above); `input_folder()` is
    ComfyUI's input folder (asked only when needed). WarmupInvalid when the designer's choice cannot be used."""
    if wanted is None or wanted is False:
        return None, []
    if isinstance(wanted, dict):
        prompt = parameters.lower(check_prompt(wanted))
        return _usable(None, prompt, analyze, input_folder, "the warm-up prompt"), []
    if wanted is not True and not isinstance(wanted, str):
        raise BadRequest("warmup must be a prompt (API format), a template's name, true (the first template's) "
                         "or false")
    names = [t["name"] for t in templates]
    if isinstance(wanted, str) and wanted not in names:
        raise WarmupInvalid(f"warmup {wanted!r} is not one of the templates this environment serves "
                            f"({', '.join(names) or 'none'})")
    notes: list[str] = []
    for template in templates:
        if isinstance(wanted, str) and template["name"] != wanted:
            continue
        what = f"template {template['name']!r}"
        try:
            return _usable(template["name"], parameters.lower(template["prompt"]), analyze, input_folder, what), notes
        except WarmupInvalid as err:
            if isinstance(wanted, str):
                raise
            notes.append(f"no warm-up from {what}: {err}")
    notes.append("no warm-up: none of its templates can be run as one")
    return None, notes


def _usable(template: str | None, prompt: dict, analyze: Callable[[dict], dict],
            input_folder: Callable[[], Path | None], what: str) -> WarmupPlan:
    input_dir = input_folder()
    files = sorted({i["name"] for i in analyze(prompt).get("inputs") or []})
    missing = [f for f in files if input_dir is None or input_path(input_dir, f) is None]
    if missing:
        raise WarmupInvalid(f"cannot warm up with {what}: it needs input file(s) not in the input folder: "
                            f"{', '.join(missing)}")
    return WarmupPlan(template, prompt, files, input_dir)
