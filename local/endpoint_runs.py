"""Runs on a local endpoint's worker: a prompt sent to its /invocations stream, a run's kept result asked for after
a ComfyUI restart (`resume`, worker/results.py), a cancel. The functions serve the team's shared endpoints of
other ComfyUIs too (local/shared_endpoints.py)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from ..core.cancel_tokens import TOKEN_FIELD
from ..core.endpoints import EndpointNotFound, EndpointNotReady, InvocationFailed, RunUnknown
from ..core.executions import RESUMABLE
from ..core.shapes import ShapeInvalid
from ..core.worker_contract import (
    KEEPS_HEADER,
    Invocation,
    ProtocolUnsupported,
    WorkerEvent,
    WorkerResult,
    read_result,
    read_stream,
    refusal,
)
from .endpoint_base import LocalEndpointsBase, LocalState, is_serving, token_header
from .inflight import Route

CANCEL_TIMEOUT_S = 10.0  # a whole exchange (core/net/http_deadline.py: a worker that trickles cannot hold it)


def invoke_worker(name: str, url: str, headers: dict[str, str], body: Invocation,
                  on_event: Callable[[WorkerEvent], None], on_lost: Callable[[], None],
                  resumable: bool = False) -> WorkerResult:
    """One prompt on a worker at `url` (its /invocations stream); `on_lost` when it stopped answering. With
    `resumable` (this ComfyUI's own worker), a worker that keeps results says so and the run's record carries
    what LocalEndpoints.resume needs to ask for its result in this ComfyUI's next life."""
    import requests  # lazily: importing the extension stays light

    try:
        # No redirects: the token header would follow them to wherever a worker's answer points.
        with requests.post(url + "/invocations", data=json.dumps(body).encode(), stream=True, timeout=(10, None),
                           allow_redirects=False,
                           headers={"Content-Type": "application/json", "Accept": "application/x-ndjson",
                                    **headers}) as r:
            if r.status_code != 200:
                return {"execution_id": body.get("execution_id"), "status": "failed", "outputs": {},
                        "error": refusal(r.content, r.status_code)}
            if resumable and r.headers.get(KEEPS_HEADER):  # accepted, and answered to this ComfyUI's next life
                kept = int(r.headers[KEEPS_HEADER]) if r.headers[KEEPS_HEADER].isdigit() else 0
                on_event({"type": RESUMABLE, "data": {"resume": {"kind": "local", "kept_s": kept}}})
            result = read_stream(r.iter_lines(), on_event)
    except (ShapeInvalid, ProtocolUnsupported) as err:
        raise InvocationFailed(f"endpoint {name}'s worker answered what this extension cannot read: {err}") \
            from None
    except (requests.RequestException, ValueError) as err:
        on_lost()
        raise InvocationFailed(f"endpoint {name} stopped answering: {err}") from None
    if result is not None:
        return result
    on_lost()
    raise InvocationFailed(f"endpoint {name} closed the stream without a result (did the worker die?)")


def cancel_at_worker(url: str | None, headers: dict[str, str], execution_id: str, token: str) -> None:
    """Ask the worker at `url` to interrupt (or skip) an execution, with the run's cancel token; best effort."""
    from http.client import HTTPException  # lazily: importing the extension stays light

    from ..core.net.http_deadline import request

    if not url:  # stopped or stopping: its worker runs nothing any more
        return
    try:
        request(url + "/invocations", "POST", {"action": "cancel", "execution_id": execution_id,
                                               TOKEN_FIELD: token}, headers, CANCEL_TIMEOUT_S)
    except (OSError, ValueError, HTTPException):
        pass


class EndpointRuns(LocalEndpointsBase):
    """LocalEndpoints' runs: each invocation is counted on the worker it went to (`_inflight`), so a cancel or a
    resume finds that worker after a redeploy, and a replaced worker is stopped once its runs have ended."""

    def invoke(self, name: str, body: Invocation, on_event: Callable[[WorkerEvent], None]) -> WorkerResult:
        self.check_ready(name)
        execution_id = body.get("execution_id") if isinstance(body, dict) else None
        with self._lock:  # the worker is read and counted as one step: a switch of workers comes before or after
            state = self._read(name)
            if state is None or not is_serving(state) or not state.get("pid"):
                raise EndpointNotReady(f"endpoint {name} is {state['state'] if state else 'gone'}")
            route = Route(state["pid"] or 0, state.get("url") or "", state.get("token"))
            self._inflight.begin(route, execution_id)

        def relay(event: WorkerEvent) -> None:
            resume = (event.get("data") or {}).get("resume") if event.get("type") == RESUMABLE else None
            if isinstance(resume, dict):  # the worker that keeps its result: a redeploy may replace it meanwhile
                event = {**event, "data": {**(event.get("data") or {}), "resume": {**resume, "worker_pid": route.pid}}}
            on_event(event)

        try:
            return invoke_worker(name, route.url, token_header(route.token), body, relay,
                                 lambda: self._check_process(name), resumable=True)
        finally:
            self._inflight.end(route, execution_id)

    def resume(self, name: str, execution_id: str, resume: dict[str, Any],
               on_event: Callable[[WorkerEvent], None]) -> WorkerResult:
        """A run this ComfyUI invoked before it was restarted: its worker kept its result (worker/results.py) and
        answers it, once the run has ended if it is still going. RunUnknown if the worker that ran it is gone
        (stopped, restarted, redeployed) or no longer has it. Its events were the stream's: none are relayed."""
        import requests  # lazily: importing the extension stays light

        state = self._read(name)
        if state is None:
            raise RunUnknown(f"endpoint {name} is gone")
        url, headers = self._worker_of(state, execution_id, resume)
        if not url:
            raise RunUnknown(f"endpoint {name} is {state['state'].lower()}, its worker that ran the run gone")
        try:
            # No read timeout: the worker answers when the run ends, within the run's own time limit.
            r = requests.post(url + "/invocations", data=json.dumps({"action": "result", "execution_id": execution_id}),
                              timeout=(10, None), headers={"Content-Type": "application/json", **headers})
        except requests.RequestException as err:
            raise RunUnknown(f"endpoint {name}'s worker did not answer ({err}): the worker that ran it is gone") \
                from None
        if r.status_code == 404:
            raise RunUnknown(f"endpoint {name}'s worker {refusal(r.content, 404).get('message')}")
        if r.status_code != 200:
            raise InvocationFailed(f"endpoint {name}'s worker would not give the result: "
                                   f"{refusal(r.content, r.status_code).get('message')}")
        try:
            return read_result(r.json())
        except (ValueError, RecursionError) as err:  # ShapeInvalid, ProtocolUnsupported, not JSON
            raise InvocationFailed(f"endpoint {name}'s worker answered what this extension cannot read: {err}") \
                from None

    def _worker_of(self, state: LocalState, execution_id: str, resume: dict[str, Any]) -> tuple[str | None,
                                                                                               dict[str, str]]:
        """Where to ask for a run's result: the worker it was sent to (this process's route, else the pid its
        record kept) while that one still runs; without either, the endpoint's serving worker (a record of an
        earlier version of this extension). (None, {}) when the worker that ran it is gone."""
        route = self._inflight.route(execution_id)
        if route is not None:
            return (route.url, token_header(route.token)) if self._running(state["name"], route.pid) else (None, {})
        pid = resume.get("worker_pid")
        nxt = state.get("next")
        if isinstance(pid, int) and nxt and nxt["pid"] == pid:
            return (nxt["url"], token_header(nxt["token"])) if self._running(state["name"], pid) else (None, {})
        if (isinstance(pid, int) and pid != state.get("pid")) or not self._running(state["name"], state.get("pid")):
            return None, {}  # replaced by a redeploy since (or stopped): its results went with it
        return state.get("url"), token_header(state.get("token"))

    def cancel(self, name: str, execution_id: str, token: str) -> None:
        """Ask the worker to interrupt (or skip) an execution, with the run's cancel token; best effort."""
        try:
            # The worker the run went to: after a redeploy, the old one may still be running it.
            route = self._inflight.route(execution_id)
            url, headers = (route.url, token_header(route.token)) if route else (self.get(name).get("url"),
                                                                          self._headers(name))
        except EndpointNotFound:
            return
        cancel_at_worker(url, headers, execution_id, token)

    def _check_process(self, name: str) -> None:
        state = self._read(name)
        if state and state["state"] == "InService" and not self._running(name, state.get("pid")):
            self._set(name, state="Failed", reason=f"worker exited; {self._last_lines(name)}")
