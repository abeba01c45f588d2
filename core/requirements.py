"""This Python against the extension's requirements.txt: which requirements it does not meet.

Stdlib only and self-contained: install.py runs before the requirements exist, as a script (ComfyUI-Manager's
`python install.py`), and loads this file by its path; the extension asks it at load to warn in its log and
in /sagemaker/health.
"""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

REQUIREMENTS = Path(__file__).resolve().parent.parent / "requirements.txt"
# requirements.txt holds only these forms (a test checks): a name, optionally with a lower bound.
LINE = re.compile(r"([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:>=\s*([0-9][0-9.]*))?")


def requirements(path: Path = REQUIREMENTS) -> list[tuple[str, str | None]]:
    """(name, lower bound or None) for each line of requirements.txt."""
    out = []
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        m = LINE.fullmatch(line)
        if not m:
            raise ValueError(f"{path.name}: unsupported requirement {line!r} (use 'name' or 'name>=version')")
        out.append((m.group(1), m.group(2)))
    return out


def _release(version: str) -> tuple[int, ...]:
    """The numeric release part of a version ("1.35.69", "4.0.2.post1" -> (4, 0, 2))."""
    parts = []
    for piece in version.split("."):
        m = re.match(r"\d+", piece)
        if not m:
            break
        parts.append(int(m.group()))
        if m.group() != piece:
            break
    return tuple(parts)


def unmet(reqs: list[tuple[str, str | None]] | None = None) -> list[str]:
    """The requirements this Python does not meet, as 'name>=bound (installed: x)' texts."""
    out = []
    for name, bound in requirements() if reqs is None else reqs:
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            out.append(f"{name}{'>=' + bound if bound else ''} (not installed)")
            continue
        if bound and _release(installed) < _release(bound):
            out.append(f"{name}>={bound} (installed: {installed})")
    return out
