"""The command line: the same services as the routes, without ComfyUI running.

This module reads the command line and holds the commands on the configuration, names, the gateway and its webhook
secret; the others are grouped by subject: cli_environments.py (through a running ComfyUI), cli_costs.py,
cli_aws.py and cli_worker.py."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .core import config as config_mod
from .core import names
from .core.errors import SageMakerError
from .core.version import __version__

PACKAGE_DIR = Path(__file__).resolve().parent
SERVER_TIMEOUT_S = 300.0  # one call to a running ComfyUI (a snapshot hashes nothing, an analysis is quick)


def default_config_dir() -> Path | None:
    """ComfyUI's `user/__sagemaker` when this copy sits in `<ComfyUI>/custom_nodes/<folder>`
    (a ComfyUI started with --user-directory or --base-directory keeps it elsewhere: pass --config-dir). The
    folder counts as it was called, too: a symlink to a checkout (the dev environment's `.dev/base/custom_nodes/
    comfyui-sagemaker`) sits in that ComfyUI although the checkout does not."""
    called = Path(sys.argv[0]).absolute() if sys.argv and sys.argv[0] else PACKAGE_DIR  # absolute, not resolved
    if called.name == "__main__.py":
        called = called.parent
    for folder in (called, PACKAGE_DIR):
        if folder.parent.name == "custom_nodes":
            candidate = folder.parent.parent / "user" / "__sagemaker"
            if candidate.is_dir():
                return candidate
    return None


def _config(args: argparse.Namespace) -> int:
    from .core.identity import display_name, instance_id

    config_dir = Path(args.config_dir) if args.config_dir else default_config_dir()
    cfg = config_mod.load(config_dir)
    # The instance id names this ComfyUI's runs in the store (an artist's IAM policy scopes writes by it).
    identity = {"instance": instance_id(config_dir), "name": display_name(cfg.display_name)} if config_dir else None
    print(json.dumps({"config_dir": str(config_dir) if config_dir else None, "identity": identity, **cfg.public()},
                     indent=2))
    return 0


def config_folder(args: argparse.Namespace) -> Path | None:
    return Path(args.config_dir) if args.config_dir else default_config_dir()


def say(message: str) -> None:
    print(message, flush=True)


def _rules(args: argparse.Namespace) -> int:
    print(json.dumps(names.rules(), indent=2))
    return 0


def _check_name(args: argparse.Namespace) -> int:
    rule = names.TEMPLATE_NAME if args.kind == "template" else names.ENVIRONMENT_NAME
    rule.check(args.name)
    print(f"{args.kind} name {args.name!r} is valid")
    return 0


def ask_comfyui(args: argparse.Namespace, method: str, path: str, body: object = None) -> object:
    """Call a running ComfyUI's /sagemaker/ routes (the node registry lives in that process), the whole
    exchange within SERVER_TIMEOUT_S (core/net/http_deadline.py)."""
    import os
    from http.client import HTTPException

    from .core.net.http_deadline import request

    headers = {}
    token = os.environ.get("COMFYUI_SAGEMAKER_TOKEN")
    if token:
        headers["X-SageMaker-Token"] = token
    try:
        status, answer = request(args.url.rstrip("/") + "/sagemaker" + path, method, body, headers, SERVER_TIMEOUT_S)
    except (OSError, HTTPException, ValueError) as err:
        raise SageMakerError(f"cannot reach ComfyUI at {args.url}: {err}") from None
    try:
        data = json.loads(answer)
    except ValueError:
        raise SageMakerError(f"{args.url} answered {status} without JSON: is it ComfyUI?") from None
    if not 200 <= status < 300:
        err = data.get("error", {}) if isinstance(data, dict) else {}
        failure = SageMakerError(err.get("message", f"HTTP {status}"))
        failure.code = err.get("code", "error")
        raise failure
    return data


def _gateway(args: argparse.Namespace) -> int:
    from .gateway.app import serve

    return serve(config_folder(args), args.host, args.port, args.drain_seconds, args.run_lease_seconds)


def _webhook_secret(args: argparse.Namespace) -> int:
    """This configuration's webhook signing secret (made on first use), for the receivers that verify
    signatures; the store's old, readable one is deleted."""
    from .core.webhook_secret import ENV, LEGACY_KEY, WebhookSecret

    config_dir = config_folder(args)
    secret = WebhookSecret(config_dir, make=True)
    if config_dir is None and not secret.environ.get(ENV, "").strip():
        raise SageMakerError("no configuration folder: pass --config-dir (the folder of config.json), or set "
                             f"{ENV}")
    print(secret.rotate() if args.rotate else secret.text())
    _forget_legacy_secret(config_dir, LEGACY_KEY)
    return 0


def _forget_legacy_secret(config_dir: Path | None, key: str) -> None:
    """Older versions kept one secret per store, readable by every reader of the store: delete it, and say
    that receivers trusting it must be given the new one."""
    from .stores import make_store

    try:
        cfg = config_mod.load(config_dir)
        if cfg.store == "folder" and not cfg.store_path:
            return  # no store configured here
        store = make_store(cfg)
        if not store.exists(key):
            return
        store.delete(key)
        done = f"deleted {key}"
    except Exception as err:  # no store here, or no right to delete: say so, the secret printed stands
        done = f"could not check or delete {key} in the store ({type(err).__name__}: {err}); delete it yourself"
    print(f"note: {done}, the webhook secret of older versions. Everyone who could read the store could read "
          "it: give receivers the secret above and stop accepting the old one.", file=sys.stderr)


def prog() -> str:
    """How this copy is called: by its folder in a ComfyUI's custom_nodes, else as the installed package."""
    main_module = sys.modules.get("__main__")
    if getattr(main_module, "__package__", None) == "":  # run as `python <folder>`
        return f"python {PACKAGE_DIR.parent.name}/{PACKAGE_DIR.name}" if PACKAGE_DIR.parent.name == "custom_nodes" \
            else f"python {PACKAGE_DIR}"
    return "python -m comfyui_sagemaker"


def parser() -> argparse.ArgumentParser:
    # Imported here, not above: they import this module's helpers.
    from . import cli_aws, cli_costs, cli_environments

    p = argparse.ArgumentParser(
        prog=prog(),
        description="comfyui-sagemaker: publish ComfyUI workflows as templates and run them on endpoints.",
    )
    p.add_argument("--version", action="version", version=f"comfyui-sagemaker {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    c = sub.add_parser("config", help="print the effective configuration (never the token)")
    c.add_argument("--config-dir", help="folder holding config.json (default: ComfyUI's user/__sagemaker "
                   "when this extension sits in its custom_nodes)")
    c.set_defaults(func=_config)
    r = sub.add_parser("rules", help="print the name rules as JSON")
    r.set_defaults(func=_rules)
    n = sub.add_parser("check-name", help="check a template or environment name")
    n.add_argument("kind", choices=["template", "environment"])
    n.add_argument("name")
    n.set_defaults(func=_check_name)
    url = {"default": "http://127.0.0.1:8188", "help": "the running ComfyUI (default %(default)s)"}
    cli_environments.add_commands(sub, url)
    cli_costs.add_commands(sub, url)
    cli_aws.add_commands(sub)
    gw = sub.add_parser("gateway", help="serve the template API and the Comfy API v2 without ComfyUI (any number "
                        "of replicas on one store)")
    gw.add_argument("--config-dir", help="folder holding config.json (default: ComfyUI's user/__sagemaker when this "
                    "extension sits in its custom_nodes; COMFYUI_SAGEMAKER_* variables alone work too)")
    gw.add_argument("--host", default="127.0.0.1", help="address to listen on (default %(default)s; 0.0.0.0 in a "
                    "container)")
    gw.add_argument("--port", type=int, default=8189, help="port (default %(default)s)")
    gw.add_argument("--drain-seconds", type=float, default=30.0, help="on SIGTERM, how long requests and runs in "
                    "flight may take to finish (default %(default)s)")
    gw.add_argument("--run-lease-seconds", type=float, default=60.0, help="how long the runs this replica "
                    "follows outlive it if it is killed before another replica takes them over or fails them "
                    "(default %(default)s; each replica looks every half of its own)")
    gw.set_defaults(func=_gateway)
    ws = sub.add_parser("webhook-secret", help="print the webhook signing secret of this configuration (made on "
                        "first use, kept in the configuration folder, readable by you only)")
    ws.add_argument("--config-dir", help="folder holding config.json (default: as for config)")
    ws.add_argument("--rotate", action="store_true", help="make a new secret (receivers must be given it)")
    ws.set_defaults(func=_webhook_secret)
    # Listed for --help; main() hands everything after `worker` to the worker's own parser.
    sub.add_parser("worker", help="the worker of an endpoint (`worker serve`; local endpoints start it)")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        if argv[:1] == ["worker"]:
            from .cli_worker import worker

            return worker(argv[1:])
        p = parser()
        args = p.parse_args(argv)
        if not getattr(args, "func", None):
            p.print_help()
            return 2
        if getattr(args, "aws_command", None):
            from .cli_aws import translated

            return translated(args)
        return args.func(args)
    except SageMakerError as err:
        print(f"error ({err.code}): {err.message}", file=sys.stderr)
        return 1
    except ModuleNotFoundError as err:
        # Typically another Python than ComfyUI's: say which one and what to use instead.
        print(f"error (missing_package): this Python ({sys.executable}) has no module {err.name!r}. Run the "
              "command with ComfyUI's own Python (the one that starts its main.py), after the extension's "
              "install.py.", file=sys.stderr)
        return 1
