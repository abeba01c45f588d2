"""The host adapters (comfy_queue.py, comfy_interrupt.py) against fake ComfyUIs: the shape of the pinned 0.3.75
(execution.py's PromptQueue, server.py's routes), and older and newer shapes. On a shape it does not know an
adapter writes nothing into it, says why once in the log and in its status (/sagemaker/health's `host`), and
never raises into ComfyUI or into a run."""

from __future__ import annotations

import copy
import heapq
import logging
import threading
import types
from typing import NamedTuple

import pytest
from aiohttp import web
from comfyui_sagemaker import comfy_interrupt
from comfyui_sagemaker.comfy_queue import KEY, ComfyQueue
from comfyui_sagemaker.core.host_facts import ComfyFacts, InterruptDoor

MAXIMUM_HISTORY_SIZE = 3  # the fake ComfyUI's own limit: the adapter must keep to it without knowing it


class PromptQueue:
    """ComfyUI 0.3.75's PromptQueue, the parts a remote run meets (its methods' signatures and effects)."""

    class ExecutionStatus(NamedTuple):
        status_str: str
        completed: bool
        messages: list

    def __init__(self, server):
        self.server = server
        self.mutex = threading.RLock()
        self.queue: list = []
        self.currently_running: dict = {}
        self.history: dict = {}

    def put(self, item):
        with self.mutex:
            heapq.heappush(self.queue, item)
            self.server.queue_updated()

    def task_done(self, item_id, history_result, status, process_item=None):
        with self.mutex:
            prompt = self.currently_running.pop(item_id)
            if len(self.history) > MAXIMUM_HISTORY_SIZE:
                self.history.pop(next(iter(self.history)))
            if process_item is not None:
                prompt = process_item(prompt)
            self.history[prompt[1]] = {"prompt": prompt, "outputs": {},
                                       "status": copy.deepcopy(status._asdict()) if status else None}
            self.history[prompt[1]].update(history_result)
            self.server.queue_updated()

    def get_tasks_remaining(self):
        with self.mutex:
            return len(self.queue) + len(self.currently_running)


class Server:
    """PromptServer: its number, its queue, its status broadcast, and the routes it declares itself."""

    def __init__(self, queue_class=PromptQueue):
        self.number = 0
        self.updates = 0
        self.prompt_queue = queue_class(self)
        self.routes = web.RouteTableDef()
        for method, path in (("POST", "/prompt"), ("POST", "/queue"), ("POST", "/interrupt"), ("GET", "/history")):
            self.declare(method, path)

    def declare(self, method: str, path: str, module: str = "server") -> None:
        async def handler(request):
            return web.Response()

        handler.__module__ = module  # ComfyUI's own routes are closures in its server.py
        self.routes.route(method, path)(handler)

    def queue_updated(self):
        self.updates += 1


EXECUTION = types.SimpleNamespace(SENSITIVE_EXTRA_DATA_KEYS=("auth_token_comfy_org", "api_key_comfy_org"),
                                  MAXIMUM_HISTORY_SIZE=MAXIMUM_HISTORY_SIZE)
OLDER_EXECUTION = types.SimpleNamespace(MAXIMUM_HISTORY_SIZE=10000)  # before the sensitive sixth field


def record(n: int, state: str = "running", **kw) -> dict:
    return {"id": f"ex{n}", "prompt_id": f"p{n}", "client_id": "c", "endpoint": "E", "state": state, **kw}


PROMPT = {"3": {"class_type": "SaveImage", "inputs": {}}}


def run(adapter: ComfyQueue, n: int, state: str = "succeeded", **kw) -> None:
    adapter.started(record(n), PROMPT, {"nodes": []}, ["3"])
    adapter.ended(record(n, state, **kw))


def test_on_0_3_75_a_remote_run_is_in_the_running_list_then_in_the_history_through_comfyuis_own_task_done():
    server = Server()
    adapter = ComfyQueue.attach(server, EXECUTION, comfy_interrupt.detect(server))
    assert adapter.status == "ok"
    adapter.started(record(1), PROMPT, {"nodes": []}, ["3"])
    item = server.prompt_queue.currently_running[KEY + "ex1"]
    assert len(item) == 6 and item[:2] == (0, "p1") and item[2] == PROMPT and item[4] == ["3"] and item[5] == {}
    assert item[3]["extra_pnginfo"] == {"workflow": {"nodes": []}} and item[3]["sagemaker"]["execution_id"] == "ex1"
    assert server.number == 1 and server.prompt_queue.get_tasks_remaining() == 1 and server.updates == 1
    assert adapter.execution_of("p1") == "ex1"

    outputs = {"3": {"images": [{"filename": "a.png", "subfolder": "sagemaker/ex1", "type": "output"}]}}
    adapter.ended(record(1, "succeeded", outputs=outputs))
    assert server.prompt_queue.currently_running == {} and adapter.execution_of("p1") is None
    entry = server.prompt_queue.history["p1"]
    assert entry["prompt"] == item[:5]  # ComfyUI keeps no sensitive field in its history
    assert entry["outputs"] == outputs and entry["meta"]["3"]["node_id"] == "3"
    assert entry["status"]["status_str"] == "success" and entry["status"]["completed"] is True
    assert [m[0] for m in entry["status"]["messages"]] == ["execution_start", "execution_success"]


def test_a_failed_and_a_cancelled_run_end_as_comfyui_words_them():
    server = Server()
    adapter = ComfyQueue.attach(server, EXECUTION)
    run(adapter, 1, "failed", error={"message": "out of memory"})
    run(adapter, 2, "cancelled")
    failed, cancelled = server.prompt_queue.history["p1"]["status"], server.prompt_queue.history["p2"]["status"]
    assert failed["status_str"] == "error" and failed["messages"][1][0] == "execution_error"
    assert failed["messages"][1][1]["exception_message"] == "out of memory"
    assert cancelled["messages"][1][0] == "execution_interrupted"


def test_the_history_stays_within_comfyuis_own_limit():
    server = Server()
    adapter = ComfyQueue.attach(server, EXECUTION)
    for n in range(10):
        run(adapter, n)
    assert len(server.prompt_queue.history) == MAXIMUM_HISTORY_SIZE + 1 and "p9" in server.prompt_queue.history


def contents(server) -> dict:
    """What a write into the host would change: the server's number and the queue's lists and dicts."""
    queue = getattr(server, "prompt_queue", None)
    return {"number": getattr(server, "number", None), "updates": server.updates,
            **{name: copy.deepcopy(getattr(queue, name, None)) for name in ("queue", "currently_running", "history")}}


def shapes():
    """(what differs, fake server, fake execution module, what the reason names)."""

    class NoHistory(PromptQueue):
        def __init__(self, server):
            super().__init__(server)
            del self.history

    class OtherTaskDone(PromptQueue):
        def task_done(self, item_id, result):  # a newer PromptQueue with a method of another shape
            raise AssertionError("never called")

    class OtherStatus(PromptQueue):
        class ExecutionStatus(NamedTuple):
            state: str

    class PlainLock(PromptQueue):
        def __init__(self, server):
            super().__init__(server)
            self.mutex = threading.Lock()

    no_number = Server()
    del no_number.number
    no_queue = Server()
    del no_queue.prompt_queue
    return [("older: queue items of 5 fields", Server(), OLDER_EXECUTION, "SENSITIVE_EXTRA_DATA_KEYS"),
            ("history without the attribute", Server(NoHistory), EXECUTION, "no history"),
            ("task_done of another shape", Server(OtherTaskDone), EXECUTION, "task_done(item_id, result)"),
            ("another ExecutionStatus", Server(OtherStatus), EXECUTION, "ExecutionStatus"),
            ("a lock that is not reentrant", Server(PlainLock), EXECUTION, "reentrant"),
            ("no number on the server", no_number, EXECUTION, "number"),
            ("no prompt queue", no_queue, EXECUTION, "no prompt_queue")]


@pytest.mark.parametrize("what, server, execution, reason", shapes(), ids=[s[0] for s in shapes()])
def test_a_queue_of_another_shape_is_left_alone_and_says_why(what, server, execution, reason, caplog):
    before = contents(server)
    with caplog.at_level(logging.WARNING, "comfyui_sagemaker"):
        adapter = ComfyQueue.attach(server, execution)
        for n in range(3):
            run(adapter, n)
    assert adapter.status.startswith("degraded: ") and reason in adapter.status, adapter.status
    assert contents(server) == before
    assert len([r for r in caplog.records if reason in r.getMessage()]) == 1  # said once, not per run
    adapter.started(record(7), PROMPT, None, ["3"])
    assert adapter.execution_of("p7") == "ex7"  # ComfyUI's /interrupt for it is still answered, not passed on


def test_newer_queue_items_of_another_arity_stop_the_writes_at_the_next_run(caplog):
    server = Server()
    adapter = ComfyQueue.attach(server, EXECUTION)
    run(adapter, 1)
    server.prompt_queue.put((5, "local", {}, {}, [], {}, "a seventh field"))  # ComfyUI's own, newer item
    with caplog.at_level(logging.WARNING, "comfyui_sagemaker"):
        run(adapter, 2)
        run(adapter, 3)
    assert adapter.status == "degraded: ComfyUI's own queue items have 7 fields, not the 6 of 0.3.75"
    assert "p2" not in server.prompt_queue.history and server.prompt_queue.currently_running == {}
    assert len([r for r in caplog.records if "7 fields" in r.getMessage()]) == 1


def test_a_run_in_flight_when_the_shape_turns_is_still_taken_out_of_the_running_list():
    server = Server()
    adapter = ComfyQueue.attach(server, EXECUTION)
    adapter.started(record(1), PROMPT, None, ["3"])
    server.prompt_queue.put((5, "local", {}, {}, [], {}, "a seventh field"))
    adapter.started(record(2), PROMPT, None, ["3"])  # finds the newer item: degraded
    adapter.ended(record(1, "succeeded"))
    adapter.ended(record(2, "succeeded"))
    assert server.prompt_queue.currently_running == {} and list(server.prompt_queue.history) == ["p1"]


def test_a_host_that_fails_underneath_never_raises_into_the_run():
    class Broken(PromptQueue):
        def task_done(self, item_id, history_result, status, process_item=None):
            raise RuntimeError("a host bug")

    server = Server(Broken)
    adapter = ComfyQueue.attach(server, EXECUTION)
    run(adapter, 1)  # no exception
    assert server.prompt_queue.currently_running == {}  # not left running
    assert adapter.status.startswith("degraded: a remote run could not be put in ComfyUI's history")

    class Exploding:
        def __getattr__(self, name):
            raise RuntimeError("no such thing")

    assert ComfyQueue.attach(Exploding(), EXECUTION).status.startswith("degraded: ")
    assert comfy_interrupt.detect(Exploding()).status.startswith("degraded: ")


def test_on_0_3_75_the_interrupt_door_is_taken_on_both_of_its_paths():
    door = comfy_interrupt.detect(Server())
    assert door == InterruptDoor(("/interrupt", "/api/interrupt"), "ok")


def test_a_custom_nodes_own_cancel_route_is_not_comfyuis():
    server = Server()
    server.declare("POST", "/my_pack/cancel/{task}", module="custom_nodes.my_pack")
    assert comfy_interrupt.detect(server).status == "ok"


def test_without_comfyuis_interrupt_nothing_is_taken(caplog):
    server = Server()
    server.routes = web.RouteTableDef()
    server.declare("POST", "/prompt")
    with caplog.at_level(logging.WARNING, "comfyui_sagemaker"):
        door = comfy_interrupt.detect(server)
    assert door.paths == () and door.status.startswith("degraded: ComfyUI declares no POST /interrupt")
    assert any("no POST /interrupt" in r.getMessage() for r in caplog.records)


def test_a_newer_comfyuis_other_cancel_door_keeps_remote_runs_out_of_its_running_list():
    server = Server()
    server.declare("POST", "/api/jobs/{job_id}/cancel")  # a newer ComfyUI's: it interrupts by prompt id
    server.declare("POST", "/api/jobs/cancel")
    door = comfy_interrupt.detect(server)
    assert door.paths == ("/interrupt", "/api/interrupt")
    assert door.uncovered == ("/api/jobs/cancel", "/api/jobs/{job_id}/cancel")
    assert "/api/jobs/{job_id}/cancel" in door.status and door.status.startswith("degraded: ")
    adapter = ComfyQueue.attach(server, EXECUTION, door)
    adapter.started(record(1), PROMPT, None, ["3"])
    assert server.prompt_queue.currently_running == {} and adapter.execution_of("p1") == "ex1"
    adapter.ended(record(1, "succeeded"))
    assert server.prompt_queue.history["p1"]["status"]["status_str"] == "success"  # its history is kept
    assert server.prompt_queue.currently_running == {}
    assert adapter.status.startswith("degraded: remote runs are kept in ComfyUI's history")


def test_health_shows_each_surface(tmp_path):
    server = Server()
    door = comfy_interrupt.detect(server)
    facts = ComfyFacts(version="0.3.75", listen=("127.0.0.1",), config_dir=tmp_path, input_dir=tmp_path,
                       output_dir=tmp_path, extension_dir=tmp_path, interrupt=door,
                       native_queue=ComfyQueue.attach(server, OLDER_EXECUTION, door))
    status = facts.host_status()
    assert status["interrupt"] == "ok" and status["queue"].startswith("degraded: ComfyUI's queue items are not")
    bare = ComfyFacts(version="0.3.75", listen=(), config_dir=tmp_path, input_dir=tmp_path, output_dir=tmp_path,
                      extension_dir=tmp_path)
    assert bare.host_status() == {"queue": "absent: no ComfyUI queue", "interrupt": "absent: no ComfyUI routes"}
