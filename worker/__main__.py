"""`python -m comfyui_sagemaker.worker serve`: the worker, for local endpoints and SageMaker alike.

SageMaker starts a container as `docker run <image> serve`; the image's
ENTRYPOINT is this module, so `serve` arrives as the argument.
"""

from __future__ import annotations

import argparse

from .server import serve
from .settings import WorkerSettings


def main(argv: list[str] | None = None, prog: str = "python -m comfyui_sagemaker.worker") -> int:
    p = argparse.ArgumentParser(prog=prog)
    p.add_argument("command", choices=["serve"], help="serve the environment named by SAGEMAKER_MANIFEST_URI")
    p.parse_args(argv)
    serve(WorkerSettings.from_env())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
