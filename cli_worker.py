"""The command line's `worker`: the endpoint worker (`worker serve`, as SageMaker and local endpoints start it), or
an environment of the store served on this machine with no ComfyUI in front (`worker serve ENVIRONMENT`,
local/on_premises.py)."""

from __future__ import annotations

import argparse
from pathlib import Path

from .cli import PACKAGE_DIR, config_folder, prog, say
from .core import config as config_mod
from .core import names
from .core.errors import SageMakerError


def worker(argv: list[str]) -> int:
    from .worker.__main__ import main as worker_main

    if argv[:1] == ["serve"] and argv[1:]:
        args = serve_parser().parse_args(argv[1:])
        if args.environment is None:
            raise SageMakerError("--share, --host and the other options serve an environment of the store: name it "
                                 f"({prog()} worker serve ENVIRONMENT --share)")
        return _serve(args)
    return worker_main(argv, prog=f"{prog()} worker")


def serve_parser() -> argparse.ArgumentParser:
    import os

    p = argparse.ArgumentParser(
        prog=f"{prog()} worker serve",
        description="Serve an environment of the store on this machine with no ComfyUI in front (an on-premises GPU "
                    "machine); with --share every ComfyUI on the store lists it and runs on it, and a designer may "
                    "stop or redeploy it from any of them. Without ENVIRONMENT: the endpoint worker of "
                    "SAGEMAKER_MANIFEST_URI, as SageMaker and local endpoints start it.")
    p.add_argument("environment", nargs="?", help="the environment to serve")
    p.add_argument("--version", type=int, help="its version (default: the newest)")
    p.add_argument("--share", action="store_true", help="serve the team: listen beyond this machine with a token "
                   "of its own, registered in the store (withdrawn on exit)")
    p.add_argument("--host", help="the address to listen on (default: 0.0.0.0 with --share, else 127.0.0.1)")
    p.add_argument("--advertise", help="the address the team reaches this machine at (default: --host, or this "
                   "machine's name resolved when listening on every address)")
    p.add_argument("--name", help="who the team sees serving it (default: this machine's name)")
    p.add_argument("--config-dir", help="folder holding config.json, which names the store (default: as for config; "
                   "COMFYUI_SAGEMAKER_* variables alone work too)")
    p.add_argument("--state-dir", help="the workers' state, logs and model cache (default: serve/ in the "
                   "configuration folder, else ~/.comfyui-sagemaker/serve)")
    p.add_argument("--comfyui-dir", default=os.environ.get("COMFYUI_DIR"), help="the ComfyUI the worker runs "
                   "headless (default: COMFYUI_DIR, else the ComfyUI this extension sits in)")
    p.add_argument("--comfyui-args", default=os.environ.get("WORKER_COMFYUI_ARGS", ""),
                   help="extra arguments for that ComfyUI, e.g. --comfyui-args=--cpu (default: WORKER_COMFYUI_ARGS)")
    return p


def _serve(args: argparse.Namespace) -> int:
    """`worker serve ENVIRONMENT`: local/on_premises.py, on the configuration's store."""
    import signal

    from .core.environments import manifest_key, read_manifest, versions_of
    from .core.identity import display_name, instance_id
    from .core.shared_registry import SharedRegistry, Sharing
    from .core.store import KeyNotFound
    from .core.unreadable import Unreadable
    from .core.worker_contract import WorkerRuntime
    from .local.endpoints import LocalEndpoints
    from .local.on_premises import Serving, advertised, listen_host
    from .stores import make_store, store_uri

    name = names.ENVIRONMENT_NAME.check(args.environment)
    host = listen_host(args.share, args.host)
    advertise = advertised(host, args.advertise) if args.share else host
    config_dir = config_folder(args)
    cfg = config_mod.load(config_dir)
    if cfg.store == "folder" and not cfg.store_path:
        raise SageMakerError("no store configured: pass --config-dir (a ComfyUI's user/__sagemaker, or a folder whose "
                             "config.json names the store), or set COMFYUI_SAGEMAKER_STORE_PATH")
    store = make_store(cfg)
    versions = versions_of(store, name)
    if not versions:
        raise SageMakerError(f"environment {name!r} is not in the store {store_uri(cfg)}")
    version = versions[-1] if args.version is None else args.version
    if version not in versions:
        raise SageMakerError(f"environment {name!r} has no version {version} (it has {versions})")
    key = manifest_key(name, version)
    try:
        manifest = read_manifest(store.get(key).data, key, name, version)
    except (KeyNotFound, Unreadable) as err:
        raise SageMakerError(f"environment {name!r} version {version} cannot be read: {err}") from None
    comfyui = Path(args.comfyui_dir) if args.comfyui_dir else \
        PACKAGE_DIR.parent.parent if PACKAGE_DIR.parent.name == "custom_nodes" else None
    if comfyui is None or not (comfyui / "main.py").is_file():
        raise SageMakerError(f"no ComfyUI at {comfyui or '(none given)'}: pass --comfyui-dir (or set COMFYUI_DIR) to "
                             "the ComfyUI the worker runs")
    state_dir = Path(args.state_dir) if args.state_dir else \
        (config_dir / "serve" if config_dir else Path.home() / ".comfyui-sagemaker" / "serve")
    folder = state_dir / manifest["name"].lower()  # one environment's endpoint: what a restart here takes back
    sharing = Sharing(SharedRegistry(store), instance_id(folder), args.name or display_name(""), host, advertise) \
        if args.share else None
    serving = Serving(manifest, args.share, say)
    endpoints = LocalEndpoints(folder, store_uri(cfg), WorkerRuntime(comfyui, args.comfyui_args, PACKAGE_DIR),
                               on_change=serving.changed, sharing=lambda: sharing)
    endpoints.cache = state_dir / "worker-cache"  # the environments served here share their models' cache
    endpoints.dedicated = True  # one ComfyUI per GPU, no idle stop
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda signum, frame: serving.interrupt())
    say(f"serving {manifest['name']} version {version} from {store_uri(cfg)}" +
         (f", shared with the team at {advertise} as {sharing.owner}" if sharing else " on 127.0.0.1 only") +
         f"; the worker's log: {folder / 'endpoints' / manifest['name'].lower() / 'worker.log'}; Ctrl+C stops it")
    return serving.run(endpoints)
