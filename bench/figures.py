"""The benches' figures in one file (bench/figures.json), and how a fresh run's are held to the committed ones.

Each bench that matters (`prompt_on_aws`, `async_requests`, `idle_requests`, `startup`) writes its figures under
its own name with `--record`; `bench/guard.py` reruns them, compares and generates docs/benchmarks.md's table.

A figure is one of four kinds, lower always better:
- `count`: requests of one run counted at moto's server; deterministic, so it is compared exactly, give or take
  its `allowance` (absolute), in both directions: a count that fell must be recorded (a ratchet), or a later rise
  back to the old figure would pass unseen.
- `rate`: requests a minute of real time (loops paced by the clock); a busy machine makes fewer, never more, so
  only a rise beyond its `allowance` (absolute) fails.
- `ratio`: a median against a baseline measured in the same run (`baseline` says which); it may worsen by its
  `margin` (relative: 0.5 = half as much again) before the guard fails. Never an absolute time: a busy machine
  slows the figure and its baseline alike.
- `shown`: a median in ms or a count per minute, recorded for the docs' table; never compared (it is absolute,
  or too slow to measure in the suite).
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path

FIGURES = Path(__file__).resolve().with_name("figures.json")
KINDS = ("count", "rate", "ratio", "shown")


@dataclass(frozen=True)
class Figure:
    """One figure of a bench: its value, what it is (`kind`, `unit`), what a ratio is against (`baseline`), and how
    far it may move before the guard fails (`margin` for a ratio, relative; `allowance` for a count, absolute),
    with the reason (`why`)."""

    value: float
    kind: str
    unit: str
    label: str
    baseline: str = ""
    margin: float = 0.0
    allowance: float = 0.0
    why: str = ""

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"figure kind {self.kind!r}: one of {', '.join(KINDS)}")
        if self.kind == "ratio" and not self.baseline:
            raise ValueError(f"ratio {self.label!r} names no baseline")


@dataclass
class Bench:
    """A bench's figures as recorded, with when and where (commit, load average: the machine's business then)."""

    figures: dict[str, Figure]
    recorded: dict = field(default_factory=dict)


def load(path: Path = FIGURES) -> dict[str, Bench]:
    if not path.exists():
        return {}
    raw = json.loads(path.read_text())
    return {name: Bench({key: Figure(**f) for key, f in b["figures"].items()}, b.get("recorded", {}))
            for name, b in raw.items()}


def dump(benches: dict[str, Bench], path: Path = FIGURES) -> None:
    out = {name: {"recorded": b.recorded, "figures": {k: asdict(f) for k, f in b.figures.items()}}
           for name, b in sorted(benches.items())}
    path.write_text(json.dumps(out, indent=2) + "\n")


def circumstances(note: str = "") -> dict:
    """What a recording ran on: the commit and the load average (1, 5, 15 min) when it ended."""
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=FIGURES.parent, capture_output=True,
                                text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = ""
    return {"commit": commit, "load": [round(x, 1) for x in os.getloadavg()], "cores": os.cpu_count(),
            **({"note": note} if note else {})}


def record(name: str, figures: dict[str, Figure], path: Path = FIGURES, note: str = "", merge: bool = False) -> None:
    """Replace bench `name`'s figures in the file, keeping the other benches'; with `merge` (a quick run that
    measured some of them), keep its figures not measured too."""
    benches = load(path)
    kept = benches[name].figures if merge and name in benches else {}
    benches[name] = Bench({**kept, **figures}, circumstances(note))
    dump(benches, path)
    print(f"recorded {len(figures)} figures of {name} in {path.name}")
