"""Which devices the worker's ComfyUIs run on: one ComfyUI per visible GPU, one on a machine without.

The plan, first match wins:
- `WORKER_DEVICES`: a comma-separated list, each entry a CUDA device (an index or UUID, as
  CUDA_VISIBLE_DEVICES takes them) or `cpu`: one ComfyUI per entry;
- `--cpu` in the ComfyUI arguments: CPU only; `--cuda-device N` in them: that GPU only;
- the visible GPUs: `CUDA_VISIBLE_DEVICES` when it is set (empty or -1 hides every GPU), else
  `nvidia-smi -L`, else the kernel driver's list (`/proc/driver/nvidia/gpus`); none: one on the CPU.
`WORKER_COMFYUI_COUNT=N` then sets how many ComfyUIs: the first N devices, or the devices round-robin
when N is larger (several ComfyUIs per GPU, for small models), or N on the CPU.

Each ComfyUI sees only its own GPU (CUDA_VISIBLE_DEVICES in its environment). ComfyUIs on the CPU share
its cores: when there are several, each gets cores / N threads (OMP_NUM_THREADS, unless set), so N of
them do not fight over every core as N multi-threaded processes would.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

NVIDIA_PROC = Path("/proc/driver/nvidia/gpus")
GPU_LINE = re.compile(r"GPU \d+:")


@dataclass(frozen=True)
class Device:
    kind: str  # "cuda" | "cpu"
    cuda_id: str | None = None  # what CUDA_VISIBLE_DEVICES gets for this ComfyUI
    threads: int | None = None  # CPU threads of a ComfyUI on the CPU, when several share it

    @property
    def label(self) -> str:
        return f"cuda:{self.cuda_id}" if self.kind == "cuda" else "cpu"

    def env(self) -> dict[str, str]:
        if self.kind == "cuda":
            return {"CUDA_VISIBLE_DEVICES": str(self.cuda_id)}
        out = {"CUDA_VISIBLE_DEVICES": ""}
        if self.threads:
            out["OMP_NUM_THREADS"] = os.environ.get("OMP_NUM_THREADS") or str(self.threads)
        return out

    def args(self, comfyui_args: list[str]) -> list[str]:
        """The ComfyUI arguments for this device: --cuda-device goes (the environment says it), --cpu on the CPU."""
        out, skip = [], False
        for arg in comfyui_args:
            if skip:
                skip = False
                continue
            if arg == "--cuda-device":
                skip = True
                continue
            if arg.startswith("--cuda-device="):
                continue
            out.append(arg)
        if self.kind == "cpu" and "--cpu" not in out:
            out.append("--cpu")
        return out


def _nvidia_smi(run: Callable[..., subprocess.CompletedProcess]) -> list[str] | None:
    if not shutil.which("nvidia-smi"):
        return None
    try:
        r = run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    if r.returncode != 0:
        return None
    return [str(i) for i, _ in enumerate(line for line in r.stdout.splitlines() if GPU_LINE.match(line.strip()))]


def _driver_list(proc: Path = NVIDIA_PROC) -> list[str]:
    try:
        return [str(i) for i in range(len([p for p in proc.iterdir() if p.is_dir()]))]
    except OSError:
        return []


def visible_gpus(environ: Mapping[str, str], run: Callable[..., subprocess.CompletedProcess] = subprocess.run,
                 proc: Path = NVIDIA_PROC) -> list[str]:
    """The CUDA devices this process may use, as CUDA_VISIBLE_DEVICES entries."""
    if "CUDA_VISIBLE_DEVICES" in environ:
        out = []
        for entry in (e.strip() for e in environ["CUDA_VISIBLE_DEVICES"].split(",")):
            if not entry or entry == "-1":
                break  # CUDA stops at the first invalid entry
            out.append(entry)
        return out
    found = _nvidia_smi(run)
    return found if found is not None else _driver_list(proc)


def _option(args: list[str], name: str) -> str | None:
    for i, arg in enumerate(args):
        if arg == name and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


class DevicesInvalid(ValueError):
    """WORKER_DEVICES or WORKER_COMFYUI_COUNT cannot be understood."""


def plan(environ: Mapping[str, str], comfyui_args: list[str], cpu_count: int | None = None,
         run: Callable[..., subprocess.CompletedProcess] = subprocess.run, proc: Path = NVIDIA_PROC) -> list[Device]:
    """One Device per ComfyUI the worker starts (see the module's docstring)."""
    cores = cpu_count or os.cpu_count() or 1
    raw_count = (environ.get("WORKER_COMFYUI_COUNT") or "").strip()
    if raw_count and not (raw_count.isdigit() and 1 <= int(raw_count) <= 64):
        raise DevicesInvalid(f"WORKER_COMFYUI_COUNT must be a whole number from 1 to 64, got {raw_count!r}")
    count = int(raw_count) if raw_count else None
    explicit = (environ.get("WORKER_DEVICES") or "").strip()
    if explicit:
        entries = [e.strip() for e in explicit.split(",")]
        if not all(re.fullmatch(r"cpu|[A-Za-z0-9:_-]{1,100}", e) for e in entries):
            raise DevicesInvalid(f"WORKER_DEVICES must list CUDA devices or 'cpu', comma-separated, got {explicit!r}")
        gpus = [e for e in entries if e != "cpu"]
        cpus = len(entries) - len(gpus)
        kinds = [("cpu", None) if e == "cpu" else ("cuda", e) for e in entries]
    else:
        if "--cpu" in comfyui_args:
            gpus = []
        elif _option(comfyui_args, "--cuda-device") is not None:
            gpus = [str(_option(comfyui_args, "--cuda-device"))]
        else:
            gpus = visible_gpus(environ, run, proc)
        kinds = [("cuda", g) for g in gpus] or [("cpu", None)]
        cpus = 0 if gpus else 1
    if count is not None:
        kinds = [kinds[i % len(kinds)] for i in range(count)]
        cpus = sum(1 for k, _ in kinds if k == "cpu")
    threads = max(1, cores // cpus) if cpus > 1 else None  # one alone keeps torch's own default
    return [Device(kind, cuda_id, threads if kind == "cpu" else None) for kind, cuda_id in kinds]
