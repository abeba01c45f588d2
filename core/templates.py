"""Templates: published workflows, kept in the store under `templates/<encoded name>.json`.

Names are case-sensitive, but a store may sit on a case-insensitive file
system, so a name is encoded before it becomes a key: each capital letter
becomes `_` + its lower case (`Foo` -> `_foo`), which cannot collide because
`_` is not allowed in names.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import datetime, timezone

from .errors import BadRequest, Conflict, EnvironmentNotFound, TemplateExists, TemplateNotFound
from .names import ENVIRONMENT_NAME, TEMPLATE_NAME
from .parameters import extract as extract_parameters
from .store import KeyExists, KeyNotFound, PreconditionFailed, Store

PREFIX = "templates/"
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


def check_prompt(prompt: object) -> dict:
    """A ComfyUI API-format prompt: {node_id: {class_type, inputs}}."""
    if not isinstance(prompt, dict) or not prompt:
        raise BadRequest("prompt must be a non-empty JSON object (ComfyUI's API format)")
    for node_id, node in prompt.items():
        if not isinstance(node, dict) or not isinstance(node.get("class_type"), str):
            raise BadRequest(f"prompt node {node_id!r} must be an object with a class_type")
        if not isinstance(node.get("inputs", {}), dict):
            raise BadRequest(f"prompt node {node_id!r}: inputs must be an object")
    return prompt


class TemplateService:
    """Publish, list, read, rebind and delete templates on any Store.

    `environment_exists(name)` answers whether an environment of that name
    (case-insensitive) exists; binding to an unknown one raises EnvironmentNotFound.
    """

    def __init__(self, store: Store, environment_exists: Callable[[str], bool]):
        self.store = store
        self.environment_exists = environment_exists
        # key -> (stamp, summary): listing re-reads only what changed since the last list.
        self._summaries: dict[str, tuple[str, dict]] = {}
        self._summaries_lock = threading.Lock()

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
        prompt = check_prompt(prompt)
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
        stamps = {k: v for k, v in self.store.list_stamps(PREFIX).items()
                  if k.endswith(".json") and "/" not in k[len(PREFIX):]}
        with self._summaries_lock:
            cached = {k: c[1] for k, c in self._summaries.items() if stamps.get(k) == c[0]}

        def read(key: str) -> tuple[str, str, dict] | None:
            try:
                got = self.store.get(key)
            except KeyNotFound:  # deleted while listing
                return None
            # Cached under the listed stamp: if the object changed since, the next list re-reads it.
            return key, stamps[key], Template.from_bytes(got.data).summary()

        missing = [k for k in stamps if k not in cached]
        # Reads are independent; on S3 each is a round trip, so overlap them.
        workers = 1 if self.store.kind == "folder" else 16
        with ThreadPoolExecutor(max_workers=workers) as pool:
            fresh = [r for r in pool.map(read, missing) if r is not None]
        with self._summaries_lock:
            self._summaries = {k: (stamps[k], s) for k, s in cached.items()}
            for key, stamp, summary in fresh:
                self._summaries[key] = (stamp, summary)
                cached[key] = summary
        return sorted(cached.values(), key=lambda s: s["name"])

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
            template.prompt = check_prompt(prompt)
            template.parameters = extract_parameters(template.prompt)
        template.version += 1
        template.updated_at = now()
        try:
            self.store.replace(key_of(name), template.to_bytes(), if_match=etag)
        except PreconditionFailed:
            raise Conflict(f"template {name!r} was changed by someone else meanwhile; reload it and retry") from None
        except KeyNotFound:
            raise TemplateNotFound(f"template {name!r} was deleted meanwhile") from None
        return template

    def delete(self, name: str) -> None:
        TEMPLATE_NAME.check(name)
        try:
            self.store.delete(key_of(name))
        except KeyNotFound:
            raise TemplateNotFound(f"template {name!r} does not exist") from None
