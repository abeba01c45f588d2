"""The warm-up: one prompt run on each ComfyUI of the worker before it may serve (issues 28 and 35).

ComfyUI loads models lazily, at the first prompt that uses them, so without it a cold start ends with
models still on disk and the first real prompt pays their load inside its caller's time (60 s on a
real-time endpoint). The prompt comes from the environment's manifest (`warmup`, core/warmup.py: written
at publish from a template bound to the environment, its parameters' defaults); each ComfyUI loads its own
models, so each runs it, as part of coming up (worker/pool.py): the pool hands out no ComfyUI that has not
warmed, and a restarted one warms again.

Its outputs are discarded (deleted from the ComfyUI's folders, never put in the store). Its time and result
are the cold start report's `warmup` phase (one per ComfyUI). A warm-up that fails (a node error, a
rejected prompt, its time limit) is reported as a failed phase and the ComfyUI serves anyway: the warm-up
saves time, it does not judge the environment (the proof run of a deploy does), and failing the start
would make SageMaker fail or roll back a deploy whose real prompts may well run. A ComfyUI that dies
running it is a failed start (RuntimeError), restarted as any other.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import aiohttp

from ..core.records import WarmupPrompt
from .coldstart import ColdStart, FirstPromptTimer
from .comfy import PromptRejected
from .materialise import MaterialiseError, place_input, safe_relative
from .outputs import describe_rejection, is_file_item

if TYPE_CHECKING:
    from .pool import Slot

log = logging.getLogger("comfyui_sagemaker.worker")
PHASE = "warmup"


class WarmupFailed(Exception):
    """The warm-up prompt did not succeed on a ComfyUI that is still alive (reported, then it serves)."""


@dataclass
class Warmup:
    """The manifest's warm-up, with its input files fetched (blob path, name in the input folder, sha256)."""

    prompt: dict
    template: str | None = None
    inputs: list[tuple[Path, str, str]] = field(default_factory=list)
    timeout: float = 600.0

    @classmethod
    def of(cls, entry: WarmupPrompt | None, timeout: float) -> Warmup | None:
        if not entry or not entry.get("prompt"):
            return None
        return cls(dict(entry["prompt"]), entry.get("template"), [], timeout)

    @property
    def source(self) -> str:
        return f"template {self.template}" if self.template else "the environment's warm-up prompt"


def discard_outputs(slot: Slot, outputs: dict) -> None:
    """Delete the files the warm-up left: they are nobody's outputs."""
    for ui in outputs.values():
        for items in (ui or {}).values():
            for item in items if isinstance(items, list) else []:
                if not is_file_item(item):
                    continue
                kind = {"temp": "temp", "input": None}.get(item.get("type", "output"), "output")
                if kind is None:
                    continue
                try:
                    sub = item.get("subfolder") or ""
                    path = slot.comfy.folder(kind) / (safe_relative(sub) if sub else "") / safe_relative(
                        item["filename"])
                    path.unlink(missing_ok=True)
                except (OSError, MaterialiseError) as err:
                    log.warning("warm-up output %s not removed: %s", item.get("filename"), err)


async def warm(slot: Slot, session: aiohttp.ClientSession, warmup: Warmup, coldstart: ColdStart | None) -> None:
    """Run the warm-up on `slot`'s ComfyUI. Records a `warmup` phase when `coldstart` is given (a first start;
    a restart only logs). Raises RuntimeError/aiohttp.ClientError only when the ComfyUI died running it."""
    where = f"ComfyUI {slot.index} ({slot.device.label})"
    fields = {"comfyui": slot.index, "device": slot.device.label, "template": warmup.template}
    try:
        if coldstart is None:
            await _run(slot, session, warmup, {})
        else:
            with coldstart.phase(PHASE, "warm-up prompt", **fields) as entry:
                await _run(slot, session, warmup, entry)
        slot.first_prompt_done = True  # the models are loaded: the first real prompt is no cold start
        log.info("%s warmed with %s", where, warmup.source)
    except WarmupFailed as err:
        log.warning("%s: the warm-up (%s) failed, serving anyway; the first prompt loads the models: %s",
                    where, warmup.source, err)
    except (aiohttp.ClientError, RuntimeError):
        if slot.alive():  # a broken connection to a live ComfyUI: a warm-up failure, not a dead ComfyUI
            log.warning("%s: the warm-up lost its connection; serving anyway", where)
            return
        raise


async def _run(slot: Slot, session: aiohttp.ClientSession, warmup: Warmup, entry: dict) -> None:
    for blob, name, sha in warmup.inputs:
        await asyncio.to_thread(place_input, blob, name, sha, slot.comfy.folder("input"))
    timer = FirstPromptTimer(warmup.prompt)

    async def on_event(event) -> None:
        timer.feed(event)

    try:
        final, outputs, error = await asyncio.wait_for(
            slot.comfy.run(session, warmup.prompt, on_event, slot.submitted), warmup.timeout)
    except asyncio.TimeoutError:
        await slot.comfy.interrupt(session, slot.prompt_id)
        raise WarmupFailed(f"it ran over {warmup.timeout:.0f} s and was interrupted") from None
    except PromptRejected as rej:
        raise WarmupFailed(f"ComfyUI refused it: {describe_rejection(rej.body)}") from None
    finally:
        slot.prompt_id = None
    await asyncio.to_thread(discard_outputs, slot, outputs)
    if final != "execution_success":
        message = (error or {}).get("message") or final
        node = (error or {}).get("node_type")
        raise WarmupFailed(f"{node + ': ' if node else ''}{message}")
    seconds, how = timer.finish()
    entry.update(model_load_s=round(seconds, 3), detail=f"{warmup.source}; model load {seconds:.2f} s ({how})")
