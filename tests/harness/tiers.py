"""The fast tier (`./dev test --fast`): every test that needs no ComfyUI process, no browser and no other
Python environment. The markers say which tests those are (comfyui, browser, installed, slow); this guard
keeps them honest: in the fast tier a test that starts one of those processes fails at once, naming the
marker it needs, instead of making the tier slow without anyone noticing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

TIER = "SM_TEST_TIER"
FAST = "fast"
SELECTION = "not comfyui and not browser and not installed and not slow"


def is_fast() -> bool:
    return os.environ.get(TIER) == FAST


def heavy(argv: list[str], root: Path) -> str | None:
    """What `argv` would start that the fast tier must not, and the marker its test needs; None if nothing."""
    if not argv:
        return None
    exe = Path(argv[0]).name
    if "playwright" in argv[0] or exe in ("chromium", "chrome"):
        return "a browser (mark it browser)"
    if exe in ("node", "npm", "npx") or f"node_modules{os.sep}.bin" in argv[0]:
        return "Node.js or a tool of tools/js, which only `./dev test` installs (mark it slow)"
    if any(a.endswith(os.sep + "main.py") or a == "main.py" for a in argv[1:3]):
        return "a ComfyUI (mark it comfyui)"
    if str(root) in argv[1:2] and len(argv) > 2 and argv[2] in ("worker", "gateway"):
        return f"a {argv[2]} (mark it comfyui)"
    if exe.startswith("python") and Path(argv[0]).resolve() != Path(sys.executable).resolve():
        return f"another Python environment, {argv[0]} (mark it slow, or installed)"
    return None


def install_guard(root: Path) -> None:
    original = subprocess.Popen.__init__

    def guarded(self, args, *rest, **kw):
        argv = [os.fspath(a) for a in args] if isinstance(args, (list, tuple)) else [os.fspath(args)]
        what = heavy(argv, root)
        if what is not None:
            raise RuntimeError(f"this test starts {what}: the fast tier runs none (see tests/README.md)")
        original(self, args, *rest, **kw)

    subprocess.Popen.__init__ = guarded  # type: ignore[method-assign]
