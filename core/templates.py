"""Templates: published workflows, kept in the store under `templates/<encoded name>.json`.

Names are case-sensitive, but a store may sit on a case-insensitive file
system, so a name is encoded before it becomes a key: each capital letter
becomes `_` + its lower case (`Foo` -> `_foo`), which cannot collide because
`_` is not allowed in names.

`templates/index.json` holds every template's summary, so listing them is one
read however many there are (and watching it is how other ComfyUIs learn of a
change). Every write updates it by compare-and-swap after the template itself;
a writer that died in between leaves it one change behind until `reconcile`
(a designer's ComfyUI runs it hourly, from an hour after its start) rebuilds it from the keys.

The templates are the truth, the index a copy (core/unreadable.py): an index that
cannot be read is rebuilt from them by whoever reads it, and written back; a
write whose index update fails still succeeds (the template is written) and
removes the index, so the next reader rebuilds it. A template that cannot be
read is listed in the index's `skipped`, and opening it answers
`template_corrupt`.

A template may be pinned to one version of its environment (`environment_version`; None follows the newest):
its runs then go only to an endpoint serving that version (core/pinning.py). The pin names a version of the
bound environment, so rebinding elsewhere or unbinding unpins, unless the same request pins again.
"""

from __future__ import annotations

import builtins
import json
import logging
import random
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from dataclasses import field as dataclass_field
from datetime import datetime, timezone
from typing import Any

from .analysis import NodeInfo, ui_node
from .errors import (
    BadRequest,
    Conflict,
    EnvironmentNotFound,
    SageMakerError,
    TemplateCorrupt,
    TemplateExists,
    TemplateNotFound,
    message_of,
)
from .names import ENVIRONMENT_NAME, TEMPLATE_NAME
from .parameter_limits import narrow
from .parameters import extract as extract_parameters
from .records import Proof
from .shapes import ShapeInvalid, validate
from .store import KeyExists, KeyNotFound, PreconditionFailed, Store, Versioned
from .unreadable import Unreadable, load_object, report, skipped_entry

PREFIX = "templates/"
INDEX_KEY = PREFIX + "index.json"
UNSET = object()
log = logging.getLogger("comfyui_sagemaker")


def encode_name(name: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name)


def decode_name(encoded: str) -> str:
    out, upper = [], False
    for c in encoded:
        if c == "_":
            upper = True
            continue
        out.append(c.upper() if upper else c)
        upper = False
    return "".join(out)


def key_of(name: str) -> str:
    return f"{PREFIX}{encode_name(name)}.json"


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class Template:
    name: str
    workflow: dict
    prompt: dict
    environment: str | None
    version: int
    created_at: str
    updated_at: str
    # JSON Schema of the template's parameter nodes (core/parameters.py); None without any.
    parameters: dict | None = None
    # The environment version its runs need (core/pinning.py); None: the version the endpoint serves.
    environment_version: int | None = None
    # What its publish said without refusing it: a parameter narrowed to its inputs (core/parameter_limits.py).
    warnings: list[str] = dataclass_field(default_factory=list)
    # Its example run and what it must give, proven on each new environment version (core/proofs.py).
    proof: Proof | None = None

    def to_json(self) -> dict:
        return asdict(self)

    def summary(self) -> dict:
        return {
            "name": self.name,
            "environment": self.environment,
            "environment_version": self.environment_version,
            "proof": self.proof is not None,
            "version": self.version,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }

    @classmethod
    def from_bytes(cls, data: bytes, key: str = "template") -> Template:
        """Unreadable when the bytes are not a template's object (fields this version does not know are left)."""
        raw = load_object(data, key)
        problem = _template_problem(raw)
        if problem:
            raise Unreadable(key, problem)
        fields: dict[str, Any] = {f: raw.get(f) for f in cls.__dataclass_fields__}  # checked above
        fields["warnings"] = fields["warnings"] or []  # a template written before warnings has none
        return cls(**fields)

    def to_bytes(self) -> bytes:
        return json.dumps(self.to_json(), separators=(",", ":")).encode()


def _template_problem(raw: dict) -> str | None:
    for field, kinds in (("name", str), ("workflow", dict), ("prompt", dict), ("created_at", str),
                         ("updated_at", str)):
        if not isinstance(raw.get(field), kinds):
            return f"{field} is not a {kinds.__name__}"
    if not isinstance(raw.get("environment"), (str, type(None))):
        return "environment is not a name"
    if not isinstance(raw.get("parameters"), (dict, type(None))):
        return "parameters is not an object"
    if isinstance(raw.get("version"), bool) or not isinstance(raw.get("version"), int):
        return "version is not a whole number"
    if not _is_pin(raw.get("environment_version")):
        return "environment_version is not a version number"
    warnings = raw.get("warnings")
    if warnings is not None and not (isinstance(warnings, list) and all(isinstance(w, str) for w in warnings)):
        return "warnings is not a list of texts"
    if raw.get("proof") is not None:
        try:
            validate(Proof, raw["proof"])
        except ShapeInvalid as err:
            return f"its proof is malformed ({err.reason})"
    return None


def _is_pin(value: object) -> bool:
    """None (absent in a template written before pins) or a version number."""
    return value is None or (isinstance(value, int) and not isinstance(value, bool) and value >= 1)


def _summary_problem(entry: object) -> str | None:
    if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
        return "an entry without a name"
    if isinstance(entry.get("version"), bool) or not isinstance(entry.get("version"), int) \
            or not isinstance(entry.get("environment"), (str, type(None))) \
            or not _is_pin(entry.get("environment_version")):
        return f"the entry of {entry['name'][:40]!r} is malformed"
    return None


def parse_index(data: bytes) -> dict:
    """{"entries": {encoded name: summary}, "skipped": [{key, reason}]}; Unreadable if the index is not that."""
    raw = load_object(data, INDEX_KEY)
    entries, skipped = raw.get("entries"), raw.get("skipped", [])
    if not isinstance(entries, dict):
        raise Unreadable(INDEX_KEY, "it has no entries object")
    for entry in entries.values():
        problem = _summary_problem(entry)
        if problem:
            raise Unreadable(INDEX_KEY, problem)
        entry.setdefault("environment_version", None)  # an index written before pins: every template followed
    if not isinstance(skipped, list) or not all(isinstance(s, dict) and isinstance(s.get("key"), str)
                                                and isinstance(s.get("reason"), str) for s in skipped):
        raise Unreadable(INDEX_KEY, "its skipped list is malformed")
    return {"entries": entries, "skipped": [{"key": s["key"], "reason": s["reason"]} for s in skipped]}


def check_workflow(workflow: object) -> dict:
    """A ComfyUI UI-format graph: an object whose `nodes`, when present, is a list."""
    if not isinstance(workflow, dict):
        raise BadRequest("workflow must be a JSON object (ComfyUI's UI-format graph)")
    if "nodes" in workflow and not isinstance(workflow["nodes"], list):
        raise BadRequest("workflow.nodes must be a list")
    return workflow


def check_prompt(prompt: object, workflow: dict | None = None) -> dict:
    """A ComfyUI API-format prompt: {node_id: {class_type, inputs}}. A node without its type is, in
    practice, one this ComfyUI lacks (its frontend drops the type of a missing node): the workflow names it."""
    if not isinstance(prompt, dict) or not prompt:
        raise BadRequest("the workflow has no nodes to run: save it in ComfyUI's API format, or publish it from "
                         "the canvas")
    for node_id, node in prompt.items():
        if not isinstance(node, dict) or not isinstance(node.get("class_type"), str):
            missing = _workflow_type(workflow, node_id)
            if missing:
                raise BadRequest(f"node #{node_id}: node type {missing} is not installed in this ComfyUI: install "
                                 "its custom node pack (or remove the node) and publish again")
            raise BadRequest(f"node #{node_id} has no node type: reload the workflow in ComfyUI and publish again")
        if not isinstance(node.get("inputs", {}), dict):
            raise BadRequest(f"node #{node_id} ({node['class_type']}): its inputs are not readable: reload the "
                             "workflow in ComfyUI and publish again")
    return prompt


def _workflow_type(workflow: dict | None, node_id: object) -> str | None:
    node = ui_node(workflow, node_id)
    return node["type"] if node is not None and isinstance(node.get("type"), str) else None


class TemplateService:
    """Publish, list, read, rebind and delete templates on any Store.

    `environment_exists(name)` answers whether an environment of that name
    (case-insensitive) exists; binding to an unknown one raises EnvironmentNotFound.
    `environment_versions(name)`, where given, lists its published versions: pinning to
    another raises EnvironmentNotFound. `node_info(node type)`, where given (a ComfyUI's registry),
    narrows each parameter to what the inputs it is wired to accept (core/parameter_limits.py).
    """

    def __init__(self, store: Store, environment_exists: Callable[[str], bool],
                 environment_versions: Callable[[str], builtins.list[int]] | None = None,
                 node_info: Callable[[str], NodeInfo | None] | None = None):
        self.store = store
        self.environment_exists = environment_exists
        self.environment_versions = environment_versions
        self.node_info = node_info

    def _parameters(self, prompt: dict) -> tuple[dict | None, builtins.list[str]]:
        """The prompt's parameter schema (ParametersInvalid: refused) and what publishing it warns of."""
        schema = extract_parameters(prompt)
        return narrow(schema, prompt, self.node_info) if self.node_info is not None else (schema, [])

    def _check_pin(self, environment: str | None, version: object) -> int | None:
        if version is None:
            return None
        if not isinstance(version, int) or not _is_pin(version):
            raise BadRequest("environment_version must be a version number (1, 2, ...) or null to follow the newest")
        if environment is None:
            raise BadRequest("a template bound to no environment cannot be pinned: bind it to one first")
        if self.environment_versions is not None:
            versions = self.environment_versions(environment)
            if version not in versions:
                raise EnvironmentNotFound(f"environment {environment!r} has no version {version} (it has "
                                          f"{', '.join(map(str, versions)) or 'none'}): pin a published one")
        return version

    def _check_environment(self, environment: object) -> str | None:
        if environment is None:
            return None
        name = ENVIRONMENT_NAME.check(environment)
        if not self.environment_exists(name):
            raise EnvironmentNotFound(f"environment {name!r} does not exist")
        return name

    def create(self, name: object, workflow: object, prompt: object, environment: object = None) -> Template:
        name = TEMPLATE_NAME.check(name)
        stamp = now()
        workflow = check_workflow(workflow)
        prompt = check_prompt(prompt, workflow)
        parameters, warnings = self._parameters(prompt)
        template = Template(
            name=name,
            workflow=workflow,
            prompt=prompt,
            environment=self._check_environment(environment),
            version=1,
            created_at=stamp,
            updated_at=stamp,
            parameters=parameters,
            warnings=warnings,
        )
        try:
            self.store.create(key_of(name), template.to_bytes())
        except KeyExists:
            raise TemplateExists(f"template {name!r} exists already; pick another name or edit it") from None
        self._indexed(name, template.summary())
        return template

    def _read(self, name: str) -> tuple[Template, str]:
        TEMPLATE_NAME.check(name)
        try:
            got = self.store.get(key_of(name))
        except KeyNotFound:
            raise TemplateNotFound(f"template {name!r} does not exist") from None
        try:
            return Template.from_bytes(got.data, key_of(name)), got.etag
        except Unreadable as err:
            report(err.key, err.reason)
            raise TemplateCorrupt(f"template {name!r} cannot be read from the store ({err.reason}): delete it and "
                                  "publish it again", err.key, err.reason) from None

    def get(self, name: str) -> Template:
        return self._read(name)[0]

    def list(self) -> list[dict]:
        return self.listing()[0]

    def listing(self) -> tuple[builtins.list[dict], builtins.list[dict]]:
        """(every template's summary by name, the templates that cannot be read: [{key, reason}])."""
        try:
            index = parse_index(self.store.get(INDEX_KEY).data)
        except KeyNotFound:
            index = self.reconcile()
        except Unreadable as err:
            report(err.key, err.reason)
            index = self.reconcile()
        return sorted(index["entries"].values(), key=lambda t: t["name"]), index["skipped"]

    def _indexed(self, name: str, summary: dict | None) -> None:
        """`_index`, for a write that has happened: the template is the truth, so a failed index update does not
        fail the write; the index is removed instead, and its next reader rebuilds it from the templates."""
        try:
            self._index(name, summary)
        except Exception as err:
            log.warning("comfyui-sagemaker: template %r was written but the template index could not be updated "
                        "(%s): it is removed, and rebuilt from the templates when next read", name,
                        message_of(err), exc_info=not isinstance(err, SageMakerError))
            try:
                self.store.delete(INDEX_KEY)
            except Exception as again:  # the hourly reconcile mends it then
                log.warning("comfyui-sagemaker: the template index could not be removed either: %s", again)

    def _index(self, name: str, summary: dict | None, attempts: int = 20) -> None:
        """Set (or, with None, remove) one entry of the index, by compare-and-swap."""
        rebuilds = 0
        for attempt in range(attempts):
            try:
                got = self.store.get(INDEX_KEY)
                index = parse_index(got.data)
            except (KeyNotFound, Unreadable) as err:
                # Built from the templates themselves; then this entry is set on whatever index won: another
                # process building it at the same moment may have listed the templates before this one.
                if isinstance(err, Unreadable):
                    report(err.key, err.reason)
                if rebuilds == 2:
                    raise Conflict("the template index could not be rebuilt") from None
                rebuilds += 1
                self.reconcile()
                continue
            entries = index["entries"]
            if summary is None:
                entries.pop(encode_name(name), None)
            else:
                entries[encode_name(name)] = summary
            index["skipped"] = [s for s in index["skipped"] if s["key"] != key_of(name)]  # written or gone now
            try:
                self.store.replace(INDEX_KEY, json.dumps(index, separators=(",", ":")).encode(), if_match=got.etag)
                return
            except (PreconditionFailed, KeyNotFound):
                time.sleep(min(0.01 * 2 ** attempt, 0.5) * random.random())
        raise Conflict("the template index is being changed by many writers at once; retry")

    def reconcile(self) -> dict:
        """Rebuild the index from the template objects themselves (the truth) and write it back where this
        ComfyUI may; returns it ({"entries", "skipped"}).

        The index is read before the listing, and the rebuilt one replaces only that version of it: a writer
        that creates, updates or deletes a template while this lists and reads has set its entry by
        compare-and-swap, which changed the index, so the rebuilt one (taken before that write) is dropped and
        the writer's stands. Only an index nobody changed meanwhile is replaced."""
        try:
            current: Versioned | None = self.store.get(INDEX_KEY)
        except KeyNotFound:
            current = None
        keys = [k for k in self.store.list(PREFIX)
                if k.endswith(".json") and "/" not in k[len(PREFIX):] and k != INDEX_KEY]

        def read(key: str) -> tuple[str, dict | None, dict | None] | None:
            try:
                return key[len(PREFIX):-len(".json")], Template.from_bytes(self.store.get(key).data, key).summary(), \
                    None
            except KeyNotFound:
                return None
            except Unreadable as err:
                return key, None, skipped_entry(err)

        workers = 1 if self.store.kind == "folder" else 16
        with ThreadPoolExecutor(max_workers=workers) as pool:
            read_all = [r for r in pool.map(read, keys) if r is not None]
        index = {"entries": {k: summary for k, summary, _ in read_all if summary is not None},
                 "skipped": [skip for _, _, skip in read_all if skip is not None]}
        body = json.dumps(index, separators=(",", ":")).encode()
        try:
            if current is None:
                self.store.create(INDEX_KEY, body)
            else:
                try:
                    same = parse_index(current.data) == index
                except Unreadable:
                    same = False
                if not same:
                    self.store.replace(INDEX_KEY, body, if_match=current.etag)
        except (KeyExists, PreconditionFailed, KeyNotFound):
            pass  # a writer created or changed it meanwhile and keeps it current (or removed it: rebuilt when read)
        except SageMakerError as err:  # e.g. an artist, who may not write templates/: the list still answers
            log.warning("comfyui-sagemaker: the rebuilt template index could not be written: %s", err.message)
        return index

    def update(
        self,
        name: str,
        *,
        environment: object = UNSET,
        workflow: object = None,
        prompt: object = None,
        expected_version: object = None,
        environment_version: object = UNSET,
        proof: Proof | None | object = UNSET,
    ) -> Template:
        """Rebind, pin (`environment_version`: a version of the bound environment, or None to follow the
        newest), set or drop its proof (core/proofs.py makes it) and/or replace workflow + prompt, which drops
        the proof (the new graph's outputs are not the old one's); version + 1. Conflict when
        `expected_version` is given and stale, or when another update wins the race."""
        if (workflow is None) != (prompt is None):
            raise BadRequest("send workflow and prompt together (both formats of the same graph)")
        if environment is UNSET and workflow is None and environment_version is UNSET and proof is UNSET:
            raise BadRequest("nothing to change: send environment, environment_version and/or workflow + prompt")
        bad_version = isinstance(expected_version, bool) or not isinstance(expected_version, int)
        if expected_version is not None and bad_version:
            raise BadRequest("version must be an integer")
        template, etag = self._read(name)
        if expected_version is not None and expected_version != template.version:
            raise Conflict(
                f"template {name!r} is at version {template.version}, not {expected_version}; reload it and retry"
            )
        if environment is not UNSET:
            bound = self._check_environment(environment)
            if (bound or "").lower() != (template.environment or "").lower():
                template.environment_version = None  # the pin named a version of the old environment
            template.environment = bound
        if environment_version is not UNSET:
            template.environment_version = self._check_pin(template.environment, environment_version)
        if workflow is not None:
            template.workflow = check_workflow(workflow)
            template.prompt = check_prompt(prompt, template.workflow)
            template.parameters, template.warnings = self._parameters(template.prompt)
            template.proof = None
        if proof is not UNSET:
            template.proof = proof  # type: ignore[assignment]  # a Proof or None, from core/proofs.py
        template.version += 1
        template.updated_at = now()
        try:
            self.store.replace(key_of(name), template.to_bytes(), if_match=etag)
        except PreconditionFailed:
            raise Conflict(f"template {name!r} was changed by someone else meanwhile; reload it and retry") from None
        except KeyNotFound:
            raise TemplateNotFound(f"template {name!r} was deleted meanwhile") from None
        self._indexed(name, template.summary())
        return template

    def delete(self, name: str) -> None:
        TEMPLATE_NAME.check(name)
        try:
            self.store.delete(key_of(name))
        except KeyNotFound:
            raise TemplateNotFound(f"template {name!r} does not exist") from None
        self._indexed(name, None)
