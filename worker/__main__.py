"""`python -m comfyui_sagemaker.worker serve`: the worker, for local endpoints and SageMaker alike.

SageMaker starts a container as `docker run <image> serve`; the image's
ENTRYPOINT is this module, so `serve` arrives as the argument.
"""

from __future__ import annotations

import argparse

from .privileges import drop
from .server import serve
from .settings import WorkerSettings


def main(argv: list[str] | None = None, prog: str = "python -m comfyui_sagemaker.worker") -> int:
    p = argparse.ArgumentParser(prog=prog)
    p.add_argument("command", choices=["serve"], help="serve the environment named by SAGEMAKER_MANIFEST_URI")
    p.parse_args(argv)
    settings = WorkerSettings.from_env()
    drop(settings)  # started as root (SageMaker): the folders become WORKER_USER's, then so does the process
    serve(settings)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
