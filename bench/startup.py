"""How much the extension adds to ComfyUI's start-up (target: < 150 ms).

Times the extension's import in fresh processes against the imports of what ComfyUI has
loaded before it (aiohttp, requests: the ratio, load-independent), then starts the dev
ComfyUI several times with and without the extension and prints ComfyUI's own
import-time line for it, plus start-to-ready medians and their difference.
Run: ./dev python bench/startup.py [runs] [--record]   (--record: the figures to
bench/figures.json, where bench/guard.py holds later runs to them)
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
sys.path.append(str(Path(__file__).resolve().parent))  # figures.py, when imported by guard.py
from figures import Figure, record  # noqa: E402
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
t0 = time.perf_counter()
import aiohttp, requests  # already loaded in a running ComfyUI (its server and start-up use both)
from aiohttp import web
baseline = time.perf_counter() - t0
import folder_paths, comfy.cli_args, comfyui_version
# ComfyUI's execution module is loaded before custom nodes (with torch: seconds, not ours to time); the
# extension only looks at its shapes (comfy_queue.py), which an empty stand-in lacks: it degrades, logged.
sys.modules["execution"] = types.ModuleType("execution")
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
print(time.perf_counter() - t0, baseline)
"""
PROBES = 10
QUICK_PROBES = 5
# The guard's margin on the import ratio: medians of 5 or 10 probes were 1.21 to 1.55 in nine runs at load 2
# to 12 while their absolute times were 4x apart (both imports meet the same load): 50% is nearly twice that
# spread (28%). It catches the extension's own import growing by about 60% of aiohttp's and requests' (some
# 200 ms on a quiet machine); an S3 client made at import (boto3 is otherwise not imported) moved it only from
# 1.40 to 1.74: smaller slips are for the absolute figure on a quiet machine (`import.ms`, target 150 ms).
IMPORT_MARGIN = 0.5


def import_time() -> tuple[float, float]:
    """The extension loaded the way ComfyUI loads it, routes registered, in a fresh
    process that already has what ComfyUI itself imports; and that process's import of it
    (aiohttp, requests), the baseline."""
    from harness.comfyui import ROOT, comfyui_dir

    out = subprocess.run([sys.executable, "-c", IMPORT_PROBE, str(ROOT)], cwd=comfyui_dir(),
                         capture_output=True, text=True, check=True, env={**os.environ, "PYTHONPATH": "."})
    extension, baseline = out.stdout.strip().splitlines()[-1].split()
    return float(extension), float(baseline)


def probe(n: int) -> dict[str, Figure]:
    """n fresh processes: the extension's import, and its ratio to the baseline's in the same process."""
    probes = [import_time() for _ in range(n)]
    times = sorted(e for e, _ in probes)
    ratio = statistics.median(e / b for e, b in probes)
    print(f"extension import + route registration, median of {n} fresh processes: "
          f"{statistics.median(times) * 1000:.1f} ms (max {times[-1] * 1000:.1f} ms; target < 150 ms); "
          f"ratio to aiohttp's and requests' import in the same process {ratio:.2f}")
    return {"import.ratio": Figure(round(ratio, 3), "ratio", "x", "extension import + route registration",
                                   baseline="importing aiohttp and requests in the same fresh process",
                                   margin=IMPORT_MARGIN, why="1.21 to 1.55 at load 2 to 12, absolute times 4x apart"),
            "import.ms": Figure(round(statistics.median(times) * 1000, 1), "shown", "ms",
                                "extension import + route registration", why="absolute: not compared")}


def measure(quick: bool) -> dict[str, Figure]:
    """Quick (the test suite's): the import probes only, 5 of them; else 10 and the starts of ComfyUI."""
    figures = probe(QUICK_PROBES if quick else PROBES)
    if not quick:
        figures.update(starts(3))
    return figures


def starts(runs: int) -> dict[str, Figure]:
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
    # Shown, not guarded: ComfyUI's own start (torch's import, seconds) varies by more than the extension adds,
    # from run to run and more as the machine's load changes (0.78 in one run on a busy machine); the import
    # ratio above is the extension's part, guarded.
    return {"ready.ratio": Figure(round(a / b, 3), "shown", "x", "ComfyUI start to ready with the extension",
                                  baseline="the same ComfyUI started without it, alternately",
                                  why="ComfyUI's own start varies by more than the extension adds"),
            "comfyui_import.ms": Figure(round(statistics.median(imports) * 1000), "shown", "ms",
                                        "extension import time, ComfyUI's own figure", why="absolute: not compared")}


def main() -> None:
    args = [a for a in sys.argv[1:] if a != "--record"]
    figures = probe(PROBES)
    figures.update(starts(int(args[0]) if args else 3))
    if "--record" in sys.argv:
        record("startup", figures)


if __name__ == "__main__":
    with reaping("bench/startup.py"):
        main()
