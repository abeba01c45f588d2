"""A v2 job's event stream followed from another process (core/v2/job_events.py): it reads the record, then looks
with conditional GETs. A write that lands between its first read of the record and of its ETag must still be
seen: a gateway replica's stream of a job another replica ran waited forever for an end it had already missed."""

from __future__ import annotations

import json

import httpx
import pytest
from comfyui_sagemaker.core.v2.job_events import JobEvents
from comfyui_sagemaker.core.v2.job_view import Mount
from harness.v2_rig import V2Rig, held

ENV = "Events"


@pytest.fixture
def v2(tmp_path):
    with V2Rig(tmp_path, ENV) as v:  # closed also when the test fails
        yield v


def test_an_end_written_while_the_stream_first_reads_the_job_is_seen(v2, monkeypatch):
    job = httpx.post(v2.jobs, json={"workflow": held("race")}).json()["id"]
    run = v2.fake.run(job).wait_started()
    services = v2.comfy.services
    records = services.executions.records
    running, _ = records.read(job)
    ended = {**running, "state": "succeeded", "finished_at": running.get("started_at")}
    jobs = services.jobs_v2
    monkeypatch.setattr(services.executions, "live", lambda execution_id: False)  # another process follows it
    first_record = jobs.record

    def record_then_the_end_lands(environment, job_id, user=None):
        got = first_record(environment, job_id, user)
        records.store.put(records.key(job_id), json.dumps(ended).encode())  # the other's end
        return got

    monkeypatch.setattr(jobs, "record", record_then_the_end_lands)
    events = JobEvents(jobs, ENV, job, Mount("http://127.0.0.1", f"/sagemaker/v2/{ENV}"))
    first = events.poll()
    assert not events.ended and ("status", {"status": "running", "queue_position": None}) in first
    monkeypatch.setattr(jobs, "record", first_record)
    assert ("status", {"status": "succeeded", "queue_position": None}) in events.poll()
    assert events.ended
    run.release()
