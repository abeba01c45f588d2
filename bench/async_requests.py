"""Requests per short async run, with SageMaker's notifications (aws/notifications.py) and with polling alone.

Two ComfyUIs side by side in this process (as ComfyUI starts the extension: harness/fake_comfy.py), each on a
store of its own on moto's server, each with an async SageMaker endpoint on moto whose invocations the runtime
emulator forwards to a worker that answers at once: one deployed with the SNS topic (its end is noticed through
this ComfyUI's SQS queue), one without (its result is polled for, the baseline). Each runs the same short prompt
N times, one run at a time; every request the ComfyUI makes during a run is counted at moto's server by the
access key that signs it (the emulator's own S3 and SNS calls, SageMaker's side, are told apart by theirs), plus
the InvokeEndpointAsync calls the emulator received, from the run's creation to half a second after its end
(harness/request_count.py's AsyncRig, which tests/unit/test_requests_per_run.py holds to its ceiling). The first
run of each is left out of the median: it makes what a process's runs share once (the queue: CreateQueue,
Subscribe; the endpoint's view and config; the follower lease). Printed: all the requests of a run, and those of its
async completion alone (the request, the invocation, the queue, async/ reads: what polling or notices change),
then what the last run of each asked. Target: <= 10 requests per short run with notifications.

With notices a short run makes 16 (`tests/unit/test_requests_per_run.py` holds it): its record created and ended (2
PUTs: its "running" and where its result lands are written a second into a run that lasts, never for one that ends
sooner), its index markers (all, owner, template at its creation; state and owner-state at its end: 5 PUTs), its one
in-flight marker naming its follower (a PUT and a DELETE), one change notice for the other ComfyUIs, the template (a
GET: a template changes under its name, and a process with no page open hears of no change), the invocation (its
request inline: no PUT of it up to 128,000 bytes), its notice (ReceiveMessage, DeleteMessage), and the result its
worker kept and its progress (2 GETs: SageMaker's copy of the result is not read once the notice came). The served
version's manifest is read by a process's first run of it only. What is left above the target is the index (5 writes:
each list a page reads is one folder, newest first) and the template read.

Run: ./dev python bench/async_requests.py [runs] [seconds each run lasts in the worker] [--record]   (default 10, 0)
--record writes the figures (requests per run, of its completion; run times shown) to bench/figures.json, where
bench/guard.py holds later runs to them.
"""

from __future__ import annotations

import logging
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.append(str(Path(__file__).resolve().parent))  # figures.py, when imported by guard.py
from figures import Figure, record  # noqa: E402
from harness.request_count import AsyncRig, completion  # noqa: E402

TARGET = 10
# The guard's allowance on a polled run's requests: whether a poll finds the result at once or one poll later
# changes its count (21 to 25 in 10 runs when the median was 24). With notices each request is a step of the run,
# but on a loaded machine a run that outlasts 2 s reads its record once more (a cancel from another ComfyUI), and a
# burst's change notice may be written twice: two more (tests/unit/test_requests_per_run.py allows the same).
POLLING_ALLOWANCE = 4
NOTICES_ALLOWANCE = 2


def run(runs: int, lasts: float, modes: tuple[str, ...] = ("notices", "polling")) -> dict[str, dict]:
    """`runs` + 1 short runs with notices, as many polled for; what each asked, and its time."""
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    rig = AsyncRig(Path(tempfile.mkdtemp(prefix="bench-async-requests-")), lasts)
    figures: dict[str, dict] = {}
    try:
        for label in modes:
            comfy = rig.comfy(f"bench-{label}", label == "notices")
            counts, times, completions = [], [], []
            for i in range(runs + 1):
                ran = rig.run(comfy, i + 1, settle=0.5)
                assert ran.state == "succeeded", f"{label} run {i}: {ran.state}"
                counts.append(ran.seen)
                times.append(ran.took)
                completions.append(sum(n for w, n in ran.asked.items() if completion(w)))
            figures[label] = {"counts": counts, "times": times, "asked": ran.asked, "completion": completions}
    finally:
        rig.close()
    return figures


def report(figures: dict[str, dict], runs: int) -> None:
    print(f"requests the ComfyUI makes per short async run (median of {runs}, after a first run)")
    for label, f in figures.items():
        totals = [sum(c.values()) for c in f["counts"]]
        services = sorted({s for c in f["counts"] for s in c})
        per = {s: statistics.median([c.get(s, 0) for c in f["counts"][1:]]) for s in services}
        print(f"  {label:<8} {statistics.median(totals[1:]):>5.1f}  "
              + "  ".join(f"{s} {v:g}" for s, v in per.items())
              + f"  (first run {totals[0]}: {dict(f['counts'][0])});"
              f"  run time median {statistics.median(f['times'][1:]) * 1000:.0f} ms")
        print(f"  {'':<8} of which its async completion {statistics.median(f['completion'][1:]):g}"
              f" (first run {f['completion'][0]})")
    for label, f in figures.items():
        print(f"  what the last {label} run asked:")
        for what, n in sorted(f["asked"].items()):
            print(f"    {n:>3}  {what}")
    if len(figures) < 2:
        return
    notices = statistics.median([sum(c.values()) for c in figures["notices"]["counts"][1:]])
    polling = statistics.median([sum(c.values()) for c in figures["polling"]["counts"][1:]])
    verdict = "met" if notices <= TARGET else "NOT met"
    print(f"ratio notices / polling: {notices / polling:.2f}; target <= {TARGET} with notices: {verdict}")


def guarded(figures: dict[str, dict]) -> dict[str, Figure]:
    """The figures bench/guard.py holds: the request counts (with notices give or take one on a loaded machine;
    polled for, give or take a poll), the run time shown."""
    out = {}
    for label, f in figures.items():
        total = statistics.median([sum(c.values()) for c in f["counts"][1:]])
        allowance = POLLING_ALLOWANCE if label == "polling" else NOTICES_ALLOWANCE
        why = "a poll more or less" if label == "polling" else "a record read more on a loaded machine"
        out[f"{label}.requests"] = Figure(total, "count", "requests", f"requests per short async run, {label}",
                                          allowance=allowance, why=f"counted at moto's server; {why}")
        out[f"{label}.completion"] = Figure(statistics.median(f["completion"][1:]), "count", "requests",
                                            f"of which its async completion, {label}", allowance=allowance,
                                            why="the request, its invocation, the queue, async/ reads")
        out[f"{label}.ms"] = Figure(round(statistics.median(f["times"][1:]) * 1000), "shown", "ms",
                                    f"run time (creation to end event), {label}", why="absolute: not compared")
    if "polling" in figures and "notices" in figures:
        out["notices_to_polling"] = Figure(round(out["notices.requests"].value / out["polling.requests"].value, 3),
                                           "shown", "x", "requests per short async run, notices",
                                           baseline="the same run polled for", why="both sides guarded above")
    return out


def measure(quick: bool) -> dict[str, Figure]:
    """Quick (the test suite's): one run with notices after the first, its counts being the same run after run;
    the polled runs, whose counts vary by a poll, only in the whole bench (median of 10)."""
    runs = 1 if quick else 10
    figures = run(runs, 0.0, ("notices",) if quick else ("notices", "polling"))
    report(figures, runs)
    return guarded(figures)


def main() -> None:
    args = [a for a in sys.argv[1:] if a != "--record"]
    runs = int(args[0]) if args else 10
    lasts = float(args[1]) if len(args) > 1 else 0.0  # how long the worker takes over each run
    figures = run(runs, lasts)
    report(figures, runs)
    if "--record" in sys.argv:
        if lasts:
            raise SystemExit("--record: the guard's figures are of short runs (no seconds each run lasts)")
        record("async_requests", guarded(figures))


if __name__ == "__main__":
    main()
