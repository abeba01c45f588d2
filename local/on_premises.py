"""An on-premises GPU machine serving an environment to the team, with no ComfyUI in front (`worker serve ENV
--share`, cli.py).

It is a local endpoint whose owner is this process instead of a ComfyUI: the same provider (local/endpoints.py)
starts the worker, watches it, writes the team's entry and heartbeat (core/shared_registry.py), obeys a designer's
stop and redeploy asked from any ComfyUI, and starts a redeploy's worker beside the serving one. This module only
chooses where the worker listens and the address the team is told, and keeps the process alive until the endpoint
ends: stopped from a ComfyUI (exit 0), failed (exit 1), or this process told to stop (Ctrl+C, SIGTERM: the worker
stops and the entry is withdrawn, exit 0).

Listening: with --share on every address (0.0.0.0) by default, and the entry names this machine's address on the
network (its host name resolved; --advertise when that is not the one the team reaches); without --share on
127.0.0.1 only, and nothing is registered.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
from collections.abc import Callable
from typing import Any

from ..core.endpoints import STOPPED, STOPPING, EndpointNotFound, EndpointStateConflict
from ..core.errors import SageMakerError
from ..core.records import EndpointView, Manifest
from ..core.shared_registry import URL_RE
from .endpoints import LocalEndpoints, local_manifest

LOOPBACK = "127.0.0.1"
EVERY_ADDRESS = "0.0.0.0"
LOOK_S = 5.0  # how often the state is read again when no change was told (a change wakes it at once)

Resolve = Callable[..., list[tuple[Any, ...]]]


class ServeRefused(SageMakerError):
    """`worker serve` cannot start as asked (where to listen, what to tell the team)."""

    code = "serve_refused"


def listen_host(share: bool, host: str | None) -> str:
    """Where the worker listens: `host` (an IP address), else every address when shared, loopback when not."""
    chosen = host or (EVERY_ADDRESS if share else LOOPBACK)
    try:
        address = ipaddress.ip_address(chosen)
    except ValueError:
        raise ServeRefused(f"--host {chosen!r} is not an IP address") from None
    if not share and not address.is_loopback:
        raise ServeRefused(f"--host {chosen} listens beyond this machine: only a shared endpoint does (--share), "
                           "whose token the team reads from the store")
    return chosen


def advertised(host: str, advertise: str | None = None, resolve: Resolve = socket.getaddrinfo,
               hostname: Callable[[], str] = socket.gethostname) -> str:
    """The address the team's ComfyUIs reach the worker at: `advertise`; else `host` when it is one address; else
    (every address) this machine's host name resolved to an address that is neither loopback nor link-local."""
    if advertise:
        if not URL_RE.fullmatch(f"http://{advertise}:1") and not _ipv6(advertise):
            raise ServeRefused(f"--advertise {advertise!r} is not an address or a host name")
        return advertise
    address = ipaddress.ip_address(host)
    if not address.is_unspecified:
        return host
    family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
    name = hostname()
    try:
        found = resolve(name, None, family, socket.SOCK_STREAM)
    except OSError as err:
        raise ServeRefused(f"this machine's name {name!r} does not resolve ({err}): pass --advertise with the "
                           "address the team reaches it at") from None
    for *_, sockaddr in found:
        candidate = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if not (candidate.is_loopback or candidate.is_link_local or candidate.is_unspecified):
            return str(candidate)
    raise ServeRefused(f"this machine's name {name!r} resolves to no address beyond this machine: pass --advertise "
                       "with the address the team reaches it at")


def _ipv6(text: str) -> bool:
    try:
        return ipaddress.ip_address(text).version == 6
    except ValueError:
        return False


class Serving:
    """One environment's endpoint served by this process until it ends. `endpoints` is made with `changed` as its
    on_change (a change wakes the wait at once); `interrupt()` is the signal handlers'."""

    def __init__(self, manifest: Manifest, share: bool, say: Callable[[str], None]):
        self.manifest = local_manifest(manifest, shared=share)
        self.name = manifest["name"]
        self.say = say
        self.wake = threading.Event()
        self.interrupted = threading.Event()

    def changed(self, view: EndpointView) -> None:
        self.wake.set()

    def interrupt(self) -> None:
        self.interrupted.set()
        self.wake.set()

    def run(self, endpoints: LocalEndpoints) -> int:
        """Serve until the endpoint ends; the exit code."""
        endpoints.adopt()  # a worker this process's killed predecessor left serving is taken back
        endpoints.deploy(self.manifest)
        told: tuple[Any, ...] = ()
        while True:
            self.wake.clear()  # before the read: a change told after it wakes the wait below
            if self.interrupted.is_set():
                return self._stop(endpoints, "stopped here")
            try:
                view = endpoints.get(self.name)
            except EndpointNotFound:
                self.say(f"endpoint {self.name} was deleted")
                return 0
            state = view["state"]
            if state == STOPPING:  # a designer's stop under way (the watcher stops the worker)
                self.wake.wait(LOOK_S)
                continue
            if state == STOPPED:
                who = view.get("stopped_by")
                self.say(f"endpoint {self.name} stopped" + (f" by {who}" if who else ""))
                return 0
            if state == "Failed":
                self.say(f"endpoint {self.name} failed: {view.get('reason')}")
                self._stop(endpoints, "")
                return 1
            line = (state, view.get("version"), view.get("url"), view.get("reason"))
            if line != told:
                told = line
                where = f" at {view.get('url')}" if view.get("url") else ""
                why = f" ({view.get('reason')})" if view.get("reason") else ""
                self.say(f"endpoint {self.name} version {view.get('version')}: {state}{where}{why}")
            self.wake.wait(LOOK_S)

    def _stop(self, endpoints: LocalEndpoints, said: str) -> int:
        """The worker stops and the team's entry is withdrawn (LocalEndpoints.stop)."""
        try:
            endpoints.stop(self.name)
        except (EndpointNotFound, EndpointStateConflict):  # stopped or deleted meanwhile
            pass
        if said:
            self.say(f"endpoint {self.name} {said}")
        return 0
