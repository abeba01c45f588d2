"""Install the extension's Python requirements into the Python that runs this file.

ComfyUI-Manager and `comfy node install` run it as `python install.py` with
ComfyUI's own Python, in this folder, after a clone or a Registry download;
by hand: `python custom_nodes/comfyui-sagemaker/install.py` with that Python.

Idempotent: requirements already met are reported and pip is not called.
Otherwise pip (or uv where this Python has no pip, as ComfyUI-Manager does)
installs `requirements.txt`, and the result is checked again: exit 0 only
when every requirement is met afterwards. Stdlib only (it runs before the
requirements exist); the extension reuses `unmet()` to warn at load.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

HERE = Path(__file__).resolve().parent
REQUIREMENTS = HERE / "requirements.txt"
# requirements.txt holds only these forms (a test checks): a name, optionally with a lower bound.
LINE = re.compile(r"([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:>=\s*([0-9][0-9.]*))?")


def say(msg: str) -> None:
    print(f"comfyui-sagemaker: {msg}", flush=True)


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


def installer() -> list[str] | None:
    """pip of this Python, else uv targeting it (ComfyUI-Manager's fallback), else None."""
    if subprocess.run([sys.executable, "-m", "pip", "--version"], capture_output=True).returncode == 0:
        return [sys.executable, "-m", "pip", "install", "--disable-pip-version-check"]
    if subprocess.run([sys.executable, "-m", "uv", "--version"], capture_output=True).returncode == 0:
        return [sys.executable, "-m", "uv", "pip", "install", "--python", sys.executable]
    uv = shutil.which("uv")
    if uv:
        return [uv, "pip", "install", "--python", sys.executable]
    return None


def main() -> int:
    try:
        reqs = requirements()
    except (OSError, ValueError) as err:
        say(f"cannot read the requirements: {err}")
        return 2
    wanted = ", ".join(f"{n}>={b}" if b else n for n, b in reqs)
    say(f"Python: {sys.executable}")
    missing = unmet(reqs)
    if not missing:
        say(f"requirements already met ({wanted}); nothing to install")
        return 0
    say(f"to install: {'; '.join(missing)}")
    cmd = installer()
    if cmd is None:
        say(f"this Python has no pip (and no uv was found), so nothing was installed. Install pip "
            f"(`{sys.executable} -m ensurepip`) and run this again, or install {wanted} into it yourself.")
        return 1
    cmd = [*cmd, "-r", str(REQUIREMENTS)]
    say(f"running: {' '.join(cmd)}")
    rc = subprocess.call(cmd)
    still = unmet(reqs)
    if rc != 0 or still:
        why = f"the installer exited with code {rc}" if rc else "the installer reported success"
        say(f"NOT installed: {'; '.join(still) or 'see the installer output above'} ({why}). "
            "Check the network or the package index, then run this again: "
            f"{sys.executable} {Path(__file__).resolve()}")
        return rc or 1
    say(f"installed {wanted}; restart ComfyUI to load comfyui-sagemaker")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
