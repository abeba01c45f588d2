"""Facts about the running ComfyUI, read here once and passed below as plain data."""

from __future__ import annotations

from pathlib import Path

from .server_routes.context import ComfyFacts


def gather() -> ComfyFacts:
    import folder_paths  # ComfyUI's own modules: only imported inside ComfyUI
    from comfy.cli_args import args

    try:
        from comfyui_version import __version__ as version
    except ImportError:
        version = "unknown"
    listen = tuple(a.strip() for a in str(args.listen or "127.0.0.1").split(",") if a.strip())
    return ComfyFacts(
        version=version,
        listen=listen,
        config_dir=Path(folder_paths.get_system_user_directory("sagemaker")),
        input_dir=Path(folder_paths.get_input_directory()),
        output_dir=Path(folder_paths.get_output_directory()),
    )
