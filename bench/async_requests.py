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

Run: ./dev python bench/async_requests.py [runs] [seconds each run lasts in the worker]   (default 10, 0)
"""

from __future__ import annotations

import logging
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from harness.request_count import AsyncRig, completion  # noqa: E402

RUNS = int(sys.argv[1]) if len(sys.argv) > 1 else 10
LASTS_S = float(sys.argv[2]) if len(sys.argv) > 2 else 0.0  # how long the worker takes over each run
TARGET = 10


def main() -> None:
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    rig = AsyncRig(Path(tempfile.mkdtemp(prefix="bench-async-requests-")), LASTS_S)
    figures: dict[str, dict] = {}
    try:
        for label, notified in (("notices", True), ("polling", False)):
            comfy = rig.comfy(f"bench-{label}", notified)
            counts, times, completions = [], [], []
            for i in range(RUNS + 1):
                ran = rig.run(comfy, i + 1, settle=0.5)
                assert ran.state == "succeeded", f"{label} run {i}: {ran.state}"
                counts.append(ran.seen)
                times.append(ran.took)
                completions.append(sum(n for w, n in ran.asked.items() if completion(w)))
            figures[label] = {"counts": counts, "times": times, "asked": ran.asked, "completion": completions}
    finally:
        rig.close()

    print(f"requests the ComfyUI makes per short async run (median of {RUNS}, after a first run)")
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
    notices = statistics.median([sum(c.values()) for c in figures["notices"]["counts"][1:]])
    polling = statistics.median([sum(c.values()) for c in figures["polling"]["counts"][1:]])
    verdict = "met" if notices <= TARGET else "NOT met"
    print(f"ratio notices / polling: {notices / polling:.2f}; target <= {TARGET} with notices: {verdict}")


if __name__ == "__main__":
    main()
