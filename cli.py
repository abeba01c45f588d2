"""The command line: the same services as the routes, without ComfyUI running."""

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


def default_config_dir() -> Path | None:
    """ComfyUI's `user/__sagemaker` when this copy sits in `<ComfyUI>/custom_nodes/<folder>`
    (a ComfyUI started with --user-directory or --base-directory keeps it elsewhere: pass --config-dir)."""
    if PACKAGE_DIR.parent.name != "custom_nodes":
        return None
    candidate = PACKAGE_DIR.parent.parent / "user" / "__sagemaker"
    return candidate if candidate.is_dir() else None


def _config(args: argparse.Namespace) -> int:
    from .core.identity import display_name, instance_id

    config_dir = Path(args.config_dir) if args.config_dir else default_config_dir()
    cfg = config_mod.load(config_dir)
    # The instance id names this ComfyUI's runs in the store (an artist's IAM policy scopes writes by it).
    identity = {"instance": instance_id(config_dir), "name": display_name(cfg.display_name)} if config_dir else None
    print(json.dumps({"config_dir": str(config_dir) if config_dir else None, "identity": identity, **cfg.public()},
                     indent=2))
    return 0


def _worker(argv: list[str]) -> int:
    from .worker.__main__ import main as worker_main

    return worker_main(argv, prog=f"{prog()} worker")


def _rules(args: argparse.Namespace) -> int:
    print(json.dumps(names.rules(), indent=2))
    return 0


def _check_name(args: argparse.Namespace) -> int:
    rule = names.TEMPLATE_NAME if args.kind == "template" else names.ENVIRONMENT_NAME
    rule.check(args.name)
    print(f"{args.kind} name {args.name!r} is valid")
    return 0


def _server(args: argparse.Namespace, method: str, path: str, body: object = None) -> object:
    """Call a running ComfyUI's /sagemaker/ routes (the node registry lives in that process)."""
    import os

    import requests

    headers = {}
    token = os.environ.get("COMFYUI_SAGEMAKER_TOKEN")
    if token:
        headers["X-SageMaker-Token"] = token
    try:
        r = requests.request(method, args.url.rstrip("/") + "/sagemaker" + path, json=body, headers=headers,
                             timeout=300)
    except requests.RequestException as err:
        raise SageMakerError(f"cannot reach ComfyUI at {args.url}: {err}") from None
    try:
        data = r.json()
    except ValueError:
        raise SageMakerError(f"{args.url} answered {r.status_code} without JSON: is it ComfyUI?") from None
    if not r.ok:
        err = data.get("error", {}) if isinstance(data, dict) else {}
        failure = SageMakerError(err.get("message", f"HTTP {r.status_code}"))
        failure.code = err.get("code", "error")
        raise failure
    return data


def _snapshot(args: argparse.Namespace) -> int:
    snap = _server(args, "GET", "/snapshot")
    if args.json:
        print(json.dumps(snap, indent=2))
        return 0
    print(f"ComfyUI {snap['comfyui_version']}, Python {snap['python']}, torch {snap['torch']}, "
          f"{snap['platform']['system']} {snap['platform']['machine']}")
    print(f"custom node packs ({len(snap['custom_nodes'])}):")
    for p in snap["custom_nodes"]:
        ident = p["identity"]
        where = {"git": lambda i: f"{i['url']} @ {i['commit'][:10]}",
                 "registry": lambda i: f"registry {i['cnr_id']} {i['ver']}"}.get(ident["kind"], lambda i: i["kind"])
        flags = " (dirty)" if p.get("dirty") else ""
        print(f"  {p['folder']}: {where(ident)}{flags}")
    print(f"python packages: {len(snap['python_packages'])}; model files: {len(snap['models'])}")
    for problem in snap.get("problems", []):
        print(f"  problem: {problem}")
    return 0


def _analyze(args: argparse.Namespace) -> int:
    try:
        workflow = json.loads(Path(args.file).read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise SageMakerError(f"cannot read {args.file}: {err}") from None
    a = _server(args, "POST", "/analyze", {"workflow": workflow})
    if args.json:
        print(json.dumps(a, indent=2))
        return 0
    print(f"format: {a['format']}; packs: {', '.join(a['packs']) or 'core only'}")
    for m in a["missing"]:
        print(f"  missing node type {m['type']} (nodes {', '.join(m['node_ids'])})")
    for m in a["models"]:
        where = "/".join(m.get("candidates", [])) if m["folder"] == "?" else m["folder"]
        state = "present" if m["present"] else "MISSING"
        print(f"  model {where}/{m['name']}: {state} (nodes {', '.join(m['node_ids'])})")
    for i in a["inputs"]:
        print(f"  input {i['name']}: {'present' if i['present'] else 'MISSING'}")
    for w in a["warnings"]:
        print(f"  warning: {w}")
    return 0


def prog() -> str:
    """How this copy is called: by its folder in a ComfyUI's custom_nodes, else as the installed package."""
    main_module = sys.modules.get("__main__")
    if getattr(main_module, "__package__", None) == "":  # run as `python <folder>`
        return f"python {PACKAGE_DIR.parent.name}/{PACKAGE_DIR.name}" if PACKAGE_DIR.parent.name == "custom_nodes" \
            else f"python {PACKAGE_DIR}"
    return "python -m comfyui_sagemaker"


def parser() -> argparse.ArgumentParser:
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
    sn = sub.add_parser("snapshot", help="what this ComfyUI has: versions, packs, packages, models")
    sn.add_argument("--url", **url)
    sn.add_argument("--json", action="store_true", help="print JSON")
    sn.set_defaults(func=_snapshot)
    an = sub.add_parser("analyze", help="what a workflow needs: packs, models, inputs (UI or API format)")
    an.add_argument("file", help="workflow JSON file")
    an.add_argument("--url", **url)
    an.add_argument("--json", action="store_true", help="print JSON")
    an.set_defaults(func=_analyze)
    # Listed for --help; main() hands everything after `worker` to the worker's own parser.
    sub.add_parser("worker", help="the worker of an endpoint (`worker serve`; local endpoints start it)")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        if argv[:1] == ["worker"]:
            return _worker(argv[1:])
        p = parser()
        args = p.parse_args(argv)
        if not getattr(args, "func", None):
            p.print_help()
            return 2
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
