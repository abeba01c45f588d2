"""Templates: published workflows, kept in the store under `templates/<encoded name>.json`.

Names are case-sensitive, but a store may sit on a case-insensitive file
system, so a name is encoded before it becomes a key: each capital letter
becomes `_` + its lower case (`Foo` -> `_foo`), which cannot collide because
`_` is not allowed in names.

`templates/index.json` holds every template's summary, so listing them is one
read however many there are (and watching it is how other ComfyUIs learn of a
change). Every write updates it by compare-and-swap after the template itself;
a writer that died in between leaves it one change behind until `reconcile`
(a designer's ComfyUI runs it at start and hourly) rebuilds it from the keys.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import datetime, timezone

from .errors import BadRequest, Conflict, EnvironmentNotFound, TemplateExists, TemplateNotFound
from .names import ENVIRONMENT_NAME, TEMPLATE_NAME
from .parameters import extract as extract_parameters
from .store import KeyExists, KeyNotFound, PreconditionFailed, Store

PREFIX = "templates/"
INDEX_KEY = PREFIX + "index.json"
UNSET = object()


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

    def to_json(self) -> dict:
        return asdict(self)

    def summary(self) -> dict:
        return {
            "name": self.name,
            "environment": self.environment,
            "version": self.version,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }

    @classmethod
    def from_bytes(cls, data: bytes) -> Template:
        return cls(**json.loads(data))

    def to_bytes(self) -> bytes:
        return json.dumps(self.to_json(), separators=(",", ":")).encode()


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
    for node in (workflow or {}).get("nodes") or []:
        if isinstance(node, dict) and str(node.get("id")) == str(node_id) and isinstance(node.get("type"), str):
            return node["type"]
    return None


class TemplateService:
    """Publish, list, read, rebind and delete templates on any Store.

    `environment_exists(name)` answers whether an environment of that name
    (case-insensitive) exists; binding to an unknown one raises EnvironmentNotFound.
    """

    def __init__(self, store: Store, environment_exists: Callable[[str], bool]):
        self.store = store
        self.environment_exists = environment_exists

    def _check_environment(self, environment: object) -> str | None:
        if environment is None:
            return None
        ENVIRONMENT_NAME.check(environment)
        if not self.environment_exists(environment):  # type: ignore[arg-type]
            raise EnvironmentNotFound(f"environment {environment!r} does not exist")
        return environment  # type: ignore[return-value]

    def create(self, name: object, workflow: object, prompt: object, environment: object = None) -> Template:
        name = TEMPLATE_NAME.check(name)
        stamp = now()
        workflow = check_workflow(workflow)
        prompt = check_prompt(prompt, workflow)
        template = Template(
            name=name,
            workflow=workflow,
            prompt=prompt,
            environment=self._check_environment(environment),
            version=1,
            created_at=stamp,
            updated_at=stamp,
            parameters=extract_parameters(prompt),  # ParametersInvalid: refused
        )
        try:
            self.store.create(key_of(name), template.to_bytes())
        except KeyExists:
            raise TemplateExists(f"template {name!r} exists already; pick another name or edit it") from None
        self._index(name, template.summary())
        return template

    def _read(self, name: str) -> tuple[Template, str]:
        TEMPLATE_NAME.check(name)
        try:
            got = self.store.get(key_of(name))
        except KeyNotFound:
            raise TemplateNotFound(f"template {name!r} does not exist") from None
        return Template.from_bytes(got.data), got.etag

    def get(self, name: str) -> Template:
        return self._read(name)[0]

    def list(self) -> list[dict]:
        try:
            entries = json.loads(self.store.get(INDEX_KEY).data).get("entries", {})
        except KeyNotFound:
            entries = self.reconcile()
        return sorted(entries.values(), key=lambda t: t["name"])

    def _index(self, name: str, summary: dict | None, attempts: int = 20) -> None:
        """Set (or, with None, remove) one entry of the index, by compare-and-swap."""
        for attempt in range(attempts):
            try:
                got = self.store.get(INDEX_KEY)
            except KeyNotFound:
                # Built from the templates themselves; then this entry is set on whatever index won: another
                # process building it at the same moment may have listed the templates before this one.
                self.reconcile()
                continue
            index = json.loads(got.data)
            entries = index.setdefault("entries", {})
            if summary is None:
                entries.pop(encode_name(name), None)
            else:
                entries[encode_name(name)] = summary
            try:
                self.store.replace(INDEX_KEY, json.dumps(index, separators=(",", ":")).encode(), if_match=got.etag)
                return
            except (PreconditionFailed, KeyNotFound):
                time.sleep(min(0.01 * 2 ** attempt, 0.5) * random.random())
        raise Conflict("the template index is being changed by many writers at once; retry")

    def reconcile(self) -> dict[str, dict]:
        """Rebuild the index from the template objects themselves (the truth); returns its entries."""
        keys = [k for k in self.store.list(PREFIX)
                if k.endswith(".json") and "/" not in k[len(PREFIX):] and k != INDEX_KEY]

        def read(key: str) -> tuple[str, dict] | None:
            try:
                return key[len(PREFIX):-len(".json")], Template.from_bytes(self.store.get(key).data).summary()
            except (KeyNotFound, ValueError, TypeError):
                return None

        workers = 1 if self.store.kind == "folder" else 16
        with ThreadPoolExecutor(max_workers=workers) as pool:
            entries = dict(r for r in pool.map(read, keys) if r is not None)
        body = json.dumps({"entries": entries}, separators=(",", ":")).encode()
        try:
            current = self.store.get(INDEX_KEY)
            if json.loads(current.data).get("entries") != entries:
                self.store.replace(INDEX_KEY, body, if_match=current.etag)
        except KeyNotFound:
            try:
                self.store.create(INDEX_KEY, body)
            except KeyExists:
                pass  # another ComfyUI built it at the same moment, from the same templates
        except PreconditionFailed:
            pass  # changed meanwhile by a writer, who keeps it current
        return entries

    def update(
        self,
        name: str,
        *,
        environment: object = UNSET,
        workflow: object = None,
        prompt: object = None,
        expected_version: object = None,
    ) -> Template:
        """Rebind and/or replace workflow + prompt; version + 1. Conflict when
        `expected_version` is given and stale, or when another update wins the race."""
        if (workflow is None) != (prompt is None):
            raise BadRequest("send workflow and prompt together (both formats of the same graph)")
        if environment is UNSET and workflow is None:
            raise BadRequest("nothing to change: send environment and/or workflow + prompt")
        bad_version = isinstance(expected_version, bool) or not isinstance(expected_version, int)
        if expected_version is not None and bad_version:
            raise BadRequest("version must be an integer")
        template, etag = self._read(name)
        if expected_version is not None and expected_version != template.version:
            raise Conflict(
                f"template {name!r} is at version {template.version}, not {expected_version}; reload it and retry"
            )
        if environment is not UNSET:
            template.environment = self._check_environment(environment)
        if workflow is not None:
            template.workflow = check_workflow(workflow)
            template.prompt = check_prompt(prompt, template.workflow)
            template.parameters = extract_parameters(template.prompt)
        template.version += 1
        template.updated_at = now()
        try:
            self.store.replace(key_of(name), template.to_bytes(), if_match=etag)
        except PreconditionFailed:
            raise Conflict(f"template {name!r} was changed by someone else meanwhile; reload it and retry") from None
        except KeyNotFound:
            raise TemplateNotFound(f"template {name!r} was deleted meanwhile") from None
        self._index(name, template.summary())
        return template

    def delete(self, name: str) -> None:
        TEMPLATE_NAME.check(name)
        try:
            self.store.delete(key_of(name))
        except KeyNotFound:
            raise TemplateNotFound(f"template {name!r} does not exist") from None
        self._index(name, None)
