"""How much the extension adds to ComfyUI's start-up (target: < 150 ms).

Starts the dev ComfyUI several times with and without the extension and prints
ComfyUI's own import-time line for it, plus start-to-ready medians and their
difference. Run: ./dev python bench/startup.py [runs]
"""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from harness.comfyui import ComfyUI  # noqa: E402
from harness.reaper import reaping  # noqa: E402


def start_once(with_extension: bool) -> tuple[float, float | None]:
    base = Path(tempfile.mkdtemp(prefix="bench-startup-"))
    server = ComfyUI(base)
    if not with_extension:
        server.prepare()
        (base / "custom_nodes" / "comfyui-sagemaker").unlink()
        server.prepare = lambda: None  # keep it unlinked
    t0 = time.perf_counter()
    server.start()
    ready = time.perf_counter() - t0
    server.stop()
    m = re.search(r"([\d.]+) seconds: .*comfyui-sagemaker", server.log())
    return ready, float(m.group(1)) if m else None


IMPORT_PROBE = r"""
import importlib.util, sys, time, types
import aiohttp, requests  # already loaded in a running ComfyUI (its server and start-up use both)
from aiohttp import web
import folder_paths, comfy.cli_args, comfyui_version
server = types.ModuleType("server")
class PromptServer:
    instance = None
PromptServer.instance = types.SimpleNamespace(routes=web.RouteTableDef(), app=web.Application())
server.PromptServer = PromptServer
sys.modules["server"] = server
path = sys.argv[1]
t0 = time.perf_counter()
spec = importlib.util.spec_from_file_location("comfyui-sagemaker", path + "/__init__.py",
                                              submodule_search_locations=[path])
module = importlib.util.module_from_spec(spec)
sys.modules["comfyui-sagemaker"] = module
spec.loader.exec_module(module)
print(time.perf_counter() - t0)
"""


def import_time() -> float:
    """The extension loaded the way ComfyUI loads it, routes registered, in a fresh
    process that already has what ComfyUI itself imports."""
    from harness.comfyui import ROOT, comfyui_dir

    out = subprocess.run([sys.executable, "-c", IMPORT_PROBE, str(ROOT)], cwd=comfyui_dir(),
                         capture_output=True, text=True, check=True, env={**os.environ, "PYTHONPATH": "."})
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    probes = sorted(import_time() for _ in range(10))
    print(f"extension import + route registration, median of 10 fresh processes: "
          f"{statistics.median(probes) * 1000:.1f} ms (max {probes[-1] * 1000:.1f} ms; target < 150 ms)")
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    with_ext, without, imports = [], [], []
    for _ in range(runs):
        ready, imp = start_once(True)
        with_ext.append(ready)
        imports.append(imp or 0.0)
        without.append(start_once(False)[0])
    print(f"extension import time (ComfyUI's own figure), median of {runs}: "
          f"{statistics.median(imports) * 1000:.0f} ms (target < 150 ms)")
    a, b = statistics.median(with_ext), statistics.median(without)
    print(f"start to ready: with extension {a:.2f} s, without {b:.2f} s, "
          f"difference {(a - b) * 1000:+.0f} ms, ratio {a / b:.3f}")


if __name__ == "__main__":
    with reaping("bench/startup.py"):
        main()
