"""Cancelling runs: who may, a run this process follows (stopped at its endpoint with its cancel token), one another
process follows (ended through the store: its follower's watch stops it), and that watch."""

from __future__ import annotations

import logging
import threading
import time

from .errors import Conflict, ExecutionCorrupt, Forbidden
from .execution_base import ExecutionBase
from .execution_pages import who
from .execution_records import FINAL, parse_record
from .identity import Owner, may_change_execution
from .records import ExecutionError, ExecutionRecord, ExecutionSummary
from .templates import now
from .unreadable import Unreadable, report

# A cancel request for an endpoint that cannot route it to the run (SageMaker): a marker the worker polls.
CANCEL_PREFIX = "async/cancel/"
WATCH_INTERVAL = 2.0  # how often the owner looks at its runs in flight for a cancel from another ComfyUI


class NotYourExecution(Forbidden):
    """Someone else's run: only a designer's single-user ComfyUI may cancel it (core/identity.py)."""

    code = "forbidden_for_role"


class ExecutionCancels(ExecutionBase):
    """Cancel a run: one this process follows, one another process follows (through the store), and the watch
    that sees a cancel from elsewhere of a run followed here."""

    def check_may_change(self, record: ExecutionRecord, role: str, user: str | None, shared: bool = False) -> None:
        """NotYourExecution (403) unless this request may cancel or otherwise change `record`: the one check every
        face's change of a run goes through (core/identity.py's may_change_execution)."""
        if may_change_execution(role, self.is_mine(record, user), shared):
            return
        owner = Owner.from_json(record.get("owner"))
        whose = "an older version's" if owner is None else \
            f"{owner.user} on {owner.name}'s" if owner.user else f"{owner.name}'s"
        if role == "designer":
            raise NotYourExecution(f"execution {record['id']} is {whose}: here (under --multi-user, or through the "
                             "gateway) each user cancels only their own runs; a designer cancels someone else's "
                             "from a single-user ComfyUI")
        raise NotYourExecution(f"execution {record['id']} is {whose}; only a designer can cancel someone else's run")

    def cancel(self, execution_id: str, role: str = "designer", user: str | None = None,
               shared: bool = False) -> ExecutionSummary:
        """Cancel a queued or running run: NotYourExecution unless the caller may (check_may_change), Conflict once
        it has ended. `shared`: several people act here as one role (--multi-user, the gateway)."""
        record = self.get(execution_id, user, localise=False)
        self.check_may_change(record, role, user, shared)
        if record["state"] in FINAL:
            raise Conflict(f"execution {execution_id} is {record['state']}; only a queued or running one can be "
                           "cancelled")
        by = who(self.owner_for(user))
        # Someone else's: the owner's page names who (web/js/run_notices.js).
        error: ExecutionError | None = None if self.is_mine(record, user) else \
            {"code": "cancelled", "message": f"cancelled by {by}", "by": by}
        return self._end(record, error, user)

    def end_runs_on(self, endpoint: str, user: str | None = None) -> int:
        """Before a person stops `endpoint` (the caller checked they may): its runs in flight, everyone's, end
        "stopped by <them>" instead of failing later with the worker's broken connection. How many it ended."""
        by = who(self.owner_for(user))
        ended = 0
        for execution_id in self.records.inflight():
            try:
                got = self.records.read(execution_id)
            except ExecutionCorrupt:
                continue
            if got is None or got[0].get("endpoint") != endpoint or got[0].get("state") in FINAL:
                continue
            error: ExecutionError = {"code": "endpoint_stopped", "message": f"stopped by {by}"}
            if not self.is_mine(got[0], user):
                error["by"] = by
            try:
                self._end(got[0], error, user)
                ended += 1
            except Conflict:  # it ended meanwhile
                continue
        return ended

    def _end(self, record: ExecutionRecord, error: ExecutionError | None, user: str | None) -> ExecutionSummary:
        """End a queued or running run cancelled (with `error`, else "cancelled by" the user): here if this
        process follows it, else through the store (its follower stops it)."""
        with self._lock:
            live = self._live.get(record["id"])
        if live is None:
            return self._cancel_elsewhere(record, user, error)
        was_running = live["state"] == "running"
        # Mark it first: the worker's "interrupted" answer may reach _invoke before the cancel call returns.
        self._update(live, state="cancelled", finished_at=now(),
                     error=error or {"code": "cancelled", "message": "cancelled by the user"})
        self._stop(live, was_running)
        return self.summary(live, user)

    def _stop(self, live: ExecutionRecord, was_running: bool) -> None:
        with self._lock:
            token = self._cancel_tokens.get(live["id"])
        endpoint = live.get("endpoint")
        if was_running and token is not None and endpoint:
            self.endpoints.cancel(endpoint, live["id"], token)
        self._to_page(live, "execution_interrupted", {"prompt_id": live["prompt_id"], "node_id": None,
                                                      "node_type": None, "executed": []})

    def _cancel_elsewhere(self, record: ExecutionRecord, user: str | None,
                          error: ExecutionError | None = None) -> ExecutionSummary:
        """A run another process follows (another ComfyUI, a gateway replica), checked by the caller: ended
        through compare-and-swap; its follower sees that and stops it at the worker with the run's cancel token,
        which only the follower holds (a run whose follower is gone runs on to its end there, its record
        cancelled)."""
        by = self.owner_for(user)

        def cancelled(stored: ExecutionRecord) -> ExecutionRecord | None:
            if stored.get("state") in FINAL:
                return None
            return {**stored, "state": "cancelled", "finished_at": now(),
                    "error": error or {"code": "cancelled", "message": f"cancelled by {by.name}"}}

        done = self.records.swap(record["id"], cancelled)
        if done is None:
            stored = self.records.read(record["id"])
            state = stored[0].get("state") if stored else "gone"
            raise Conflict(f"execution {record['id']} is {state}; only a queued or running one can be cancelled")
        self.records.ended(done, earlier=True)
        self._ended(done)
        self.send("sagemaker.execution", self.summary(done, user), None)
        return self.summary(done, user)

    def _watch(self) -> None:
        """While this ComfyUI has runs in flight, look at their records for a cancel from elsewhere."""
        with self._lock:
            if self._watcher is not None and self._watcher.is_alive():
                return
            self._watcher = threading.Thread(target=self._watch_loop, daemon=True, name="sagemaker-run-watch")
            self._watcher.start()

    def _watch_loop(self) -> None:
        while True:
            time.sleep(WATCH_INTERVAL)
            with self._lock:
                live = [(r, self._etags.get(r["id"])) for r in self._live.values()]
            if not live:
                return
            for record, etag in live:
                try:
                    got = self.store.get_if_changed(self.records.key(record["id"]), etag)
                except Exception:  # a passing store error: look again next time
                    continue
                if got is None or record["state"] in FINAL:
                    continue
                try:
                    stored = parse_record(got.data, self.records.key(record["id"]), record["id"])
                except Unreadable as err:  # rewritten unreadable: not a cancel; this run writes it again as it goes
                    report(err.key, err.reason)
                    continue
                if stored["state"] == "cancelled":
                    was_running = record["state"] == "running"
                    with self._lock:
                        record.update({"state": stored["state"], "finished_at": stored.get("finished_at"),
                                       "error": stored.get("error")})
                        self._etags[record["id"]] = got.etag
                    try:
                        self._stop(record, was_running)
                        self.send("sagemaker.execution", self.summary(record), None)
                    except Exception:  # this run's stop is its own: the watch goes on for the others
                        logging.getLogger("comfyui_sagemaker").exception(
                            "comfyui-sagemaker: stopping run %s, cancelled elsewhere, failed", record["id"])
