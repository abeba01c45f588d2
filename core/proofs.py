"""Proofs: a template's example run, run again on a new environment version before traffic moves to it.

A designer records a template's proof from one of its successful runs (POST /sagemaker/templates/{name}/proof):
the values its parameters had, its input files, and what each output node gave: the kind of output, how many
files, each file's format and size and, optionally, its look as a 64-bit difference hash matched within a
tolerance in bits (a new version's library or driver may change a few pixels, not the picture).

A redeploy runs the proof of every template bound to the environment on the new version before any run goes
there (a local endpoint's second worker: local/endpoint_redeploy.py); one that fails stops the switch, and the endpoint
says which template failed and why. Each version's results are kept in the store, for its history.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import parameters
from .endpoints import InvocationFailed
from .errors import BadRequest, Conflict, SageMakerError, message_of
from .records import ExecutionError, ExecutionRecord, Proof, ProofFile, ProofNode, ProofResult, ProofRun
from .shapes import ShapeInvalid, validate
from .store import KeyNotFound, Store, blob_key
from .templates import Template, TemplateService, now
from .worker_contract import PROTOCOL_VERSION, Invocation, WorkerResult

log = logging.getLogger("comfyui_sagemaker")
HASH_BITS = 64
DEFAULT_TOLERANCE = 10  # bits of 64: the same picture re-encoded or a pixel off, not another picture
ReadBlob = Callable[[str], bytes]  # sha256 -> the blob's bytes


def proofs_folder(environment: str) -> str:
    """Where an environment's proof results are kept: beside its versions (core/environments.py), gone with them."""
    return f"environments/{environment.lower()}/proofs/"


def proofs_key(environment: str, version: int) -> str:
    return f"{proofs_folder(environment)}v{version:06d}.json"


# what a file looks like


def difference_hash(image: Any) -> str:
    """A 64-bit difference hash (16 hex digits): each bit says whether a pixel of the 9x8 grey thumbnail is
    brighter than its right neighbour, so it follows the picture's structure, not its encoding or size."""
    from PIL import Image

    small = image.convert("L").resize((9, 8), Image.Resampling.LANCZOS)
    px = small.load()
    bits = 0
    for y in range(8):
        for x in range(8):
            bits = bits << 1 | (px[x, y] > px[x + 1, y])
    return f"{bits:016x}"


def file_facts(data: bytes, filename: str, hashed: bool) -> ProofFile:
    """A file's format and, for an image Pillow reads, its size (and look, if `hashed`)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            facts: ProofFile = {"format": image.format or "", "width": image.width, "height": image.height}
            if hashed:
                facts["hash"] = difference_hash(image)
            return facts
    except (UnidentifiedImageError, OSError, ValueError):
        return {"format": Path(filename).suffix.lstrip(".").upper()}


def bits_apart(a: str, b: str) -> int:
    return (int(a, 16) ^ int(b, 16)).bit_count()


def _files(ui: object) -> tuple[str, list[dict]] | None:
    """(kind, items) of a node's output: its first kind with stored files (ComfyUI's "images" mostly)."""
    if not isinstance(ui, dict):
        return None
    for kind in sorted(ui):
        items = ui[kind]
        if isinstance(items, list) and items and all(isinstance(i, dict) and i.get("sha256") for i in items):
            return kind, items
    return None


def expected(outputs: dict[str, Any], read: ReadBlob, hashed: bool) -> dict[str, ProofNode]:
    """What a run's outputs ({node: ComfyUI's ui output, files by sha256}) are, as a proof expects them."""
    out: dict[str, ProofNode] = {}
    for node, ui in outputs.items():
        found = _files(ui)
        if found:
            kind, items = found
            out[str(node)] = {"kind": kind, "files": [file_facts(read(i["sha256"]), str(i.get("filename") or ""),
                                                                 hashed) for i in items]}
    return out


def compare(proof: Proof, outputs: object, read: ReadBlob) -> list[str]:
    """What differs between a run's outputs and its proof's (nothing: it passed). Output nodes the proof does
    not name are not looked at."""
    got_all = outputs if isinstance(outputs, dict) else {}
    tolerance = proof.get("hash_tolerance")
    problems: list[str] = []
    for node, want in proof["outputs"].items():
        ui = got_all.get(node)
        items = ui.get(want["kind"]) if isinstance(ui, dict) else None
        if not isinstance(items, list) or not items:
            problems.append(f"output node {node} gave no {want['kind']} (the proof expects {len(want['files'])})")
            continue
        if len(items) != len(want["files"]):
            problems.append(f"output node {node} gave {len(items)} {want['kind']}, the proof expects "
                            f"{len(want['files'])}")
            continue
        for n, (item, file) in enumerate(zip(items, want["files"], strict=True), 1):
            if not isinstance(item, dict) or not isinstance(item.get("sha256"), str):
                problems.append(f"output node {node}: file {n} is not in the store")
                continue
            facts = file_facts(read(item["sha256"]), str(item.get("filename") or ""), file.get("hash") is not None)
            what = f"output node {node}: file {n}"
            if facts["format"] != file["format"]:
                problems.append(f"{what} is {facts['format'] or 'unknown'}, the proof expects {file['format']}")
            elif (facts.get("width"), facts.get("height")) != (file.get("width"), file.get("height")):
                problems.append(f"{what} is {facts.get('width')}x{facts.get('height')}, the proof expects "
                                f"{file.get('width')}x{file.get('height')}")
            elif tolerance is not None and file.get("hash") and facts.get("hash"):
                apart = bits_apart(str(facts.get("hash")), str(file.get("hash")))
                if apart > tolerance:
                    problems.append(f"{what} looks different: {apart} of {HASH_BITS} bits of its hash differ "
                                    f"(tolerance {tolerance})")
    return problems


# the values a run gave the template's parameters


def values_in(template: Template, prompt: dict) -> dict[str, Any]:
    """The values `prompt`, a run of `template`, gave its parameters: read on their nodes, or, in a lowered prompt
    (core/parameters.py's lower: the template API's runs), where the template's prompt links them."""
    props = (template.parameters or {}).get("properties") or {}
    values: dict[str, Any] = {}
    for name, prop in props.items():
        target = prop.get("x-node") or {}
        node_id, key = str(target.get("id")), target.get("input")
        node = prompt.get(node_id)
        if isinstance(node, dict) and key in (node.get("inputs") or {}):
            value = node["inputs"][key]
        else:
            value = _lowered(template.prompt, prompt, node_id)
        if value is not None and not isinstance(value, list):  # a link: not a value
            values[name] = value
    return values


def _lowered(original: dict, prompt: dict, node_id: str) -> Any:
    for consumer, node in original.items():
        for key, value in ((node or {}).get("inputs") or {}).items():
            if isinstance(value, list) and len(value) == 2 and str(value[0]) == node_id:
                return ((prompt.get(consumer) or {}).get("inputs") or {}).get(key)
    return None


def record_proof(template: Template, run: ExecutionRecord, read: ReadBlob, tolerance: int | None,
                 by: str | None) -> Proof:
    """The proof `run` makes for `template`: Conflict unless it is a succeeded run of it with output files."""
    if run.get("template") != template.name:
        raise BadRequest(f"run {run['id']} is not a run of template {template.name!r}")
    if run["state"] != "succeeded":
        raise Conflict(f"run {run['id']} is {run['state']}: only a run that succeeded can be the proof")
    outputs = expected(run.get("outputs") or {}, read, tolerance is not None)
    if not outputs:
        raise Conflict(f"run {run['id']} gave no output files: a proof needs what to compare")
    known = (template.parameters or {}).get("properties") or {}
    return {"execution": run["id"], "template_version": run.get("template_version"),
            "environment_version": run.get("environment_version"),
            "values": {k: v for k, v in (run.get("parameters") or {}).items() if k in known},
            "inputs": dict(run.get("inputs") or {}), "outputs": outputs, "hash_tolerance": tolerance,
            "recorded_at": now(), "recorded_by": by}


def use_run(templates: TemplateService, run: ExecutionRecord, read: ReadBlob, name: str, tolerance: int | None,
            by: str | None) -> Template:
    """Make `run` the proof of template `name` (its proof until another, or a new graph, replaces it)."""
    return templates.update(name, proof=record_proof(templates.get(name), run, read, tolerance, by))


# running the proofs of a version


def why(error: ExecutionError | None) -> tuple[list[str], str | None, str | None]:
    """(problems, node id, node type) of a failed run, in ComfyUI's words: a node's error, or the first node its
    validation refused (a node type the version lacks, a model it misses)."""
    error = error or {"code": "failed"}
    node_id, node_type = error.get("node_id"), error.get("node_type")
    message = f"{error.get('code')}: {error.get('message') or ''}".rstrip(": ")
    details = error.get("details")
    refused = details.get("node_errors") if isinstance(details, dict) else None
    if isinstance(refused, dict) and refused and node_id is None:
        node_id = str(next(iter(refused)))
        first = refused[node_id] if isinstance(refused[node_id], dict) else {}
        node_type = first.get("class_type")
        said = [e.get("details") or e.get("message") for e in first.get("errors") or [] if isinstance(e, dict)]
        message += "; " + "; ".join(str(s) for s in said if s)
    where = f"node {node_id}" + (f" ({node_type})" if node_type else "") + ": " if node_id else ""
    return [where + message], node_id, node_type


class Prover:
    """Runs the proofs of an environment's templates on a version through `invoke` (the new worker, before
    traffic moves to it), and keeps the results in the store."""

    def __init__(self, store: Store, templates: TemplateService):
        self.store = store
        self.templates = templates

    def read_blob(self, digest: str) -> bytes:
        return self.store.get(blob_key(digest)).data

    def bound(self, environment: str, version: int) -> list[Template]:
        """The templates bound to `environment` with a proof, but those pinned to another version (they never
        run on this one)."""
        out = []
        for summary in self.templates.list():
            if (summary.get("environment") or "").lower() != environment.lower():
                continue
            pin = summary.get("environment_version")
            if pin is not None and pin != version:
                continue
            try:
                template = self.templates.get(summary["name"])
            except SageMakerError:  # deleted or unreadable meanwhile: nothing to prove
                continue
            if template.proof is not None:
                out.append(template)
        return out

    def prove(self, template: Template, invoke: Callable[[Invocation], WorkerResult]) -> ProofResult:
        from .executions import new_id  # executions imports this module

        proof = template.proof
        assert proof is not None
        props = (template.parameters or {}).get("properties") or {}
        values = {k: v for k, v in proof["values"].items() if k in props}
        body: Invocation = {"protocol_version": PROTOCOL_VERSION, "execution_id": new_id(),
                            "prompt": parameters.lower(parameters.fill(template.prompt, template.parameters, values)),
                            "inputs": proof["inputs"]}
        try:
            result = invoke(body)
        except InvocationFailed as err:
            return {"template": template.name, "passed": False, "problems": [err.message]}
        if result["status"] != "succeeded":
            problems, node_id, node_type = why(result.get("error"))
            return {"template": template.name, "passed": False, "problems": problems, "node_id": node_id,
                    "node_type": node_type}
        try:
            problems = compare(proof, result.get("outputs"), self.read_blob)
        except (KeyNotFound, SageMakerError) as err:
            problems = [f"its outputs cannot be read from the store: {message_of(err)}"]
        return {"template": template.name, "passed": not problems, "problems": problems}

    def _prove_safely(self, template: Template, invoke: Callable[[Invocation], WorkerResult]) -> ProofResult:
        """`prove`, whose unforeseen failure fails this proof instead of leaving the deploy unsettled."""
        try:
            return self.prove(template, invoke)
        except Exception as err:
            log.warning("comfyui-sagemaker: the proof of %s could not run", template.name, exc_info=True)
            return {"template": template.name, "passed": False, "problems": [f"it could not run: {message_of(err)}"]}

    def run(self, environment: str, version: int, invoke: Callable[[Invocation], WorkerResult]) -> ProofRun:
        """Every proof of `environment`'s templates on `version`, one after the other; kept in the store (when
        there was one to run)."""
        try:
            results = [self._prove_safely(t, invoke) for t in self.bound(environment, version)]
        except SageMakerError as err:  # which proofs to run is unknown: the switch is not proven, so it waits
            results = [{"template": "*", "passed": False,
                        "problems": [f"the templates could not be read from the store: {err.message}"]}]
        run: ProofRun = {"environment": environment, "version": version, "passed": all(r["passed"] for r in results),
                         "results": results, "finished_at": now()}
        if not results:  # no template has a proof: the history says "not proven", not "passed"
            return run
        try:
            self.store.put(proofs_key(environment, version), json.dumps(run).encode())
        except SageMakerError as err:  # the endpoint still says it; only the history misses it
            log.warning("comfyui-sagemaker: the proof results of %s v%d could not be kept: %s", environment, version,
                        err.message)
        return run

    def results(self, environment: str, version: int) -> ProofRun | None:
        return kept(self.store, environment, version)


def kept(store: Store, environment: str, version: int) -> ProofRun | None:
    """The proof results kept for a version (None: none ran, or they cannot be read)."""
    try:
        data = json.loads(store.get(proofs_key(environment, version)).data)
    except (KeyNotFound, ValueError, SageMakerError):
        return None
    try:
        return validate(ProofRun, data)
    except ShapeInvalid:
        return None


def summary(run: ProofRun) -> str:
    """What a failed proof run says in the endpoint's reason: each failing template and its first problem."""
    failed = [f"template {r['template']}: {r['problems'][0] if r['problems'] else 'failed'}"
              for r in run["results"] if not r["passed"]]
    return "its proof failed (" + "; ".join(failed) + ")"
