"""The worker's kept results (worker/results.py) and their door (`{"action": "result"}` on /invocations): bounded
in number and time, waited for while a run goes on, and given only to the run's invoker (its cancel token) or
through a door only the worker's own process passes (its token); a worker that keeps none (SageMaker) says so.
The worker's execute on stand-in ComfyUIs (no processes), as tests/unit/test_worker_deadline.py."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json

from comfyui_sagemaker.core import cancel_tokens
from comfyui_sagemaker.worker.results import ResultBook
from comfyui_sagemaker.worker.server import Worker
from comfyui_sagemaker.worker.settings import WorkerSettings


def run(coro):
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, asyncio.wait_for(coro, 60)).result()


def result(execution_id: str, status: str = "succeeded") -> dict:
    return {"execution_id": execution_id, "status": status, "outputs": {}}


def worker(tmp_path, keep: int = 100, token: str | None = "worker-secret") -> Worker:
    settings = WorkerSettings(manifest_uri=(tmp_path / "store/environments/e/versions/v000001.json").as_uri(),
                              cache_dir=tmp_path / "cache", base_dir=tmp_path / "base", keep_results=keep, token=token)
    return Worker(settings)


def answer(response) -> tuple[int, dict]:
    return response.status, json.loads(response.text)


def test_results_are_kept_at_most_n_runs_for_at_most_m_minutes():
    now = [0.0]
    book = ResultBook(size=2, minutes=1, clock=lambda: now[0])
    for i in range(3):
        book.begin(f"e{i}", None)
        book.end(f"e{i}", None, result(f"e{i}"))
    assert not book.known("e0") and book.known("e1") and book.known("e2")  # the oldest went first
    now[0] = 61.0
    assert not book.known("e1") and book.count() == 0  # past its minutes
    assert not ResultBook(size=0).keeps


def test_a_result_is_waited_for_while_its_run_goes_on():
    async def scenario() -> dict | None:
        book = ResultBook()
        book.begin("e1", None)
        waiting = asyncio.ensure_future(book.wait("e1"))
        await asyncio.sleep(0)
        assert not waiting.done()
        book.end("e1", None, result("e1"))
        return await waiting

    assert run(scenario()) == result("e1")


def test_only_the_runs_cancel_token_or_the_workers_own_door_reads_it():
    token = cancel_tokens.new_token()
    book = ResultBook()
    book.begin("e1", cancel_tokens.digest_of(token))
    book.end("e1", cancel_tokens.digest_of(token), result("e1"))
    assert book.allowed("e1", token, door_locked=False)
    assert not book.allowed("e1", cancel_tokens.new_token(), door_locked=True)  # someone else's run's token
    assert book.allowed("e1", None, door_locked=True)  # the worker's token at its door
    assert not book.allowed("e1", None, door_locked=False)  # a worker with no token of its own: the invoker only


def test_the_door_answers_a_kept_result_and_refuses_what_it_must(tmp_path):
    w = worker(tmp_path, token=None)  # the door is open to anyone who reaches it: only the invoker's token reads
    token = cancel_tokens.new_token()

    async def scenario() -> list[tuple[int, dict]]:
        async def nothing(event) -> None:
            pass

        # Not ready (no ComfyUI): the run ends at once as the worker's own failure, and its result is kept.
        await w.execute("e1", {"1": {}}, [], nothing, cancel_digest=cancel_tokens.digest_of(token))
        return [answer(await w.result_of({"action": "result", "execution_id": "e1", "cancel_token": token})),
                answer(await w.result_of({"action": "result", "execution_id": "e1"})),
                answer(await w.result_of({"action": "result", "execution_id": "e1",
                                          "cancel_token": cancel_tokens.new_token()})),
                answer(await w.result_of({"action": "result", "execution_id": "nope", "cancel_token": token})),
                answer(await w.result_of({"action": "result", "execution_id": ""}))]

    (ok, body), anyone, wrong, unknown, bad = run(scenario())
    assert ok == 200 and body["execution_id"] == "e1" and body["status"] == "failed"
    assert anyone[0] == 403 and wrong[0] == 403 and anyone[1]["error"]["code"] == "result_refused"
    assert unknown[0] == 404 and unknown[1]["error"]["code"] == "run_unknown"
    assert bad[0] == 400


def test_a_worker_that_keeps_no_results_says_so(tmp_path):
    w = worker(tmp_path, keep=0)
    status, body = answer(run(w.result_of({"action": "result", "execution_id": "e1"})))
    assert status == 404 and body["error"]["code"] == "run_unknown"
