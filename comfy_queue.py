"""ComfyUI's own queue and history, told of this ComfyUI's remote runs (core.executions.NativeQueue): the host
adapter for ComfyUI's PromptQueue.

A remote run sits in ComfyUI's PromptQueue while it is in flight (`currently_running`, under a key of its own
that ComfyUI's executor never uses), so the queue counts it, its status events say so and the frontend's Cancel
is live; when it ends it goes into ComfyUI's history with its outputs (copied under
output/sagemaker/<execution id>/, served by /view), as a local run does. ComfyUI's /interrupt for a remote run's
prompt id is answered by the extension (comfy_interrupt.py, server_routes/http.py) before ComfyUI's own handler
could interrupt whatever runs locally.

What it writes is ComfyUI 0.3.75's shape (execution.py's PromptQueue, server.py's /prompt): a queue item of six
fields (number, prompt id, prompt, extra data, outputs to execute, sensitive data) under `currently_running`
and the server's `number`; the history entry goes in through ComfyUI's own `PromptQueue.task_done`, which
keeps its history within ComfyUI's MAXIMUM_HISTORY_SIZE. `attach` checks that the running ComfyUI offers that
shape, and every run checks ComfyUI's own items; where the shape differs the adapter writes nothing into it,
says why once in the log, and /sagemaker/health shows it (`host.queue`). Nothing here raises into ComfyUI or
into a run.
"""

from __future__ import annotations

import inspect
import logging
import threading
import time

from .core.executions import NativeQueue
from .core.host_facts import InterruptDoor

log = logging.getLogger("comfyui_sagemaker")

KEY = "sagemaker:"  # currently_running keys of remote runs; ComfyUI's own are integers
ITEM_FIELDS = 6  # (number, prompt_id, prompt, extra_data, outputs_to_execute, sensitive): server.py's /prompt
STATUS_FIELDS = ("status_str", "completed", "messages")  # PromptQueue.ExecutionStatus
RLOCK = type(threading.RLock())


def without_sensitive(item: tuple) -> tuple:
    """What ComfyUI keeps of a queue item in its history (main.py's prompt_worker drops the sensitive field)."""
    return item[:5] + item[6:]


def shape_problem(server: object, execution: object) -> str | None:
    """Why this ComfyUI's queue is not the shape the adapter writes, or None."""
    queue = getattr(server, "prompt_queue", None)
    if queue is None:
        return "ComfyUI's server has no prompt_queue"
    if not isinstance(getattr(queue, "mutex", None), RLOCK):
        return "PromptQueue.mutex is not the reentrant lock ComfyUI 0.3.75 has"
    for name, kind in (("queue", list), ("currently_running", dict), ("history", dict)):
        if not isinstance(getattr(queue, name, None), kind):
            return f"PromptQueue has no {name} {kind.__name__}"
    task_done = getattr(queue, "task_done", None)
    if not callable(task_done):
        return "PromptQueue has no task_done to add a run to its history"
    try:
        inspect.signature(task_done).bind(item_id=KEY, history_result={}, status=None, process_item=None)
    except (TypeError, ValueError):
        return f"PromptQueue.task_done{_signature(task_done)} does not take (item_id, history_result, status, " \
               "process_item)"
    status = getattr(queue, "ExecutionStatus", None)
    if tuple(getattr(status, "_fields", ())) != STATUS_FIELDS:
        return f"PromptQueue.ExecutionStatus is not a named tuple of {', '.join(STATUS_FIELDS)}"
    if not isinstance(getattr(server, "number", None), int) or not callable(getattr(server, "queue_updated", None)):
        return "ComfyUI's server has no whole-number `number` and queue_updated()"
    if not hasattr(execution, "SENSITIVE_EXTRA_DATA_KEYS"):
        return f"ComfyUI's queue items are not the {ITEM_FIELDS} fields of 0.3.75 (its execution module has no " \
               "SENSITIVE_EXTRA_DATA_KEYS, the sixth field's)"
    return None


def _signature(fn) -> str:
    try:
        return str(inspect.signature(fn))
    except (TypeError, ValueError):
        return "(...)"


class ComfyQueue(NativeQueue):
    """Use `attach`: it checks the host first."""

    def __init__(self, server, problem: str | None = None, running: bool = True):
        self.server = server
        self._problem = problem
        # False while ComfyUI has another door that stops a run by its prompt id (comfy_interrupt.py): a remote
        # run in its running list would let that door interrupt the local prompt. The history is still kept.
        self._running = running
        self._lock = threading.Lock()
        self._runs: dict[str, dict] = {}  # prompt id -> {execution, started, in_queue, tail (the item unnumbered)}
        if problem is not None:
            log.warning("comfyui-sagemaker: remote runs are not shown in ComfyUI's queue and history: %s", problem)

    @classmethod
    def attach(cls, server, execution, interrupt: InterruptDoor | None = None) -> ComfyQueue:
        try:
            problem = shape_problem(server, execution)
        except Exception as err:  # probing a host of another shape: that is a shape the adapter does not know
            problem = f"ComfyUI's queue could not be read ({type(err).__name__}: {err})"
        return cls(server, problem, running=not (interrupt and interrupt.uncovered))

    @property
    def status(self) -> str:
        if self._problem is not None:
            return f"degraded: {self._problem}"
        if not self._running:
            return "degraded: remote runs are kept in ComfyUI's history but not shown in its running list, where " \
                   "a Cancel through a door this extension does not answer would interrupt the local prompt"
        return "ok"

    def _degrade(self, problem: str) -> None:
        if self._problem is None:
            self._problem = problem
            log.warning("comfyui-sagemaker: remote runs are no longer shown in ComfyUI's queue and history: %s",
                        problem)

    def started(self, record: dict, prompt: dict, workflow: object, outputs: list[str] | None) -> None:
        started = int(time.time() * 1000)
        run: dict = {"execution": record["id"], "started": started, "in_queue": False, "tail": None}
        with self._lock:
            self._runs[record["prompt_id"]] = run  # /interrupt finds it whatever ComfyUI's queue is
        if self._problem is not None:
            return
        try:
            extra = {"client_id": record.get("client_id"), "create_time": started,
                     "sagemaker": {"execution_id": record["id"], "endpoint": record.get("endpoint")}}
            if workflow is not None:
                extra["extra_pnginfo"] = {"workflow": workflow}
            # The item without its number: (prompt id, prompt, extra data, outputs to execute, sensitive data).
            run["tail"] = (record["prompt_id"], prompt, extra, list(outputs or output_nodes(prompt)), {})
            if not self._running:
                return
            queue = self.server.prompt_queue
            with queue.mutex:
                problem = self._foreign_items(queue)
                if problem is not None:
                    run["tail"] = None
                    self._degrade(problem)
                    return
                queue.currently_running[KEY + record["id"]] = (self._next_number(), *run["tail"])
                run["in_queue"] = True
            self.server.queue_updated()
        except Exception as err:
            run["tail"] = None
            self._degrade(f"a remote run could not be put in ComfyUI's queue ({type(err).__name__}: {err})")

    def _foreign_items(self, queue) -> str | None:
        """Why ComfyUI's own items (waiting or running) are not of the shape this adapter writes, or None."""
        theirs = [v for k, v in queue.currently_running.items() if not str(k).startswith(KEY)]
        for item in [*queue.queue[:1], *theirs[:1]]:
            if not isinstance(item, tuple) or len(item) != ITEM_FIELDS:
                size = len(item) if isinstance(item, tuple) else type(item).__name__
                return f"ComfyUI's own queue items have {size} fields, not the {ITEM_FIELDS} of 0.3.75"
        return None

    def _next_number(self) -> int:
        number = self.server.number
        self.server.number += 1
        return number

    def ended(self, record: dict) -> None:
        with self._lock:
            run = self._runs.pop(record["prompt_id"], None)
        if run is None or run["tail"] is None:
            return  # nothing of it was written
        key = KEY + record["id"]
        try:
            self._to_history(run, record, key)
        except Exception as err:
            self._degrade(f"a remote run could not be put in ComfyUI's history ({type(err).__name__}: {err})")
            try:  # never left running in ComfyUI's queue
                with self.server.prompt_queue.mutex:
                    self.server.prompt_queue.currently_running.pop(key, None)
            except Exception:
                log.exception("comfyui-sagemaker: a remote run may stay in ComfyUI's running list")

    def _to_history(self, run: dict, record: dict, key: str) -> None:
        queue = self.server.prompt_queue
        ended = int(time.time() * 1000)
        state = str(record.get("state"))
        succeeded = state == "succeeded"
        final = {"succeeded": "execution_success", "cancelled": "execution_interrupted"}.get(state, "execution_error")
        messages = [["execution_start", {"prompt_id": record["prompt_id"], "timestamp": run["started"]}],
                    [final, {"prompt_id": record["prompt_id"], "timestamp": ended,
                             **({} if succeeded else {"exception_message": (record.get("error") or {})
                                                      .get("message", "")})}]]
        outputs = record.get("outputs") or {}
        result = {"outputs": outputs,
                  "meta": {node: {"node_id": node, "display_node": node, "parent_node": None, "real_node_id": node}
                           for node in outputs}}
        status = queue.ExecutionStatus(status_str="success" if succeeded else "error", completed=succeeded,
                                       messages=messages)
        with queue.mutex:  # reentrant (attach checked): task_done takes it again
            if run["in_queue"]:
                if key not in queue.currently_running:
                    return  # taken out by someone else meanwhile
            elif self._problem is not None:
                return  # the queue's shape is in doubt: not written into
            else:  # kept out of the running list: in and out at once, under ComfyUI's own lock
                queue.currently_running[key] = (self._next_number(), *run["tail"])
            # ComfyUI's own way into its history: pops the item, drops the oldest entry past its
            # MAXIMUM_HISTORY_SIZE, and tells the browsers the queue changed.
            queue.task_done(key, result, status, process_item=without_sensitive)

    def execution_of(self, prompt_id: str) -> str | None:
        with self._lock:
            run = self._runs.get(prompt_id)
        return run["execution"] if run else None


def output_nodes(prompt: dict) -> list[str]:
    """The prompt's output nodes (ComfyUI's OUTPUT_NODE classes), as validate_prompt lists them."""
    import nodes

    out = []
    for node_id, node in prompt.items():
        cls = nodes.NODE_CLASS_MAPPINGS.get(node.get("class_type")) if isinstance(node, dict) else None
        if cls is not None and getattr(cls, "OUTPUT_NODE", False):
            out.append(node_id)
    return out


def validate_prompt(prompt: dict) -> tuple:
    """ComfyUI's own validation (the /prompt handler's), run in this worker thread's own event loop."""
    import asyncio
    import uuid

    import execution

    return asyncio.run(execution.validate_prompt(str(uuid.uuid4()), prompt, None))
