"""A worker's state and its life: the start-up (materialisation, its ComfyUIs, the warm-up, the idle stop on
SageMaker), a failure that ends it, and the report it gives of itself (/status, the store). worker/server.py
serves it over HTTP; worker/runs.py runs prompts on it."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import signal
import time
from typing import cast

import aiohttp

from ..core.errors import SageMakerError, message_of
from ..core.idle_stop import Idleness, stamp
from ..core.idle_stop import minutes as idle_minutes
from ..core.records import EndpointConfig
from ..core.worker_contract import (
    PROTOCOL_VERSION,
    WorkerReport,
    WorkerState,
)
from .cancels import CancelBook
from .coldstart import ColdStart, StoreReport, human_bytes, report_key
from .comfy import ComfyProcess
from .devices import Device, DevicesInvalid, plan
from .materialise import EXTENSION_FOLDER, MaterialiseError, Materialiser, safe_relative
from .pool import ComfyPool, NoComfyUI, Slot
from .results import ResultBook
from .settings import WorkerSettings
from .volumes import candidates_from, place
from .warmup import Warmup, warm

log = logging.getLogger("comfyui_sagemaker.worker")


class WorkerLifecycle:
    """What the worker is made of, from its settings; its start-up, run once its app starts (worker/server.py)."""

    def __init__(self, settings: WorkerSettings):
        # The caches go to the largest local volume (worker/volumes.py): on SageMaker, the instance's storage.
        self.placement = place(settings.cache_dir, settings.base_dir,
                               candidates_from(settings.local_volumes, settings.cache_dir))
        if self.placement is not None:
            settings = dataclasses.replace(settings, cache_dir=self.placement.cache_dir,
                                           base_dir=self.placement.base_dir)
            log.info("caches on %s (%s free)", self.placement.volume.candidate,
                     human_bytes(self.placement.volume.free_bytes))
        self.s = settings
        self.state: WorkerState = "starting"
        self.reason: str | None = None
        self.coldstart = ColdStart()
        self.materialiser = Materialiser(settings.manifest_uri, settings.cache_dir, settings.base_dir, self.coldstart,
                                         settings.fetch_part_bytes, settings.fetch_concurrency, self.placement)
        self.pool: ComfyPool | None = None
        self.warmup: Warmup | None = None
        self.node_types: set[str] = set()
        self.session: aiohttp.ClientSession | None = None
        self.started = time.monotonic()
        self.ready_after: float | None = None
        self.cancels = CancelBook(early_ttl=settings.cancel_hold)
        self.stopping: set[asyncio.Task] = set()  # cancelled runs being stopped (held: the loop keeps weak refs)
        self.results = ResultBook(settings.keep_results, settings.keep_minutes)
        self.idleness = Idleness()  # the idle stop's clock (core/idle_stop.py)
        self.idle_task: asyncio.Task | None = None  # a SageMaker worker's idle stop (worker/idle_stop.py)
        self.report: StoreReport | None = None
        if settings.report_to_store:
            key = report_key(self.materialiser.environment, self.coldstart.started_epoch, StoreReport.instance_name())
            self.report = StoreReport(self.materialiser.store, key, self.report_body).start()
            self.coldstart.on_change = self.report.poke

    def http(self) -> aiohttp.ClientSession:
        """The session to this worker's ComfyUIs (made at start-up, before any request is served)."""
        if self.session is None:
            raise RuntimeError("the worker has not started")
        return self.session

    # start-up

    def link_extension(self) -> None:
        if not self.s.extension_dir:
            return
        link = self.s.base_dir / "custom_nodes" / EXTENSION_FOLDER
        link.parent.mkdir(parents=True, exist_ok=True)
        if not link.exists() and not link.is_symlink():
            link.symlink_to(self.s.extension_dir, target_is_directory=True)

    def comfy_process(self, i: int, device: Device, count: int, layers: list[str]) -> ComfyProcess:
        # One ComfyUI keeps the log name it always had; more get one log each.
        log_path = self.s.base_dir / ("comfyui.log" if i == 0 else f"comfyui-{i}.log")
        return ComfyProcess(self.s.comfyui_dir, self.s.base_dir, device.args(self.s.comfyui_args), layers, log_path,
                            self.s.preview_method, slot_dir=self.s.base_dir / "comfyui" / str(i), env=device.env(),
                            label=str(i) if count > 1 else "")

    def make_pool(self, layers: list[str]) -> ComfyPool:
        devices = plan(self.s.device_environ(), self.s.comfyui_args)
        slots = [Slot(i, device, self.comfy_process(i, device, len(devices), layers))
                 for i, device in enumerate(devices)]
        log.info("%s: %s", comfyuis(len(slots)), ", ".join(d.label for d in devices))
        return ComfyPool(slots, self.coldstart, self.pool_changed, self.s.restart_backoff,
                         self.warm_slot if self.warmup is not None else None)

    async def warm_slot(self, slot: Slot, report: bool) -> None:
        if self.warmup is not None:
            await warm(slot, self.http(), self.warmup, self.coldstart if report else None)

    def load_warmup(self) -> Warmup | None:
        """The manifest's warm-up with its inputs fetched; None if it has none or they cannot be fetched (a
        failed phase says so: the worker starts unwarmed rather than not at all). Blocking."""
        entry = self.materialiser.manifest.get("warmup")
        warmup = Warmup.of(entry, self.s.warmup_timeout)
        if warmup is None or entry is None:
            return None
        inputs = entry.get("inputs") or {}
        if not inputs and self.s.models != "lazy":
            return warmup
        try:
            with self.coldstart.phase("warmup_inputs", "warm-up inputs", count=len(inputs)):
                for name, sha in inputs.items():
                    safe_relative(name)
                    warmup.inputs.append((self.materialiser.blob(sha), name, sha))
                if self.s.models == "lazy":
                    self.materialiser.models_for(warmup.prompt)
        except (MaterialiseError, SageMakerError, OSError) as err:
            log.warning("no warm-up: %s", message_of(err))
            return None
        return warmup

    async def prepare(self) -> None:
        try:
            layers = await asyncio.to_thread(self.materialiser.run, self.s.models, self.s.install_packages)
            self.link_extension()
            self.warmup = await asyncio.to_thread(self.load_warmup)
            self.pool = self.make_pool(layers)
            self.coldstart.set_activity(f"starting {comfyuis(len(self.pool.slots))}")
            first = await self.pool.start(self.http())
            self.node_types = await first.comfy.node_types(self.http())
            if self.warmup is not None:
                await self.pool.settled()  # each ComfyUI warmed (or failed) before /ping says ready
            self.state = "ready"
            self.ready_after = time.monotonic() - self.started
            self.idleness.end()  # idle from now: a materialisation is not idleness
            self.start_idle_stop()
            self.pool_changed()
            log.info("worker ready in %.1f s (ComfyUI %d first; %d in all)", self.ready_after, first.index,
                     len(self.pool.slots))
        except (MaterialiseError, SageMakerError, RuntimeError, OSError, aiohttp.ClientError, NoComfyUI,
                DevicesInvalid) as err:
            self.fail(message_of(err))
        except Exception as err:  # whatever it is, the start ends with a reason the endpoint shows
            log.exception("materialisation failed")
            self.fail(f"{type(err).__name__}: {err}")

    def start_idle_stop(self) -> None:
        """On SageMaker (its report goes to the store: nothing of the extension's runs beside it), the worker
        stops its endpoint once idle for the config's idle_stop_minutes (worker/idle_stop.py)."""
        if not self.s.report_to_store or self.materialiser.store.kind != "s3":
            return
        try:
            limit = idle_minutes(cast(EndpointConfig, self.materialiser.endpoint))
        except (KeyError, TypeError, AttributeError) as err:  # a manifest written by hand: never fail the start
            log.warning("idle stop off: the manifest's endpoint config cannot be read (%s)", err)
            return
        if limit == 0:
            return
        from .idle_stop import for_sagemaker

        store_uri = self.s.manifest_uri.split("/environments/", 1)[0]
        mode = str((self.materialiser.endpoint or {}).get("mode") or "async")
        idle = for_sagemaker(self.idleness, limit, self.materialiser.store, store_uri,
                             self.materialiser.name or self.materialiser.environment, mode)
        self.idle_task = asyncio.get_running_loop().create_task(idle.run())

    def pool_changed(self) -> None:
        """A ComfyUI changed state: the activity line, the store report, and a worker left without any."""
        pool = self.pool
        if pool is None:
            return
        ready = sum(1 for s in pool.slots if s.state in ("ready", "busy"))
        starting = sum(1 for s in pool.slots if s.state in ("starting", "restarting"))
        warming = sum(1 for s in pool.slots if s.state == "warming")
        self.coldstart.set_activity(f"warm-up prompt on {warming} of {len(pool.slots)} ComfyUIs" if warming else
                                    f"{ready} of {len(pool.slots)} ComfyUIs ready" if starting else None)
        if self.report is not None:
            self.report.poke(urgent=True)
        if self.state == "ready" and pool.failed():
            self.fail("every ComfyUI of this worker failed: " + "; ".join(s.reason or "" for s in pool.slots))

    def fail(self, reason: str) -> None:
        self.state, self.reason = "failed", reason
        log.error("worker failed: %s", reason)
        self.coldstart.set_activity(None)
        if self.report is not None:
            self.report.poke(urgent=True)
        if self.s.exit_after_failure >= 0:
            log.info("exiting in %.0f s", self.s.exit_after_failure)
            asyncio.get_running_loop().call_later(self.s.exit_after_failure, self.exit_failed)

    @staticmethod
    def exit_failed() -> None:
        # aiohttp's run_app stops on SIGINT; the container (or local endpoint) then sees the exit code.
        os.kill(os.getpid(), signal.SIGINT)

    # what the worker says about itself

    def report_body(self) -> WorkerReport:
        """The cold start report, the same in /status and in the store."""
        pool = self.pool
        body: WorkerReport = {
            "protocol_version": PROTOCOL_VERSION, "state": self.state, "reason": self.reason,
            "ready_after_s": self.ready_after,
            "environment": {"name": self.materialiser.name or self.materialiser.environment,
                            "version": self.materialiser.version},
            "instance": StoreReport.instance_name(), "started_at": self.coldstart.started_at,
            "phases": self.coldstart.to_json(), "activity": self.coldstart.activity,
            "comfyuis": pool.status() if pool else [],
            "idle_since": stamp(self.idleness.since()),
        }
        if self.materialiser.disk is not None:
            body["disk"] = self.materialiser.disk
        return body


def comfyuis(n: int) -> str:
    return f"{n} ComfyUI" + ("" if n == 1 else "s")
