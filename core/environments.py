"""Environments: named, versioned manifests in the store.

Layout under `environments/<lowercased name>/`:
- `claim.json`: `{"name": <name as first published>}`, created exclusively, so
  names are unique regardless of case (they become SageMaker names, which ignore it);
- `versions/v000001.json`, ...: the manifests, each created exclusively and
  written last by its publish; an environment is visible once it has one.

A manifest that cannot be read (core/unreadable.py) fails only its own environment: reading it answers
`environment_corrupt` naming the environment and version (so does a run or a deploy of it), and the list
shows it with its problem (and in `skipped`). A claim that cannot be read is taken from the newest readable
manifest; without one, the next publish of the name takes it over.
"""

from __future__ import annotations

import builtins
import json
import re
from collections.abc import Callable
from dataclasses import dataclass

from . import endpoint_config, environment_history, instance_allowlist, proofs, publish
from .endpoints import EndpointNotFound
from .errors import BadRequest, Conflict, EnvironmentCorrupt, EnvironmentNotFound, NameInvalid, SageMakerError
from .fs.hashing import HashCache
from .host import Host
from .identity import Owner
from .leases import Leases
from .names import ENVIRONMENT_NAME
from .publish import Plan
from .records import EndpointConfig, EndpointView, Manifest
from .shapes import ShapeInvalid, validate
from .store import KeyExists, KeyNotFound, PreconditionFailed, Store
from .tasks import Task, TaskManager
from .templates import TemplateService, now
from .unreadable import Unreadable, load_object, report
from .warmup import plan_warmup

PREFIX = "environments/"
VERSION_RE = re.compile(r"v(\d{6})\.json")


class EnvironmentExists(SageMakerError):
    """Another environment has this name up to case (SageMaker names ignore case)."""

    code = "environment_exists"


class NoEndpoint(Conflict):
    """No endpoint serves this environment: there is nothing to roll back (deploy a version instead)."""

    code = "no_endpoint"


class RollbackRefused(Conflict):
    """The endpoint serves no older version than asked for (it serves the oldest, or that very version)."""

    code = "rollback_refused"


@dataclass(frozen=True)
class EndpointHooks:
    """Filled in by the endpoints layer: is an endpoint running this environment, deploy, delete."""

    running: Callable[[str], bool] = lambda name: False
    deploy: Callable[[Manifest], EndpointView | None] = lambda manifest: None
    remove: Callable[[str], None] = lambda name: None
    state: Callable[[str], str | None] = lambda name: None
    check: Callable[[EndpointConfig], None] = lambda endpoint_config: None  # can this kind be deployed here at all?
    # settled(name, done): done() once the deploy under way has settled (a local redeploy: traffic moved to the
    # new worker, or it failed); at once where deploy's answer is the end of it.
    settled: Callable[[str, Callable[[], None]], None] = lambda name, done: done()
    view: Callable[[str], EndpointView | None] = lambda name: None  # the endpoint of this environment, if any
    rollback: Callable[[Manifest], EndpointView | None] = lambda manifest: None  # serve an older version again


def _folder(name: str) -> str:
    return PREFIX + name.lower() + "/"


def manifest_key(name: str, version: int) -> str:
    """Where an environment's version is kept in the store (its manifest, created once, never changed)."""
    return f"{_folder(name)}versions/v{version:06d}.json"


def read_manifest(data: bytes, key: str, name: str, version: int) -> Manifest:
    """Version `version` of environment `name`; Unreadable if it is not one the extension can use (runs,
    deploys, lists). The worker checks what it uses again (worker/materialise.py)."""
    try:
        manifest = validate(Manifest, load_object(data, key))
    except ShapeInvalid as err:
        raise Unreadable(key, err.reason) from None
    if manifest["name"].lower() != name.lower():
        raise Unreadable(key, f"it is not a manifest of environment {name}")
    if manifest["version"] != version:
        raise Unreadable(key, f"it is not version {version}")
    return manifest


def versions_of(store: Store, name: str) -> list[int]:
    """The published versions of an environment (case-insensitive name), ascending."""
    keys = store.list(_folder(name) + "versions/")
    return sorted(int(m.group(1)) for k in keys if (m := VERSION_RE.fullmatch(k.rsplit("/", 1)[-1])))


class EnvironmentService:
    def __init__(self, store: Store, templates: TemplateService, host: Host, tasks: TaskManager,
                 hash_cache: HashCache, max_instances: int, hooks: EndpointHooks | None = None,
                 leases: Leases | None = None, changed: Callable[[], None] = lambda: None, temp=None,
                 allowed_instance_types: tuple[str, ...] = instance_allowlist.DEFAULT, owner: Owner | None = None):
        self.store = store
        self.templates = templates
        self.host = host
        self.tasks = tasks
        self.hash_cache = hash_cache
        self.max_instances = max_instances
        self.allowed_instance_types = allowed_instance_types
        self.hooks = hooks or EndpointHooks()
        self.leases = leases  # one publish/deploy of an environment at a time, across ComfyUIs
        self.changed = changed  # tell the other ComfyUIs on the store
        self.temp = temp  # core.fs.scratch.Scratch: where a publish makes its packs
        self.owner = owner  # this ComfyUI: recorded in each version it publishes (the history says who)

    # reading

    def versions(self, name: str) -> list[int]:
        return versions_of(self.store, name)

    def exists(self, name: str) -> bool:
        return bool(self.versions(name))

    def get(self, name: str, version: int | None = None) -> Manifest:
        ENVIRONMENT_NAME.check(name)
        versions = self.versions(name)
        if not versions:
            raise EnvironmentNotFound(f"environment {name!r} does not exist")
        version = versions[-1] if version is None else version
        if version not in versions:
            raise EnvironmentNotFound(f"environment {name!r} has no version {version} (it has {versions})")
        manifest = self.at(name, version)
        if manifest is None:
            raise EnvironmentNotFound(f"environment {name!r} version {version} was deleted meanwhile")
        return manifest

    def at(self, name: str, version: int) -> Manifest | None:
        """One version's manifest, read by its key (one request: no listing of the versions), or None if there is
        none; EnvironmentCorrupt if it cannot be read. For a version known to exist (the one an endpoint serves)."""
        ENVIRONMENT_NAME.check(name)
        key = manifest_key(name, version)
        try:
            manifest = read_manifest(self.store.get(key).data, key, name, version)
        except KeyNotFound:
            return None
        except Unreadable as err:
            report(err.key, err.reason)
            raise EnvironmentCorrupt(f"environment {name!r} version {version} cannot be read from the store "
                                     f"({err.reason}): publish a new version or delete it", err.key,
                                     err.reason) from None
        return manifest

    def list(self) -> list[dict]:
        return self.listing()[0]

    def listing(self) -> tuple[builtins.list[dict], builtins.list[dict]]:
        """(every environment, the manifests that cannot be read: [{key, reason}]). An environment whose newest
        manifest cannot be read is listed with its `problem`, so a designer can delete it."""
        names = sorted({k.split("/")[1] for k in self.store.list(PREFIX) if "/versions/" in k})
        out: list[dict] = []
        skipped: list[dict] = []
        for lower in names:
            try:
                m = self.get(lower)
            except EnvironmentNotFound:  # deleted meanwhile
                continue
            except EnvironmentCorrupt as err:
                out.append({"name": lower, "problem": err.message})
                skipped.append({"key": err.key, "reason": err.reason})
                continue
            except NameInvalid as err:  # a folder no publish made
                out.append({"name": lower, "problem": f"its manifest cannot be read: {err}"})
                skipped.append(report(f"{PREFIX}{lower}/", "a folder no publish made"))
                continue
            try:
                lease = self.leases.current(m["name"]) if self.leases else None
                out.append({
                    "name": m["name"], "version": m["version"], "size": m["size"], "created_at": m["created_at"],
                    "packs": len(m["custom_nodes"]), "models": len(m["models"]), "templates": m["templates"],
                    "endpoint": m["endpoint"], "endpoint_state": self.hooks.state(m["name"]),
                    "busy": {"by": (lease.get("holder") or {}).get("name"), "what": lease.get("what")}
                    if lease else None,
                })
            except (KeyError, TypeError) as err:
                # One broken manifest (written by hand, or by an older version) never hides the others.
                out.append({"name": m["name"], "version": m["version"],
                            "problem": f"its manifest is incomplete ({err}); publish a new version or delete it"})
                skipped.append(report(manifest_key(lower, m["version"]), f"incomplete ({err})"))
        return out, skipped

    def canonical(self, name: str) -> str | None:
        """The name as first published (the claim); from the newest readable manifest when the claim cannot be
        read; None if neither says."""
        key = _folder(name) + "claim.json"
        try:
            claimed = load_object(self.store.get(key).data, key).get("name")
        except KeyNotFound:
            return None
        except Unreadable as err:
            report(err.key, err.reason)
            claimed = None
        if isinstance(claimed, str) and claimed.lower() == name.lower():
            return claimed
        for version in reversed(self.versions(name)):
            try:
                return self.get(name, version)["name"]
            except (EnvironmentCorrupt, EnvironmentNotFound):
                continue
        return None

    # publishing

    def _claim(self, name: str) -> bool:
        """Claim the lowercased name; True if this call made the claim."""
        key, body = _folder(name) + "claim.json", json.dumps({"name": name}).encode()
        try:
            self.store.create(key, body)
            return True
        except KeyExists:
            owner = self.canonical(name)
            if owner is None:  # a claim no one can read, and no manifest: this publish takes it over
                try:
                    got = self.store.get(key)
                    self.store.replace(key, body, if_match=got.etag)
                    return True
                except (KeyNotFound, PreconditionFailed):
                    raise Conflict(f"environment {name!r} is being claimed by another publish; retry") from None
            if owner != name:
                raise EnvironmentExists(
                    f"environment {owner!r} exists; names that differ only in case are the same on SageMaker"
                ) from None
            return False

    def _bound_templates(self, name: str) -> builtins.list[dict]:
        return [self.templates.get(t["name"]).to_json() for t in self.templates.list()
                if t["environment"] and t["environment"].lower() == name.lower()]

    def publish(self, name: object, templates: object = None, include: object = "templates",
                endpoint: object = None, bind: object = False, warmup: object = None) -> Task:
        """Validate and plan now (errors are immediate), then run the publish as a task. With `bind`, the
        templates it includes are bound to it once it is published (their runs go to its endpoint).
        `warmup`: what its workers run on each ComfyUI before ready (core/warmup.py: a prompt, a template's
        name, true for the first template's; none by default)."""
        name = ENVIRONMENT_NAME.check(name)
        if not isinstance(bind, bool):
            raise BadRequest("bind must be true or false")
        if include not in ("templates", "all"):
            raise BadRequest('include must be "templates" or "all"')
        # No endpoint config: publish only, deploy nothing.
        endpoint = None if endpoint is None else endpoint_config.validate(endpoint, self.max_instances,
                                                                            self.allowed_instance_types)
        if endpoint is not None:
            self.hooks.check(endpoint)  # e.g. SageMaker without AWS configured: refused before anything is written
        if templates is None:
            chosen = self._bound_templates(name)
        else:
            if not isinstance(templates, list) or not all(isinstance(t, str) for t in templates):
                raise BadRequest("templates must be a list of template names")
            chosen = [self.templates.get(t).to_json() for t in templates]
        if self.tasks.running("publish", name.lower()):
            raise Conflict(f"environment {name!r} is being published already; wait for it or cancel it")
        # Held from the moment the publish is asked for, across every ComfyUI on the store: a second publish
        # asked while this one plans (the snapshot takes seconds) or runs is refused, never a second version.
        lease = self.leases.acquire(name, "publishing") if self.leases else None  # DeployInProgress: 409
        claimed = False
        try:
            snap = self.host.snapshot()
            plan = publish.make_plan(name, chosen, include, endpoint, snap, self.host.model_index(),
                                     self.host.analyze)
            plan.warmup, notes = plan_warmup(chosen, warmup, self.host.analyze, lambda: self.host.input_dir())
            plan.notes += notes
            claimed = self._claim(name)
            self.changed()
            return self.tasks.start("publish", name.lower(), self._publish_task(name, plan, chosen, endpoint, bind,
                                                                                claimed, lease))
        except BaseException:
            if claimed and not self.versions(name):
                self.store.delete(_folder(name) + "claim.json")  # nothing published: free the name
            if lease is not None and self.leases is not None:
                self.leases.release(lease)
            raise

    def _publish_task(self, name: str, plan: Plan, chosen: builtins.list[dict], endpoint: EndpointConfig | None,
                      bind: bool, claimed: bool, lease) -> Callable[[Task], dict]:
        def work(task: Task) -> dict:
            deployed = False
            try:
                try:
                    result = publish.run_publish(task, plan, self.store, self.hash_cache, self._write_manifest,
                                                 self.host.node_types_by_pack(), self.temp)
                except BaseException:
                    if claimed and not self.versions(name):
                        self.store.delete(_folder(name) + "claim.json")  # nothing published: free the name
                    raise
                if bind:
                    task.update(phase="binding templates")
                    result["bound"] = []
                    for template in chosen:
                        if template.get("environment") != name:
                            self.templates.update(template["name"], environment=name)
                            result["bound"].append(template["name"])
                if endpoint is not None:
                    task.update(phase="deploying")
                    self.hooks.deploy(self.get(name))
                    deployed = True
                return result
            finally:
                self._release_when_settled(name, lease, deployed)
                self.changed()

        return work

    def deploy(self, name: str, version: int | None = None, shared: bool | None = None) -> EndpointView | None:
        """Deploy (or update) the endpoint of an environment's version, under its lease. `shared` (a local
        endpoint's Share switch) overrides the config's for this endpoint: the manifest stays as published."""
        manifest = self.get(name, version)
        endpoint = manifest.get("endpoint") or {"kind": "local"}  # published without a config: the embedded default
        if shared is not None:
            if endpoint["kind"] != "local":
                raise BadRequest(f"environment {name}'s endpoint is {endpoint['kind']}: "
                                 "only a local endpoint is shared")
            endpoint = {**endpoint, "shared": shared}  # False said: a stored config never holds it (absent)
        manifest = {**manifest, "endpoint": endpoint}
        lease = self.leases.acquire(name, "deploying") if self.leases else None
        deployed = False
        try:
            view = self.hooks.deploy(manifest)
            deployed = True
            return view
        finally:
            self._release_when_settled(name, lease, deployed)
            self.changed()

    def _release_when_settled(self, name: str, lease, deployed: bool) -> None:
        """The lease covers the whole deploy: released once the endpoint has settled (a local redeploy's switch),
        at once if nothing was deployed."""
        if lease is None or self.leases is None:
            return
        leases = self.leases
        if deployed:
            self.hooks.settled(name, lambda: leases.release(lease))
        else:
            leases.release(lease)

    def serving(self, name: str) -> int | None:
        """The version the environment's endpoint serves now; None without an endpoint (or one that says none)."""
        try:
            view = self.hooks.view(name)
        except EndpointNotFound:
            return None
        return view.get("version") if view else None

    def rollback(self, name: str, to: int | None = None) -> EndpointView | None:
        """Serve an older version again (`to`, default the newest before the serving one), under the lease as a
        deploy: the endpoint's provider reuses what it kept of that version and uploads nothing (its manifest
        and blobs are in the store). EnvironmentNotFound for a version that does not exist; NoEndpoint when no
        endpoint serves the environment; RollbackRefused when there is nothing older to go back to."""
        ENVIRONMENT_NAME.check(name)
        versions = self.versions(name)
        if not versions:
            raise EnvironmentNotFound(f"environment {name!r} does not exist")
        if to is not None and to not in versions:
            raise EnvironmentNotFound(f"environment {name!r} has no version {to} (it has {versions})")
        serving = self.serving(name)
        if serving is None:
            raise NoEndpoint(f"no endpoint serves environment {name!r}: there is nothing to roll back; "
                             "deploy a version instead")
        if to is None:
            older = [v for v in versions if v < serving]
            if not older:
                raise RollbackRefused(f"the endpoint of {name!r} serves version {serving}, its oldest: there is "
                                      "no version before it")
            to = older[-1]
        if to == serving:
            raise RollbackRefused(f"the endpoint of {name!r} serves version {to} already")
        manifest = self.get(name, to)
        if manifest.get("endpoint") is None:  # published without a config: the embedded default, as deploy
            manifest = {**manifest, "endpoint": {"kind": "local"}}
        lease = self.leases.acquire(name, "rolling back") if self.leases else None
        deployed = False
        try:
            view = self.hooks.rollback(manifest)
            deployed = True
            # The answer names the version it goes back to: a local endpoint's view names the serving one until
            # traffic moves to the new worker (a redeploy side by side).
            return {**view, "version": to} if view else view
        finally:
            self._release_when_settled(name, lease, deployed)
            self.changed()

    def history(self, name: str) -> dict:
        """Every version, newest first: who published it, when, what changed against the one before, its proof
        results (core/proofs.py), and which version the endpoint serves now (`serving`, None without an endpoint)."""
        ENVIRONMENT_NAME.check(name)
        versions = self.versions(name)
        if not versions:
            raise EnvironmentNotFound(f"environment {name!r} does not exist")
        serving = self.serving(name)
        out: builtins.list[dict] = []
        previous: Manifest | None = None
        canonical = name
        for version in versions:
            try:
                manifest = self.get(name, version)
            except (EnvironmentCorrupt, EnvironmentNotFound) as err:  # listed with its problem, compared past
                out.append({"version": version, "problem": err.message, "serving": version == serving})
                continue
            canonical = manifest["name"]
            out.append({**environment_history.entry(manifest, previous, serving),
                        "proofs": proofs.kept(self.store, name, version)})  # null: not proven
            previous = manifest
        return {"name": canonical, "serving": serving, "versions": out[::-1]}

    def _write_manifest(self, manifest: Manifest) -> int:
        """Create version n+1 exclusively: two publishes never both become n+1. The claim must still be
        this name's: an environment deleted while it was being published does not come back."""
        name = manifest["name"]
        if self.canonical(name) != name:
            raise Conflict(f"environment {name!r} was deleted while it was being published; nothing was written")
        for _ in range(10):
            version = (self.versions(name) or [0])[-1] + 1
            body: Manifest = {**manifest, "version": version, "created_at": now(),
                              "published_by": self.owner.to_json() if self.owner else None}
            try:
                self.store.create(manifest_key(name, version), json.dumps(body).encode())
                return version
            except KeyExists:
                continue
        raise Conflict(f"environment {name!r} is being published concurrently; retry")

    # removing

    def delete(self, name: str, force: bool = False, publish_timeout: float = 120.0) -> None:
        ENVIRONMENT_NAME.check(name)
        publishing = self.tasks.running("publish", name.lower())
        if publishing is not None:
            if not force:
                raise Conflict(f"environment {name!r} is being published; cancel the publish or use force")
            # Cancel it and let it end first: a publish that went on would write its manifest afterwards.
            publishing.cancel_event.set()
            if self.tasks.wait(publishing.id, publish_timeout).state == "running":
                raise Conflict(f"the publish of {name!r} did not stop within {publish_timeout:.0f} s; try again")
            if not self.exists(name):
                return  # a first publish, cancelled: nothing of it remains (its claim was freed)
        if not self.exists(name):
            raise EnvironmentNotFound(f"environment {name!r} does not exist")
        if not force:
            bound = [t["name"] for t in self.templates.list()
                     if t["environment"] and t["environment"].lower() == name.lower()]
            if bound:
                raise Conflict(f"templates {', '.join(bound)} are bound to {name!r}; rebind them or use force")
            if self.hooks.running(name):
                raise Conflict(f"an endpoint runs {name!r}; delete it first or use force")
        self.hooks.remove(name)
        self.changed()
        for v in self.versions(name):
            self.store.delete(manifest_key(name, v))
        for key in self.store.list(proofs.proofs_folder(name)):  # a name published again is proven afresh
            self.store.delete(key)
        try:
            self.store.delete(_folder(name) + "claim.json")
        except KeyNotFound:
            pass

    # comparing

    def diff(self, name: str) -> dict:
        """This ComfyUI against the environment's latest version."""
        manifest = self.get(name)
        snap = self.host.snapshot()
        here = {p["folder"]: p for p in snap["custom_nodes"] if not p.get("builtin")}
        there = {p["folder"]: p for p in manifest["custom_nodes"]}
        index = self.host.model_index()
        local_models = {(f.folder, f.name): f for folder in index.files.values() for f in folder.values()}
        env_models = {(m["folder"], m["name"]): m for m in manifest["models"]}
        return {
            "name": manifest["name"],
            "version": manifest["version"],
            "packs": {
                "added": sorted(set(here) - set(there)),
                "removed": sorted(set(there) - set(here)),
                "changed": sorted(f for f in set(here) & set(there) if here[f]["digest"] != there[f]["digest"]),
            },
            "models": {
                "missing_here": [f"{f}/{n}" for f, n in sorted(set(env_models) - set(local_models))],
                "missing_there": [f"{f}/{n}" for f, n in sorted(set(local_models) - set(env_models))],
                "changed": [f"{f}/{n}" for f, n in sorted(set(env_models) & set(local_models))
                            if env_models[(f, n)]["size"] != local_models[(f, n)].size],
            },
            "comfyui_version": {"here": snap["comfyui_version"], "there": manifest["comfyui_version"]},
        }
