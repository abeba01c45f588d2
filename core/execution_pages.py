"""What pages are shown of a run beyond its record: the title and details of a run that failed outside a node
(ComfyUI's execution_error), the ComfyUI queue a run is mirrored in, and how a run names a person."""

from __future__ import annotations

from .identity import Owner
from .records import ExecutionError, ExecutionRecord

# A run that failed outside a node, as ComfyUI's error dialog titles it (its exception_type).
FAILURE_TITLES = {
    "prompt_invalid": "Prompt refused by the endpoint", "timeout": "Run took too long", "cancelled": "Cancelled",
    "input_missing": "Input file missing on the endpoint", "worker_error": "Endpoint error",
    "bad_output": "Output could not be trusted", "outputs_missing": "Outputs not found",
    "endpoint_not_ready": "Endpoint not ready", "invocation_failed": "Endpoint did not answer",
}


def page_error(prompt_id: str, error: ExecutionError | None) -> dict:
    """ComfyUI's execution_error for a run that failed outside a node: the node the endpoint's own
    validation refused, if it said so, and a title in the user's words."""
    error = error or {"code": "error"}
    node_id = error.get("node_id")
    node_type = error.get("node_type")
    message = error.get("message") or "the remote run failed"
    details = error.get("details")
    node_errors = details.get("node_errors") if isinstance(details, dict) else None
    if isinstance(node_errors, dict) and node_errors:
        node_id, entry = next(iter(node_errors.items()))
        node_type = entry.get("class_type") if isinstance(entry, dict) else None
        reasons = [f"{e.get('message')}: {e.get('details')}" for e in (entry or {}).get("errors", [])
                   if isinstance(e, dict)]
        message = "; ".join(reasons) or message
    return {"prompt_id": prompt_id, "node_id": node_id, "node_type": node_type,
            "exception_type": FAILURE_TITLES.get(error["code"], "Remote run failed"),
            "exception_message": message, "traceback": [], "executed": [], "current_inputs": {},
            "current_outputs": {}}


class NativeQueue:
    """ComfyUI's own queue and history, told of this ComfyUI's remote runs (the ComfyUI face implements
    it), so they count as running, can be cancelled from ComfyUI's own button and stay in its history.
    None of its methods raises: a host whose queue is not the shape the face knows is left alone."""

    @property
    def status(self) -> str:
        """"ok", or "degraded: <why>" where the running ComfyUI's queue is not the shape the face knows (health
        shows it)."""
        return "absent: no ComfyUI queue"

    def started(self, record: ExecutionRecord, prompt: dict, workflow: object, outputs: list[str] | None) -> None:
        """A run was accepted (queued on its endpoint)."""

    def ended(self, record: ExecutionRecord) -> None:
        """A run ended (succeeded, failed or cancelled); its outputs are in record["outputs"]."""

    def execution_of(self, prompt_id: str) -> str | None:
        """The execution id of a remote run of this ComfyUI in flight, by its prompt id."""
        return None


NoNativeQueue = NativeQueue


def who(owner: Owner) -> str:
    """A person as runs name them: the ComfyUI's display name, with its --multi-user user if any."""
    return f"{owner.name} ({owner.user})" if owner.user else owner.name
