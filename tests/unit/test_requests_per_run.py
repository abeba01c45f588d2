"""What one short async SageMaker run costs in store and SageMaker requests, counted at moto's server as
bench/async_requests.py counts them (harness/request_count.py): a ComfyUI as ComfyUI starts the extension, an
async endpoint deployed on moto with SageMaker's notices, the runtime emulator and a worker that answers at once.

Counted, never timed: a change that adds a request to every run (a describe, a marker written twice, a read of
what does not depend on the run) fails here. The first run of a process makes what later runs share (the notices'
queue, the endpoint's view and config, the follower lease); the second is the one held to the ceiling.
"""

from __future__ import annotations

from harness.request_count import AsyncRig

# Measured: 16 (its record created and ended, 5 index markers, its in-flight marker put and removed, one change
# notice, the template read, the invocation with its request inline, its notice received and deleted, the result
# its worker kept and its progress read). It was 23 before a run's first second was kept from the store, its two
# in-flight markers were one, the served manifest was kept, the kept result was read alone and the request went
# inline; 50 before they were counted. Two more for a loaded machine (a run that outlasts 2 s reads its record
# once, for a cancel from another ComfyUI; one that spans more than half a second writes its change notice twice).
CEILING = 18


def test_a_short_async_run_makes_a_handful_of_requests_and_none_that_does_not_depend_on_it(tmp_path, monkeypatch):
    rig = AsyncRig(tmp_path, setenv=monkeypatch.setenv)
    try:
        comfy = rig.comfy("count-notices", notified=True)
        first = rig.run(comfy, 1)
        second = rig.run(comfy, 2)
    finally:
        rig.close()
    assert first.state == second.state == "succeeded"
    assert second.total <= CEILING, sorted(second.asked.items())
    # The endpoint's view, config, warning, worker report and proofs are the first run's, shared by the next.
    asked = " ".join(second.asked.elements())
    assert "sagemaker DescribeEndpoint" not in asked and "DescribeEndpointConfig" not in asked, second.asked
    assert "endpoints/" not in asked and "proofs/" not in asked, second.asked
    # A short async run's record is written twice: created, and ended (its "running" and where its result lands
    # are written a second into a run that lasts, core/executions.py _settle).
    assert second.asked["s3 PUT executions/records/<id>/<id>.json"] == 2, second.asked
    # One in-flight marker, naming its follower: put at its creation, removed at its end.
    assert [w for w in second.asked if "executions/inflight/" in w] == [
        "s3 PUT executions/inflight/<id>/<id>.<id>-<id>", "s3 DELETE executions/inflight/<id>/<id>.<id>-<id>"], \
        second.asked
    # Its notice came: the result its worker kept is read, SageMaker's copy is not.
    assert second.asked["s3 GET async/results/<id>.json"] == 1 and second.asked["s3 GET async/outputs/<id>.out"] == 0, \
        second.asked
    # A run's own writes, once each: its change notice once, no HEAD before a removal, no lease of its own.
    # once per half second of changes (core/changes.py COALESCE_S): a run that spans more on a loaded machine, twice
    assert second.asked["s3 PUT changes/executions.json"] in (1, 2), second.asked
    assert second.asked["s3 GET count-notices"] == 0, second.asked  # no LIST: the served version is read by key
    # A published version never changes: its manifest is read by the process's first run of it only.
    assert not [w for w in second.asked if "/versions/" in w], second.asked
    assert not [w for w in second.asked if w.startswith("s3 HEAD ")], second.asked
    assert not [w for w in second.asked if "async/requests" in w], second.asked  # a short request goes inline
    assert not [w for w in second.asked if w.startswith("s3 ") and w.endswith("-<id>.json")], second.asked
