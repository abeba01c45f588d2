"""What the worker (worker/, a program of its own inside an endpoint) and the processes around it agree on:
its doors' header names, the environment it gives each ComfyUI it starts, and where in the store it reports
its cold start. Here, below both, so that neither imports the other."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

# A local endpoint's secret: the worker's /invocations and /status refuse a request without it in this header.
TOKEN_HEADER = "X-Worker-Token"
# Each ComfyUI the worker starts has a secret of its own, in its environment; the extension inside it
# (server_routes/worker_door.py) refuses every request without it in this header.
WORKER_COMFYUI_ENV = "SM_WORKER_COMFYUI"
INNER_SECRET_ENV = "SM_WORKER_COMFYUI_SECRET"
INNER_SECRET_HEADER = "X-Worker-ComfyUI"

# Cold start reports (worker/coldstart.py) of SageMaker endpoints, whose containers the extension cannot reach:
# `workers/<environment>/<start key>.json`, newest first (aws/sagemaker_endpoints.py reads the first).
REPORTS = "workers/"


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
