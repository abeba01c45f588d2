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


def _config(args: argparse.Namespace) -> int:
    cfg = config_mod.load(Path(args.config_dir) if args.config_dir else None)
    print(json.dumps(cfg.public(), indent=2))
    return 0


def _rules(args: argparse.Namespace) -> int:
    print(json.dumps(names.rules(), indent=2))
    return 0


def _check_name(args: argparse.Namespace) -> int:
    rule = names.TEMPLATE_NAME if args.kind == "template" else names.ENVIRONMENT_NAME
    rule.check(args.name)
    print(f"{args.kind} name {args.name!r} is valid")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m comfyui_sagemaker",
        description="comfyui-sagemaker: publish ComfyUI workflows as templates and run them on endpoints.",
    )
    p.add_argument("--version", action="version", version=f"comfyui-sagemaker {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    c = sub.add_parser("config", help="print the effective configuration (never the token)")
    c.add_argument("--config-dir", help="folder holding config.json (ComfyUI's user/__sagemaker)")
    c.set_defaults(func=_config)
    r = sub.add_parser("rules", help="print the name rules as JSON")
    r.set_defaults(func=_rules)
    n = sub.add_parser("check-name", help="check a template or environment name")
    n.add_argument("kind", choices=["template", "environment"])
    n.add_argument("name")
    n.set_defaults(func=_check_name)
    return p


def main(argv: list[str] | None = None) -> int:
    p = parser()
    args = p.parse_args(argv)
    if not getattr(args, "func", None):
        p.print_help()
        return 2
    try:
        return args.func(args)
    except SageMakerError as err:
        print(f"error ({err.code}): {err.message}", file=sys.stderr)
        return 1
