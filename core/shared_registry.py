"""Shared local endpoints in the store: how a designer's local endpoint becomes the team's.

A ComfyUI that runs a shared local endpoint (endpoint config `{"kind": "local", "shared": true}`) writes
`endpoints/<environment>/shared.json` (its URL, the version it serves, its state, the owner's instance id and
name, a heartbeat time) while its watcher runs, and every ComfyUI on the store lists it from there. What it does
not write there is the worker's token: that is `endpoints/<environment>/shared-token.json`, a key of its own so
that no view, listing or log ever carries it. Whoever may read the store may read it: on a folder store the
folder's permissions, on S3 the team's roles (the artist policy reads the store). That is the team already:
anyone who can read the store reads every template, input and output and may run prompts through their own
ComfyUI; the token keeps out the rest of the network, which cannot read the store.

A designer on another ComfyUI stops it by creating `endpoints/<environment>/shared-stop.json`; the owner's
watcher obeys it within a heartbeat and withdraws the entry. A redeploy is asked the same way:
`endpoints/<environment>/shared-redeploy.json` names the version wanted (a later ask replaces an earlier one);
the owner's watcher starts that version beside the serving one, as its own redeploys do, and removes the ask.
The owner is a ComfyUI or a machine that serves without one (`worker serve --share`, local/on_premises.py):
the same entry, heartbeat and asks. An entry whose heartbeat is older than EXPIRES_S
(its ComfyUI gone) shows as Gone everywhere and takes no runs.

Everything read here was written by whoever can write the store: each entry is checked against its shape, its
URL must be a plain http://host:port, and a token must look like one, or the entry is treated as absent.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone

from typing_extensions import TypedDict

from .errors import NameInvalid
from .names import ENVIRONMENT_NAME
from .shapes import validate
from .store import KeyExists, KeyNotFound, Store

HEARTBEAT_S = 10.0  # how often the owner's watcher writes the entry (6 puts a minute per shared endpoint)
EXPIRES_S = 45.0  # an entry not written for this long is Gone: its ComfyUI stopped (several beats missed)
GONE = "Gone"  # the state of an expired entry: not one of the READY_STATES, so nothing runs on it

# http://host:port only: no user info (which could smuggle a credential), no path, no query.
URL_RE = re.compile(r"http://(\[[0-9A-Fa-f:.]{2,45}\]|[A-Za-z0-9.-]{1,253}):[0-9]{1,5}")
TOKEN_RE = re.compile(r"[A-Za-z0-9_-]{20,256}")


class SharedEntry(TypedDict):
    """`shared.json`: one shared local endpoint as its owner last wrote it."""

    name: str
    version: int | None
    state: str
    url: str | None
    owner_instance: str
    owner: str
    heartbeat_at: str  # UTC ISO time of the owner's last beat


class StopAsked(TypedDict):
    by: str
    at: str


class RedeployAsked(TypedDict):
    by: str
    at: str
    version: int


def folder(name: str) -> str:
    return f"endpoints/{ENVIRONMENT_NAME.check(name).lower()}/"


def entry_key(name: str) -> str:
    return folder(name) + "shared.json"


def token_key(name: str) -> str:
    return folder(name) + "shared-token.json"


def stop_key(name: str) -> str:
    return folder(name) + "shared-stop.json"


def redeploy_key(name: str) -> str:
    return folder(name) + "shared-redeploy.json"


def _printable(text: str) -> str:
    return "".join(c for c in text if c.isprintable())[:64] or "a designer"


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).isoformat()


def _time(text: str) -> float | None:
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed.timestamp() if parsed.tzinfo else None


class SharedRegistry:
    """The store's shared entries; `clock` is wall time (a heartbeat is compared across machines)."""

    def __init__(self, store: Store, clock: Callable[[], float] = time.time):
        self.store = store
        self.clock = clock

    # the owner's side

    def beat(self, name: str, version: int | None, state: str, url: str | None, owner_instance: str, owner: str,
             token: str | None) -> None:
        """Write the entry (and the token, when it changed) with a fresh heartbeat."""
        if token is not None and self.token(name) != token:
            self.store.put(token_key(name), json.dumps({"token": token}).encode())
        entry: SharedEntry = {"name": name, "version": version, "state": state, "url": url,
                              "owner_instance": owner_instance, "owner": owner, "heartbeat_at": _iso(self.clock())}
        self.store.put(entry_key(name), json.dumps(entry).encode())

    def withdraw(self, name: str) -> None:
        """The endpoint is no longer shared (stopped, deleted, made private): its keys go."""
        for key in (entry_key(name), token_key(name), stop_key(name), redeploy_key(name)):
            try:
                self.store.delete(key)
            except KeyNotFound:
                pass

    def stop_asked(self, name: str) -> StopAsked | None:
        try:
            data = self.store.get(stop_key(name)).data
        except KeyNotFound:
            return None
        try:
            asked = validate(StopAsked, json.loads(data))
            return {"by": _printable(asked["by"]), "at": asked["at"]}
        except (ValueError, RecursionError):  # ShapeInvalid is a ValueError; a marker, whatever it says, stops
            return {"by": "a designer", "at": ""}

    def redeploy_asked(self, name: str) -> tuple[RedeployAsked, str] | None:
        """The redeploy a designer asked for, and the ask's ETag (to remove that very ask once carried out); None
        if none was asked, or the ask is not one (removed: whatever it says, a malformed ask deploys nothing)."""
        try:
            got = self.store.get(redeploy_key(name))
        except KeyNotFound:
            return None
        try:
            asked = validate(RedeployAsked, json.loads(got.data))
        except (ValueError, RecursionError):
            asked = None
        if asked is None or isinstance(asked["version"], bool) or asked["version"] < 1:
            self.redeployed(name, got.etag)
            return None
        return {"by": _printable(asked["by"]), "at": asked["at"], "version": asked["version"]}, got.etag

    def redeployed(self, name: str, etag: str) -> None:
        """The ask with `etag` was carried out (or refused): it goes, unless a newer ask replaced it meanwhile."""
        try:
            current = self.store.get(redeploy_key(name))
            if current.etag == etag:
                self.store.delete(redeploy_key(name))
        except KeyNotFound:
            pass

    # everyone's side

    def entry(self, name: str) -> SharedEntry | None:
        """The entry as written, or None if there is none or it is not one (hostile or corrupt)."""
        try:
            entry = validate(SharedEntry, json.loads(self.store.get(entry_key(name)).data))
        except (KeyNotFound, ValueError, RecursionError):
            return None
        if entry["url"] is not None and not URL_RE.fullmatch(entry["url"]):
            return None
        if _time(entry["heartbeat_at"]) is None or entry["name"].lower() != name.lower():
            return None
        return entry

    def entries(self) -> list[SharedEntry]:
        out = []
        for key in self.store.list("endpoints/"):
            parts = key.split("/")
            if len(parts) == 3 and parts[2] == "shared.json":
                try:
                    entry = self.entry(parts[1])
                except NameInvalid:  # a folder no environment can have: not ours
                    continue
                if entry is not None:
                    out.append(entry)
        return out

    def expired(self, entry: SharedEntry) -> bool:
        beat = _time(entry["heartbeat_at"])
        return beat is None or self.clock() - beat > EXPIRES_S

    def token(self, name: str) -> str | None:
        try:
            token = json.loads(self.store.get(token_key(name)).data).get("token")
        except (KeyNotFound, ValueError, AttributeError, RecursionError):
            return None
        return token if isinstance(token, str) and TOKEN_RE.fullmatch(token) else None

    def ask_stop(self, name: str, by: str) -> None:
        """A designer's stop from any ComfyUI: the owner's watcher obeys it (a second ask changes nothing)."""
        try:
            self.store.create(stop_key(name), json.dumps({"by": by, "at": _iso(self.clock())}).encode())
        except KeyExists:
            pass


    def ask_redeploy(self, name: str, version: int, by: str) -> None:
        """A designer's redeploy from any ComfyUI: the owner's watcher deploys `version` (the newest ask wins)."""
        asked: RedeployAsked = {"by": by, "at": _iso(self.clock()), "version": version}
        self.store.put(redeploy_key(name), json.dumps(asked).encode())


@dataclass(frozen=True)
class Sharing:
    """What a ComfyUI needs to share its local endpoints: the store's registry, who it is, and the one address
    its shared workers listen on (the configuration's share_host; empty: sharing is refused). `advertise`: the
    address the team reaches them at, when `host` is every address (0.0.0.0: `worker serve --share`); else
    `host` itself."""

    registry: SharedRegistry
    instance: str
    owner: str
    host: str
    advertise: str = ""
