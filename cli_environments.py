"""The command line's commands on environments, through a running ComfyUI's routes: what that ComfyUI has to pack
(`snapshot`), what a workflow needs (`analyze`), an environment's versions and a rollback to one of them."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

from .cli import ask_comfyui
from .core import names
from .core.errors import SageMakerError


def add_commands(sub: argparse._SubParsersAction, url: dict) -> None:
    sn = sub.add_parser("snapshot", help="what this ComfyUI has: versions, packs, packages, models")
    _answered(sn, _snapshot, url)
    an = sub.add_parser("analyze", help="what a workflow needs: packs, models, inputs (UI or API format)")
    an.add_argument("file", help="workflow JSON file")
    _answered(an, _analyze, url)
    rb = sub.add_parser("rollback", help="serve an older version of an environment again (what was kept of it is "
                        "reused, nothing is uploaded)")
    rb.add_argument("environment")
    rb.add_argument("--to", type=int, help="the version (default: the one before the version the endpoint serves)")
    _answered(rb, _rollback, url, "print JSON (the endpoint as the route answers it)")
    ve = sub.add_parser("versions", help="an environment's versions: who published each, when, what changed, which "
                        "serves now")
    ve.add_argument("environment")
    _answered(ve, _versions, url)


def _answered(p: argparse.ArgumentParser, func: Callable[[argparse.Namespace], int], url: dict,
              json_help: str = "print JSON") -> None:
    """A command the running ComfyUI at --url answers, printed for a person or as JSON."""
    p.add_argument("--url", **url)
    p.add_argument("--json", action="store_true", help=json_help)
    p.set_defaults(func=func)


def _snapshot(args: argparse.Namespace) -> int:
    snap = ask_comfyui(args, "GET", "/snapshot")
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
    a = ask_comfyui(args, "POST", "/analyze", {"workflow": workflow})
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


def _rollback(args: argparse.Namespace) -> int:
    """The environment's endpoint serves an older version again (the running ComfyUI's route: its lease, its
    endpoints, the same checks as the sidebar's button)."""
    from urllib.parse import quote

    names.ENVIRONMENT_NAME.check(args.environment)
    view = ask_comfyui(args, "POST", f"/environments/{quote(args.environment)}/rollback",
                   {} if args.to is None else {"to": args.to})
    if args.json:
        print(json.dumps(view, indent=2))
        return 0
    print(f"endpoint {view['name']} goes back to version {view['version']} ({view['state']}); runs in flight finish "
          "on the version they started on")
    return 0


def _versions(args: argparse.Namespace) -> int:
    from urllib.parse import quote

    names.ENVIRONMENT_NAME.check(args.environment)
    history = ask_comfyui(args, "GET", f"/environments/{quote(args.environment)}/versions")
    if args.json:
        print(json.dumps(history, indent=2))
        return 0
    for line in history_lines(history):
        print(line)
    return 0


def history_lines(history: dict) -> list[str]:
    """An environment's history as a person reads it (the JSON is `--json`)."""
    lines = []
    for v in history["versions"]:
        serving = " (serving)" if v.get("serving") else ""
        if "problem" in v:
            lines.append(f"v{v['version']}{serving}: {v['problem']}")
            continue
        who = (v.get("published_by") or {}).get("name") or "unknown"
        changes = []
        for what in ("packs", "models", "templates"):
            for how, sign in (("added", "+"), ("removed", "-"), ("changed", "~")):
                changes += [f"{sign}{item}" for item in v["changes"][what].get(how, [])]
        proofs = v.get("proofs")  # core/proofs.py: run before traffic moved to it (None: not proven)
        failed = [f"{r['template']} ({(r.get('problems') or ['failed'])[0]})" for r in (proofs or {}).get("results", [])
                  if not r.get("passed")]
        proven = "" if not proofs else f"; proof failed: {'; '.join(failed)}" if failed else "; proofs passed"
        lines.append(f"v{v['version']}{serving}: {v.get('created_at') or '?'} by {who}; "
                     f"{' '.join(changes) or 'no pack, model or template changed'}{proven}")
    return lines
