"""The sidebar's JS (web/js, no-build ES modules) checked by Node.js: the node tests of the host adapters
(tests/js/*.test.mjs), which feed them the shapes of older and newer frontends."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def node() -> str:
    path = shutil.which("node")
    if not path:
        raise RuntimeError("Node.js is needed for the JS checks: run the tests with `./dev test` (it installs "
                           "Debian's nodejs) or install Node.js 18 or later")
    return path


def run(*cmd: str) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_the_host_adapters_meet_older_and_newer_frontend_shapes():
    tests = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "tests" / "js").glob("*.test.mjs"))
    assert tests
    r = run(node(), "--test", *tests)
    assert r.returncode == 0, r.stdout[-6000:] + r.stderr[-3000:]
    assert "# fail 0" in r.stdout and "# pass 0" not in r.stdout, r.stdout[-2000:]
