"""Install the extension's Python requirements into the Python that runs this file.

ComfyUI-Manager and `comfy node install` run it as `python install.py` with
ComfyUI's own Python, in this folder, after a clone or a Registry download;
by hand: `python custom_nodes/comfyui-sagemaker/install.py` with that Python.

Idempotent: requirements already met are reported and pip is not called.
Otherwise pip (or uv where this Python has no pip, as ComfyUI-Manager does)
installs `requirements.txt`, and the result is checked again: exit 0 only
when every requirement is met afterwards. Stdlib only (it runs before the
requirements exist): what is unmet is core/requirements.py's, which the extension also asks at load.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

if __package__:
    from .core.requirements import REQUIREMENTS, requirements, unmet
else:  # `python install.py`: the package's requirements may not exist yet, so only this stdlib-only file is loaded
    import importlib.util

    _spec = importlib.util.spec_from_file_location(
        "comfyui_sagemaker_requirements", Path(__file__).resolve().parent / "core" / "requirements.py")
    _requirements = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(_requirements)
    REQUIREMENTS, requirements, unmet = _requirements.REQUIREMENTS, _requirements.requirements, _requirements.unmet


def say(msg: str) -> None:
    print(f"comfyui-sagemaker: {msg}", flush=True)


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
