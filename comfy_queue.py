"""ComfyUI's own queue and history, told of this ComfyUI's remote runs (core.executions.NativeQueue).

A remote run sits in ComfyUI's PromptQueue while it is in flight (`currently_running`, under a key of
its own that ComfyUI's executor never uses), so the queue counts it, its status events say so and the
frontend's Cancel is live; when it ends it goes into ComfyUI's history with its outputs (copied under
output/sagemaker/<execution id>/, served by /view), as a local run does. ComfyUI's /interrupt for a
remote run's prompt id is taken by `interrupt_remote` before ComfyUI's own handler could interrupt
whatever runs locally. The only module that writes into ComfyUI's queue and history.
"""

from __future__ import annotations

import threading
import time

from .core.executions import NativeQueue

KEY = "sagemaker:"  # currently_running keys of remote runs; ComfyUI's own are integers


class ComfyQueue(NativeQueue):
    def __init__(self, server):
        self.server = server
        self._lock = threading.Lock()
        self._runs: dict[str, dict] = {}  # prompt id -> {execution, started}

    def started(self, record: dict, prompt: dict, workflow: object, outputs: list[str] | None) -> None:
        queue = self.server.prompt_queue
        extra = {"client_id": record.get("client_id"), "create_time": int(time.time() * 1000),
                 "sagemaker": {"execution_id": record["id"], "endpoint": record.get("endpoint")}}
        if workflow is not None:
            extra["extra_pnginfo"] = {"workflow": workflow}
        number = self.server.number
        self.server.number += 1
        item = (number, record["prompt_id"], prompt, extra, list(outputs or output_nodes(prompt)), {})
        with self._lock:
            self._runs[record["prompt_id"]] = {"execution": record["id"], "started": int(time.time() * 1000)}
        with queue.mutex:
            queue.currently_running[KEY + record["id"]] = item
        self.server.queue_updated()

    def ended(self, record: dict) -> None:
        queue = self.server.prompt_queue
        with self._lock:
            run = self._runs.pop(record["prompt_id"], None)
        with queue.mutex:
            item = queue.currently_running.pop(KEY + record["id"], None)
            if item is None:
                return
            ended = int(time.time() * 1000)
            succeeded = record.get("state") == "succeeded"
            final = {"succeeded": "execution_success", "cancelled": "execution_interrupted"}.get(
                record.get("state"), "execution_error")
            messages = [["execution_start", {"prompt_id": record["prompt_id"],
                                             "timestamp": run["started"] if run else ended}],
                        [final, {"prompt_id": record["prompt_id"], "timestamp": ended,
                                 **({} if succeeded else {"exception_message": (record.get("error") or {})
                                                          .get("message", "")})}]]
            outputs = record.get("outputs") or {}
            history = queue.history
            if len(history) > 10000:  # ComfyUI's MAXIMUM_HISTORY_SIZE
                history.pop(next(iter(history)))
            history[record["prompt_id"]] = {
                "prompt": item, "outputs": outputs,
                "status": {"status_str": "success" if succeeded else "error", "completed": succeeded,
                           "messages": messages},
                "meta": {node: {"node_id": node, "display_node": node, "parent_node": None, "real_node_id": node}
                         for node in outputs},
            }
        self.server.queue_updated()

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
