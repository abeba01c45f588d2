"""worker/Dockerfile read as Docker reads it: tests check it without Docker (which cannot run here)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

DOCKERFILE = Path(__file__).resolve().parents[2] / "worker" / "Dockerfile"


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments dropped."""
    out, pending = [], ""
    for line in text.splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        pending += line.rstrip()
        if pending.endswith("\\"):
            pending = pending[:-1] + " "
            continue
        word, _, rest = pending.strip().partition(" ")
        out.append((word.upper(), rest.strip()))
        pending = ""
    return out


def args_before_from(steps: list[tuple[str, str]]) -> dict[str, str]:
    """The global ARGs (before the first FROM) and their defaults."""
    out = {}
    for word, rest in steps:
        if word == "FROM":
            break
        if word == "ARG":
            name, _, default = rest.partition("=")
            out[name] = default
    return out


def env(steps: list[tuple[str, str]]) -> dict[str, str]:
    out = {}
    for word, rest in steps:
        if word == "ENV":
            out.update(dict(item.split("=", 1) for item in shlex.split(rest)))
    return out


def image_cuda(base: str | None = None) -> str:
    """The CUDA of the base's torch, from its tag (`-cu124-`: 12.4)."""
    base = args_before_from(instructions(DOCKERFILE.read_text())).get("BASE", "") if base is None else base
    found = re.search(r"-cu(\d+)(\d)-", base)
    assert found, f"BASE {base!r} does not say its CUDA (-cuNNN-)"
    return f"{found.group(1)}.{found.group(2)}"
