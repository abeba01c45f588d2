"""The command line's `costs`: what runs and what it costs (core/costs.py), from a running ComfyUI or from a
configuration without one."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .cli import ask_comfyui
from .core import config as config_mod


def add_commands(sub: argparse._SubParsersAction, url: dict) -> None:
    co = sub.add_parser("costs", help="what runs and what it costs: endpoints, storage, today and this month")
    co.add_argument("--url", **url)
    co.add_argument("--config-dir", help="compute from this configuration without ComfyUI (SageMaker endpoints and "
                    "the store; local endpoints need the ComfyUI that runs them: --url)")
    co.add_argument("--json", action="store_true", help="print JSON (the answer of GET /sagemaker/costs)")
    co.set_defaults(func=_costs)


def _costs(args: argparse.Namespace) -> int:
    """What runs and what it costs: from a running ComfyUI (--url: its local endpoints too), or from a
    configuration without ComfyUI (--config-dir: SageMaker endpoints and the store)."""
    if args.config_dir:
        from .services import Services

        config_dir = Path(args.config_dir)
        services = Services(config_mod.load(config_dir), state_dir=config_dir)
        try:
            report = services.costs.report(fresh=True)
        finally:
            services.close()
    else:
        report = ask_comfyui(args, "GET", "/costs?fresh=1")
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    for line in costs_lines(report):
        print(line)
    return 0


def _usd(value: float | None, unit: str = "") -> str:
    return "price unknown" if value is None else f"${value:,.2f}{unit}"


def _size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024:
            return f"{n} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TB"


def _idle(seconds: float | None) -> str:
    if seconds is None:
        return "no recent run"
    if seconds == 0:
        return "running now"
    minutes = int(seconds // 60)
    return f"idle {minutes // 60} h {minutes % 60} min" if minutes >= 60 else f"idle {minutes} min"


def costs_lines(report: dict) -> list[str]:
    """The costs report as a person reads it (the JSON is `--json`)."""
    lines = [f"endpoints (region {report['region'] or 'none'}; prices of {report.get('prices_as_of') or '?'}):"]
    for e in report["endpoints"]:
        what = f"{e['instances']} × {e['instance_type']}" if e["kind"] == "sagemaker" else \
            f"{e['instances']} local worker{'s' if e['instances'] != 1 else ''}"
        estimate = " (estimated)" if e["history"] == "estimate" and e["kind"] == "sagemaker" else ""
        lines.append(f"  {e['name']} [{e['kind']}, {e['state']}]: {what}, {_usd(e['hourly'], '/h')}; today "
                     f"{e['instance_hours_today']:.2f} instance-h {_usd(e['cost_today'])}, this month "
                     f"{e['instance_hours_month']:.2f} instance-h {_usd(e['cost_month'])}{estimate}; "
                     f"{_idle(e['idle_s'])}")
    if not report["endpoints"]:
        lines.append("  none")
    storage = report.get("storage")
    if storage:
        lines.append(f"storage ({storage['kind']}): {_size(storage['bytes'])}, {_usd(storage['monthly'], '/month')}")
        for p in storage["prefixes"]:
            lines.append(f"  {p['prefix']} {p['objects']} objects, {_size(p['bytes'])}, {_usd(p['monthly'], '/month')}")
    t = report["totals"]
    lines.append(f"total: {_usd(t['hourly'], '/h')} now; {_usd(t['today'])} today; {_usd(t['month'])} this month; "
                 f"storage {_usd(t['monthly_storage'], '/month')}")
    for problem in report.get("unavailable", []):
        lines.append(f"unavailable ({problem['kind']}): {problem['reason']}")
    return lines
