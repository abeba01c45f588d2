"""The sidebar's JS (web/js, no-build ES modules) checked as the README's test command runs it: tsc against
the frontend's published types (tools/js/tsconfig.json), biome's lint and format with lines of at most 140
characters (tools/js/biome.json), and the node tests of the host adapters (tests/js/*.test.mjs), which feed
them the shapes of older and newer frontends. The tools are the ones tools/js/package-lock.json pins,
installed into tools/js/node_modules by `./dev test` (npm ci)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ROOT / "tools" / "js"
WEB_JS = ROOT / "web" / "js"

# Node processes (tsc alone is seconds of CPU) and tools only `./dev test` installs: the fast tier runs none.
pytestmark = pytest.mark.slow


def node() -> str:
    path = shutil.which("node")
    if not path:
        raise RuntimeError("Node.js is needed for the JS checks: run the tests with `./dev test` (it installs "
                           "Debian's nodejs) or install Node.js 18 or later")
    return path


def tool(name: str) -> str:
    path = TOOLS / "node_modules" / ".bin" / name
    if not path.exists():
        raise RuntimeError(f"no {name} in tools/js/node_modules: run the tests with `./dev test` (it runs npm ci "
                           "there) or run `npm ci` in tools/js")
    return str(path)


def run(*cmd: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=300)


def test_every_module_is_type_checked_against_the_frontends_published_types():
    unchecked = [p.name for p in sorted(WEB_JS.glob("*.js")) if not p.read_text().startswith("// @ts-check\n")]
    assert unchecked == [], f"these modules do not start with // @ts-check: {unchecked}"
    r = run(tool("tsc"), "-p", "tools/js", "--pretty", "false")
    assert r.returncode == 0, r.stdout[-8000:] + r.stderr[-2000:]


def test_biome_finds_nothing_and_every_line_fits_140_characters():
    # Lint, format (line width 140) and import order; run from tools/js, where biome.json is.
    r = run(tool("biome"), "ci", "--colors=off", "--error-on-warnings", "../../web/js", "../../tests/js", "host",
            cwd=TOOLS)
    assert r.returncode == 0, r.stdout[-8000:] + r.stderr[-4000:]
    # The formatter breaks code, not strings: a long text is split by hand.
    files = [*WEB_JS.glob("*.js"), *(ROOT / "tests" / "js").glob("*.mjs"), *(TOOLS / "host").rglob("*.d.ts")]
    long = [f"{p.relative_to(ROOT)}:{n}" for p in files for n, line in enumerate(p.read_text().splitlines(), 1)
            if len(line) > 140]
    assert long == []


def test_the_host_adapters_meet_older_and_newer_frontend_shapes():
    tests = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "tests" / "js").glob("*.test.mjs"))
    assert tests
    r = run(node(), "--test", *tests)
    assert r.returncode == 0, r.stdout[-6000:] + r.stderr[-3000:]
    assert "# fail 0" in r.stdout and "# pass 0" not in r.stdout, r.stdout[-2000:]
