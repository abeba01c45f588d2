"""Sharing a local endpoint with the team (core/shared_registry.py): an endpoint shared from this ComfyUI is
written into the store's registry and its heartbeat kept up by its watcher, which also carries out what designers on
other ComfyUIs ask of it there (a stop; a redeploy, started beside the serving version). How the others see and ask
is local/shared_endpoints.py."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from ..core.endpoints import EndpointBusy, EndpointNotFound, EndpointStateConflict
from ..core.environments import manifest_key, read_manifest
from ..core.errors import SageMakerError, message_of
from ..core.shared_registry import HEARTBEAT_S, Sharing
from ..core.store import KeyNotFound
from ..core.unreadable import Unreadable
from .endpoint_base import LocalEndpointsBase, LocalState, local_manifest

log = logging.getLogger("comfyui_sagemaker")


class EndpointSharing(LocalEndpointsBase):
    """LocalEndpoints' sharing: `_sharing` is the configuration's registry of shared endpoints and share_host
    (None: nothing can be shared); `_beats` when each shared endpoint last beat, in which state."""

    _sharing: Callable[[], Sharing | None]
    _beats: dict[str, tuple[float, str]]  # name -> (monotonic time, state) of its last heartbeat

    def _check_share(self, name: str) -> Sharing:
        """This configuration's sharing, or why this ComfyUI cannot share `name` now."""
        sharing = self._sharing()
        if sharing is None or not sharing.host:
            raise SageMakerError(f"endpoint {name} cannot be shared: set \"Share endpoints at\" (share_host) in "
                                 "Connect to this machine's address on the team's network first")
        entry = sharing.registry.entry(name)
        if entry and entry["owner_instance"] != sharing.instance and not sharing.registry.expired(entry):
            raise EndpointBusy(f"{entry['owner']} shares an endpoint of {name} already: stop it first")
        return sharing

    def _withdraw(self, name: str) -> None:
        sharing = self._sharing()
        self._beats.pop(name.lower(), None)
        if sharing is not None:
            try:
                sharing.registry.withdraw(name)
            except Exception as err:  # the store unreachable: the entry expires by itself (EXPIRES_S)
                log.warning("comfyui-sagemaker: cannot withdraw shared endpoint %s: %s", name, message_of(err))

    def _share(self, state: LocalState, force: bool = False) -> bool:
        """For a shared endpoint, from its watcher: obey a stop a designer asked for on another ComfyUI, else write
        the heartbeat (when the state changed or HEARTBEAT_S passed). False once stopped here."""
        name = state["name"]
        last = self._beats.get(name.lower())
        if not state.get("shared") or (not force and last is not None and last[1] == state["state"]
                                         and time.monotonic() - last[0] < HEARTBEAT_S):
            return True
        sharing = self._sharing()
        if sharing is None:
            return True
        self._beats[name.lower()] = (time.monotonic(), state["state"])
        try:
            asked = sharing.registry.stop_asked(name)
            if asked is not None and state["state"] not in ("Failed",):
                try:
                    self.stop(name, by=asked["by"])
                except (EndpointNotFound, EndpointStateConflict):
                    self._withdraw(name)
                return False
            if state["state"] == "InService" and not state.get("next"):  # one update at a time
                self._redeploy_if_asked(sharing, name)
            sharing.registry.beat(name, state.get("version"), state["state"], state.get("url"), sharing.instance,
                                  sharing.owner, state.get("token"))
        except Exception as err:  # the store unreachable now: the next beat tries again; readers see it expire
            log.warning("comfyui-sagemaker: shared endpoint %s: heartbeat failed: %s", name, message_of(err))
        return True

    def _redeploy_if_asked(self, sharing: Sharing, name: str) -> None:
        """A designer on another ComfyUI asked for a version: it starts beside the serving one (deploy), and the
        ask goes. A version that cannot be read is said in the log and the ask goes too (it would never deploy)."""
        asked = sharing.registry.redeploy_asked(name)
        if asked is None:
            return
        wanted, etag = asked
        key = manifest_key(name, wanted["version"])
        try:
            manifest = read_manifest(sharing.registry.store.get(key).data, key, name, wanted["version"])
        except (KeyNotFound, Unreadable) as err:
            why = "it does not exist" if isinstance(err, KeyNotFound) else err.reason
            log.warning("comfyui-sagemaker: %s asked endpoint %s for version %d: %s", wanted["by"], name,
                        wanted["version"], why)
        else:
            log.info("comfyui-sagemaker: %s asked endpoint %s for version %d: deploying it", wanted["by"], name,
                     wanted["version"])
            try:
                self.deploy(local_manifest(manifest, shared=True))
            except SageMakerError as err:
                log.warning("comfyui-sagemaker: endpoint %s: the redeploy %s asked for failed: %s", name,
                            wanted["by"], err.message)
        sharing.registry.redeployed(name, etag)

