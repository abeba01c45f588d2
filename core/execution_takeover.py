"""Runs whose follower died (a ComfyUI restarted, a process killed): taken over (core/followers.py) or failed, by
compare-and-swap; and runs abandoned longer than their endpoint's time limit, expired (core/run_expiry.py)."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable

from . import followers, run_expiry
from .endpoints import RunUnknown
from .errors import ExecutionCorrupt, SageMakerError
from .execution_invocation import ExecutionInvocations, endpoint_of
from .execution_records import FINAL
from .identity import Owner
from .leases import expired as leases_expired
from .records import ExecutionRecord
from .store import KeyNotFound
from .templates import now
from .worker_contract import WorkerResult

# Why a run taken over (take_over) failed, after the reason its follower stopped: a record says which.
NEVER_SENT = "it never reached its endpoint"
LOST_WITH_CONNECTION = "the result was lost with the connection"  # a stream (real-time) died with its follower
UNKNOWN_TO_ENDPOINT = "the endpoint no longer knows the run"  # followed again, but its result is gone there


class ExecutionTakeOvers(ExecutionInvocations):
    """Runs whose follower died: followed again from here where their endpoint can answer, else failed; and runs
    abandoned past their endpoint's time limit, expired."""

    def _resume(self, record: ExecutionRecord, reason: str) -> None:
        """A run taken over from a follower that died: its endpoint answers for it from where it is. Its cancel
        token died with that follower: the endpoint cannot be asked to stop it (it runs to its end there)."""
        def answer() -> WorkerResult:
            try:
                return self.endpoints.resume(endpoint_of(record), record["id"], record["resume"],
                                             lambda e: self._relay(record, e))
            except RunUnknown as err:
                return {"status": "failed", "outputs": {},
                        "error": {"code": "interrupted", "message": f"{reason}: {UNKNOWN_TO_ENDPOINT} ({err.message})"}}

        self._follow(record, answer)

    def fail_interrupted(self) -> int:
        """At start-up: this ComfyUI's runs (its --multi-user users' too) left queued or running by its previous
        life are taken over (take_over: followed again where their endpoint can answer, else failed with the
        reason). A run another process took over meanwhile is that one's; others' runs are theirs. The work
        grows with the runs in flight only."""
        mine = self.owner.instance + "-"

        def previous_life(follower: str | None) -> bool:  # a record of an older version names no follower
            return follower is None or (follower.startswith(mine) and follower != self.follower.id)

        return sum(self.take_over(execution_id, previous_life, "ComfyUI restarted while this execution ran")
                   in ("failed", "followed") for execution_id in self.records.inflight_of(self.owner.instance))

    def take_over(self, execution_id: str, is_dead: Callable[[str | None], bool], reason: str) -> str:
        """A run whose follower died (`is_dead(its follower id)`): followed from here if its endpoint can still
        answer for it (Endpoints.resume: an async run's result in S3, a local worker's kept result), else failed
        with `reason` and why its result is lost (NEVER_SENT, LOST_WITH_CONNECTION; UNKNOWN_TO_ENDPOINT once
        followed), by compare-and-swap: nothing done and paid for is thrown away. Returns "followed",
        "failed", "ended" (it had ended: its in-flight markers are cleared), "stale" (no record, or another
        follower has it) or "live" (this process follows it)."""
        if self.live(execution_id):
            return "live"
        try:
            got = self.records.read(execution_id)
        except ExecutionCorrupt:  # logged; it can be neither failed nor followed: it leaves the in-flight folder
            self.records.forget_inflight(execution_id)
            return "ended"
        if got is None:
            return "stale"
        record = got[0]
        if record.get("state") in FINAL:
            self.records.ended(record, earlier=True)
            return "ended"
        if record.get("state") not in ("queued", "running") or not is_dead(record.get("follower")):
            return "stale"
        if isinstance(record.get("resume"), dict):
            return self._follow_again(record, is_dead, reason)

        def failed(stored: ExecutionRecord) -> ExecutionRecord | None:
            if stored.get("state") not in ("queued", "running") or not is_dead(stored.get("follower")):
                return None
            # No endpoint said it could answer for the run to another follower: queued, it was never sent;
            # running, its answer was a stream to the follower that died (the endpoint runs it on to its end).
            why = NEVER_SENT if stored.get("state") == "queued" else LOST_WITH_CONNECTION
            return {**stored, "state": "failed", "finished_at": now(), "error": {"code": "interrupted",
                                                                                 "message": f"{reason}: {why}"}}

        done = self.records.swap(execution_id, failed)
        if done is None:
            return "stale"
        # Its cancel token died with its follower: the endpoint runs it to its end (within its time limit).
        self._ended_orphan(done)
        return "failed"

    def _ended_orphan(self, done: ExecutionRecord) -> None:
        """A run another process followed was ended here: its markers, its webhook, its pages told."""
        self.records.ended(done, earlier=True)
        self._ended(done)
        summary = self.summary(done)
        self.send("sagemaker.execution", summary, None)
        self._tell(done["id"], "sagemaker.execution", summary)

    def expire_abandoned(self, clock: Callable[[], float] = time.time) -> int:
        """A designer's maintenance (core/run_expiry.py): every run in flight whose follower's lease is gone or
        expired and that began longer ago than its endpoint's run time limit is failed, "expired: ComfyUI <its
        owner's instance> did not come back within <limit>", by compare-and-swap (a follower that came back, or a
        sweep that took the run over meanwhile, wins). The number expired."""
        limits: dict[tuple[str, int | None], float] = {}
        expired = 0
        for execution_id in self.records.inflight():
            if self.live(execution_id):
                continue
            try:
                got = self.records.read(execution_id)
            except ExecutionCorrupt:  # logged; a person looks at it
                continue
            record = got[0] if got else None
            if record is None or record.get("state") not in ("queued", "running"):
                continue
            follower = record.get("follower")
            if follower and self._follows(follower, clock()):
                continue
            limit = self._run_limit(record, limits)
            began = run_expiry.began(record)
            if began is None or clock() - began < limit:
                continue
            owner = Owner.from_json(record.get("owner"))
            why = run_expiry.reason(owner.instance if owner else "unknown", limit)

            def expire(stored: ExecutionRecord, follower: str | None = follower,
                       why: str = why) -> ExecutionRecord | None:
                if stored.get("state") not in ("queued", "running") or stored.get("follower") != follower:
                    return None
                return {**stored, "state": "failed", "finished_at": now(),
                        "error": {"code": run_expiry.CODE, "message": why}}

            done = self.records.swap(execution_id, expire)
            if done is not None:
                self._ended_orphan(done)
                expired += 1
        if expired:
            logging.getLogger("comfyui_sagemaker").info("comfyui-sagemaker: expired %d run(s) of ComfyUIs that did "
                                                        "not come back", expired)
        return expired

    def _follows(self, follower: str, at: float) -> bool:
        """Whether `follower`'s lease (its process's heartbeat) is held and unexpired at `at`."""
        try:
            body = json.loads(self.store.get(followers.lease_key(follower)).data)
        except KeyNotFound:
            return False
        except ValueError:  # unreadable: its holder cannot renew it either
            return False
        return not leases_expired(body, at)

    def _run_limit(self, record: ExecutionRecord, limits: dict[tuple[str, int | None], float]) -> float:
        """The run time limit of the endpoint the run went to, by its environment version's config."""
        name, version = record.get("environment") or "", record.get("environment_version")
        if (name, version) not in limits:
            try:
                manifest = self.environments.get(name, version) if name else None
            except SageMakerError:  # deleted, unreadable: the longest limit
                manifest = None
            limits[(name, version)] = run_expiry.limit_of(manifest.get("endpoint") if manifest else None)
        return limits[(name, version)]

    def _follow_again(self, record: ExecutionRecord, is_dead: Callable[[str | None], bool], reason: str) -> str:
        me = self.follower.hold()
        self.records.mark_follower(record, me)  # before the record names it: see core/execution_records.py

        def claimed(stored: ExecutionRecord) -> ExecutionRecord | None:
            if stored.get("state") not in ("queued", "running") or not is_dead(stored.get("follower")):
                return None
            return {**stored, "follower": me, "note": f"followed again: {reason}"}

        mine = None
        try:
            mine = self.records.swap(record["id"], claimed)
        finally:
            if mine is None:  # lost the race, or the store failed: not ours to follow
                self.records.unmark_follower(record, me)
                self.follower.drop()
        if mine is None:
            return "stale"
        self.records.unmark_follower(record, record.get("follower"))
        self.records.unmark_earlier(record, record.get("follower"))  # from here on its marker is of this layout
        got = self.records.read(record["id"])
        with self._lock:
            self._live[record["id"]] = mine
            self._etags[record["id"]] = got[1] if got else ""
        self._watch()
        self.pool.submit(self._resume, mine, reason)
        return "followed"
