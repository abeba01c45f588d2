"""What the worker (worker/, a program of its own inside an endpoint) and the processes around it agree on:
its doors' header names, the environment it gives each ComfyUI it starts, where in the store it reports
its cold start, and the shapes of its wire (versioned). Here, below both, so that neither imports the other."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

from typing_extensions import NotRequired, TypedDict

from .records import ExecutionError
from .shapes import validate

# A local endpoint's secret: the worker's /invocations and /status refuse a request without it in this header.
TOKEN_HEADER = "X-Worker-Token"
# Each ComfyUI the worker starts has a secret of its own, in its environment; the extension inside it
# (server_routes/worker_door.py) refuses every request without it in this header.
WORKER_COMFYUI_ENV = "SM_WORKER_COMFYUI"
INNER_SECRET_ENV = "SM_WORKER_COMFYUI_SECRET"
INNER_SECRET_HEADER = "X-Worker-ComfyUI"
# A cancelled run whose ComfyUI the worker restarted to stop it (worker/cancels.py) ends with error code
# "cancelled" and the message "cancelled (<RESTARTED> node X)"; the extension adds that to the run's record.
RESTARTED = "ComfyUI restarted to stop"

# Cold start reports (worker/coldstart.py) of SageMaker endpoints, whose containers the extension cannot reach:
# `workers/<environment>/<start key>.json`, newest first (aws/sagemaker_endpoints.py reads the first).
REPORTS = "workers/"


# A non-streamed run's coarse progress (ExecutionProgress below): `async/progress/<execution id>.json`.
PROGRESS_PREFIX = "async/progress/"
# A non-streamed run's result as its worker made it, created once (`async/results/<execution id>.json`): SageMaker
# uploads an async response to async/outputs/ with the execution role and no condition, so any environment's code
# could replace that copy; this one nobody replaces (the execution role may only create it), and callers read it
# first.
RESULTS_PREFIX = "async/results/"


def report_folder(environment: str) -> str:
    return f"{REPORTS}{environment.lower()}/"


@dataclass(frozen=True)
class WorkerRuntime:
    """How to start a worker here: the ComfyUI folder, its extra arguments, this extension (a host fact: core's
    Host gives it; local endpoints start their workers with it)."""

    comfyui_dir: Path
    comfyui_args: str
    extension_dir: Path
    python: str = sys.executable


# The wire: what crosses between the worker and its callers (local/endpoint_runs.py, aws/runtime.py), each shape
# declared once. PROTOCOL_VERSION rises when a shape changes in a way a peer of the version before would
# misread (a new optional field does not); each side checks the peer's in one place (`speaks`). 0 is a peer
# from before the field: the same shapes, except that its async progress was the bare list of its events.
PROTOCOL_VERSION: Final = 1


class ProtocolUnsupported(ValueError):
    """The peer speaks a newer protocol than this side: one of them must be updated."""


def speaks(version: object, peer: str) -> None:
    """ProtocolUnsupported unless this side understands a peer's `protocol_version` (absent: 0)."""
    if version is None:
        return
    if isinstance(version, bool) or not isinstance(version, int) or not 0 <= version <= PROTOCOL_VERSION:
        raise ProtocolUnsupported(f"{peer} speaks protocol {version!r}; this side speaks 0 to {PROTOCOL_VERSION}: "
                                  "update the extension and the worker image to one version")


class Invocation(TypedDict):
    """`POST /invocations`: run one prompt (worker/server.py)."""

    protocol_version: NotRequired[int]
    execution_id: NotRequired[str | None]
    prompt: dict[str, Any]  # ComfyUI's API format
    inputs: NotRequired[dict[str, str] | None]  # file name -> sha256 of the blob in the store
    cancel_sha256: NotRequired[str | None]  # core/cancel_tokens.py: only the holder of its token cancels the run


class CancelRequest(TypedDict):
    """`POST /invocations` with `action: cancel` (SageMaker gives an endpoint no other door)."""

    protocol_version: NotRequired[int]
    action: Literal["cancel"]
    execution_id: NotRequired[Any]  # checked by the worker: 400 for a bad id,
    cancel_token: NotRequired[Any]  # 403 for a wrong token (it proves the invoker: no hint what is wrong)


class ResultRequest(TypedDict):
    """`POST /invocations` with `action: result`: a run's result, waited for while it runs (worker/results.py).
    Answered 200 with the WorkerResult, 404 `run_unknown` if the worker does not have the run, 403 to anyone but
    its invoker (`cancel_token`) or the worker's own process (its token at the door)."""

    protocol_version: NotRequired[int]
    action: Literal["result"]
    execution_id: NotRequired[Any]
    cancel_token: NotRequired[Any]


# A streamed answer's header: the worker keeps the run's result this many seconds after it ends, for a caller
# that went away (worker/results.py); its caller can then follow the run from another process.
KEEPS_HEADER = "X-Worker-Keeps-Result"


class WorkerEvent(TypedDict):
    """One of the run's events while it runs: ComfyUI's own (`executing`, `progress`, `executed`, ...) and the
    extension's (`sagemaker.preview`, `sagemaker.note`, `sagemaker.resumable`)."""

    type: str
    data: NotRequired[dict[str, Any]]


class WorkerResult(TypedDict):
    """How a run ended: the last line of a streamed answer (`{"type": "result", "data": ...}`), an async
    run's output in S3, or the whole answer otherwise."""

    protocol_version: NotRequired[int]
    execution_id: NotRequired[str | None]
    status: Literal["succeeded", "failed"]
    # node id -> ComfyUI's ui output, each file with its sha256 in the store; its shape is checked where the
    # outputs are taken in (core/execution_outputs.py), which fails the run as bad_output, not as a broken wire
    outputs: NotRequired[object]
    error: NotRequired[ExecutionError | None]
    timings: NotRequired[dict[str, float]]  # queued_ms, run_ms
    comfyui: NotRequired[int]  # which of the worker's ComfyUIs ran it


class ExecutionProgress(TypedDict):
    """A non-streamed run's coarse progress, written to the store (`async/progress/<id>.json`) as it goes."""

    protocol_version: NotRequired[int]
    events: list[WorkerEvent]  # only grows: a reader relays what is past its last look
    preview: NotRequired[WorkerEvent | None]  # the latest sampler preview,
    preview_seq: NotRequired[int]  # counted, so a reader relays each once


WorkerState = Literal["starting", "ready", "failed"]


class LocalDisk(TypedDict):
    """Where a worker keeps its caches (worker/volumes.py): the largest writable local volume among its
    candidates, and what it needs there (the manifest's blobs not cached yet; extracted packs counted twice)."""

    path: str  # the chosen candidate (on SageMaker: /tmp, the instance's storage, when it is the largest)
    cache_dir: str
    free_bytes: int
    total_bytes: int
    candidates: NotRequired[dict[str, int]]  # each usable candidate's free bytes
    needed_bytes: NotRequired[int]  # once the manifest is read


class WorkerReport(TypedDict):
    """What a worker says about itself (worker/coldstart.py): `GET /status`, and in the store (REPORTS)."""

    protocol_version: NotRequired[int]
    state: WorkerState
    reason: NotRequired[str | None]
    ready_after_s: NotRequired[float | None]
    environment: NotRequired[dict[str, Any]]  # name, version
    instance: NotRequired[str]
    started_at: NotRequired[str]
    updated_at: NotRequired[str]
    phases: NotRequired[list[dict[str, Any]]]  # the cold start, step by step
    activity: NotRequired[str | None]  # what it does now
    comfyuis: NotRequired[list[dict[str, Any]]]  # each ComfyUI's state
    disk: NotRequired[LocalDisk]  # where the caches are, and the free bytes there
    idle_since: NotRequired[str | None]  # when its last run ended (or it started); None while one runs


def read_result(value: object) -> WorkerResult:
    """A worker's result; ShapeInvalid or ProtocolUnsupported (both ValueErrors) if it cannot be read."""
    result = validate(WorkerResult, value)
    speaks(result.get("protocol_version"), "the endpoint's worker")
    return result


def read_stream(lines: Iterable[bytes], on_event: Callable[[WorkerEvent], None]) -> WorkerResult | None:
    """A streamed answer (NDJSON): each event to `on_event`, then the result; None if the lines end without
    one. ValueError (ShapeInvalid, ProtocolUnsupported, not JSON) for a line that is not the protocol's."""
    for line in lines:
        if not line.strip():
            continue
        item = json.loads(line)
        if isinstance(item, dict) and item.get("type") == "result":
            return read_result(item.get("data"))
        on_event(validate(WorkerEvent, item))
    return None


def refusal(body: bytes, status: int) -> ExecutionError:
    """The error of a worker's answer other than 200 (`{"error": {"code", "message"}}`), or one naming its status."""
    try:
        error = json.loads(body).get("error")
    except (ValueError, AttributeError):
        error = None
    code = error.get("code") if isinstance(error, dict) else None
    message = error.get("message") if isinstance(error, dict) else None
    return {"code": code if isinstance(code, str) else "worker_error",
            "message": message if isinstance(message, str) else f"worker answered {status}"}


def read_progress(value: object) -> ExecutionProgress:
    """An async run's progress; ShapeInvalid or ProtocolUnsupported if it cannot be read."""
    if isinstance(value, list):  # protocol 0's first form: the events only
        value = {"events": value}
    progress = validate(ExecutionProgress, value)
    speaks(progress.get("protocol_version"), "the endpoint's worker")
    return progress


def read_report(value: object) -> WorkerReport:
    """A worker's report of itself; ShapeInvalid or ProtocolUnsupported if it cannot be read."""
    report = validate(WorkerReport, value)
    speaks(report.get("protocol_version"), "the endpoint's worker")
    return report
