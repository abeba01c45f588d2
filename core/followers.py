"""Runs followed by a process, and the runs of a process that died.

A process that follows runs (a ComfyUI, a gateway replica: it waits on their endpoint, relays their events,
writes how they end) holds a follower lease while it follows any: `executions/inflight/<instance>-<token>.json`
(core/leases.py), expiring TTL s after its last renewal, renewed every TTL/4 s, removed when it follows no
run. Each run's record names its follower (`follower`) and so does the run's in-flight marker
(core/execution_records.py: `<owner>/<id>.<follower>`); the lease is made before that marker and removed after
the last one. Both sit in the in-flight folder, where an artist's IAM policy lets it write
(`executions/inflight/<its instance>*`).

A process killed outright (SIGKILL, power loss, the OOM killer) stops renewing. Every process sweeps every
TTL/2 s: one listing of the in-flight folder (its requests grow with the runs in flight, never with the
records: on an idle store one LIST per period), and one GET of a lease whose listing stamp changed since the
last look. A ComfyUI sweeps at IDLE_PERIOD s instead while no page looks at it (core/pages.py): the store's
one request a minute when nobody looks. A follower whose lease has expired or is gone is dead: each of its
runs is taken over here when its endpoint can still answer for it (an async SageMaker run: its result lands in
S3; a local one: its worker keeps the result a while), else failed with the reason, by compare-and-swap
(core/execution_takeover.py, `take_over`); then its markers and
lease go. A process takes the runs of its own instance (a gateway's replicas are one instance; a ComfyUI's
--multi-user users are its own), and a designer's those of everyone (core/identity.py: nothing else rewrites
another owner's record).
Wall clocks are compared (expiry times, as the deploy lease does): keep the machines' clocks in sync.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import uuid
from collections.abc import Callable

from .execution_records import ID_RE, INFLIGHT
from .identity import Owner
from .leases import Lease, Leases, expired
from .store import KeyNotFound, Store

TTL = 60.0
# The lease outlives the last run it follows by this much: runs one after another (a queue worked through) share
# one lease instead of each creating, reading and removing its own (4 requests a run).
LINGER_S = 2.0
IDLE_PERIOD = 60.0  # while no page looks: a dead follower's runs end within TTL + IDLE_PERIOD
FOLLOWER_ID = re.compile(r"[a-z0-9]+-[0-9a-f]{12}")  # <instance id>-<token>
WHAT = "following runs"
log = logging.getLogger("comfyui_sagemaker")


def lease_key(follower: str) -> str:
    return f"{INFLIGHT}{follower}.json"


class Follower:
    """This process as the follower of runs: its lease, held while it follows at least one."""

    def __init__(self, store: Store, owner: Owner, ttl: float = TTL):
        self.owner = owner
        self.ttl = ttl
        self.leases = Leases(store, owner, ttl, ttl / 4)
        self.id = self._new_id()
        self._lease: Lease | None = None
        self._count = 0
        self._lock = threading.Lock()
        self._linger: threading.Timer | None = None  # removes the lease LINGER_S s after the last run ended

    def _new_id(self) -> str:
        return f"{self.owner.instance}-{uuid.uuid4().hex[:12]}"

    def hold(self) -> str:
        """One more run followed here; returns the follower id its record names (the lease exists by then)."""
        with self._lock:
            self._stay()
            if self._lease is not None and self._lease.lost.is_set():
                # Judged dead meanwhile (a pause longer than the TTL): its runs were handled; start afresh.
                self._lease.stop.set()
                self._lease, self.id = None, self._new_id()
            if self._lease is None:
                self._lease = self.leases.hold(lease_key(self.id), WHAT)
            self._count += 1
            return self.id

    def drop(self) -> None:
        """A run followed here ended (its record and markers say so): the last one removes the lease."""
        with self._lock:
            if self._count == 0:
                return
            self._count -= 1
            if self._count == 0 and self._lease is not None:
                self._linger = threading.Timer(LINGER_S, self._idle)
                self._linger.daemon = True
                self._linger.start()

    def _stay(self) -> None:
        if self._linger is not None:
            self._linger.cancel()
            self._linger = None

    def _idle(self) -> None:
        with self._lock:
            if self._count == 0 and self._linger is not None:
                self._linger = None
                self._release()

    def close(self) -> None:
        """This process stops following (a gateway replica stopping, once its runs are ended)."""
        with self._lock:
            self._stay()
            self._count = 0
            self._release()

    def _release(self) -> None:
        lease, self._lease = self._lease, None
        if lease is not None:
            try:
                self.leases.release(lease, remove=True)
            except Exception:  # left behind, it expires; the next sweep removes it
                log.warning("comfyui-sagemaker: could not remove the follower lease %s", lease.key, exc_info=True)


class Sweeper:
    """Every `period` s, the runs of followers that died: taken over or failed (see the module's text).

    `take_over(execution_id, is_dead, reason)` is the execution service's; `may_take(follower id)` says
    whether this process may change the runs a follower left (its own instance's; a designer's: anyone's)."""

    def __init__(self, store: Store, follower: Follower, take_over: Callable[[str, Callable, str], str],
                 may_take: Callable[[str], bool], period: float | None = None):
        self.store = store
        self.follower = follower
        self.take_over = take_over
        self.may_take = may_take
        self.period = period if period is not None else follower.ttl / 2
        self._looking: Callable[[], bool] = lambda: True
        self._wait: Callable[[threading.Event, float], object] = lambda event, seconds: event.wait(seconds)
        self._seen: dict[str, tuple[str, dict | None]] = {}  # lease key -> (listing stamp, body read then)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def pace(self, looking: Callable[[], bool],
             wait: Callable[[threading.Event, float], object] | None = None) -> None:
        """Before start: sweep every `period` s while `looking()` (a page looks), else every IDLE_PERIOD s;
        `wait(event, seconds)` sleeps (tests: a fake clock's)."""
        self._looking = looking
        if wait is not None:
            self._wait = wait

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, daemon=True, name="sagemaker-run-sweep")
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _loop(self) -> None:
        while True:
            self._wait(self._stop, self.period if self._looking() else max(self.period, IDLE_PERIOD))
            if self._stop.is_set():
                return
            try:
                self.sweep()
            except Exception:  # a passing store error: the next period looks again
                log.warning("comfyui-sagemaker: looking for runs whose follower stopped failed", exc_info=True)

    def sweep(self) -> int:
        """One look; the number of runs taken over or failed."""
        stamps = self.store.list_stamps(INFLIGHT)
        leases: dict[str, str] = {}
        followed: dict[str, list[tuple[str, str]]] = {}  # follower -> [(execution id, marker key)]
        for key, stamp in stamps.items():
            folder, _, name = key[len(INFLIGHT):].rpartition("/")
            if not folder and name.endswith(".json") and FOLLOWER_ID.fullmatch(name[:-5]):
                leases[name[:-5]] = stamp
                continue
            execution_id, _, follower = name.partition(".")
            if folder and ID_RE.fullmatch(execution_id) and FOLLOWER_ID.fullmatch(follower):
                followed.setdefault(follower, []).append((execution_id, key))
        self._seen = {k: v for k, v in self._seen.items() if k in stamps}
        handled = 0
        for follower in sorted(set(leases) | set(followed)):
            if follower == self.follower.id or not self.may_take(follower):
                continue
            lease = self._lease(follower, leases.get(follower))
            if lease is not None and not expired(lease):
                continue
            holder = (lease or {}).get("holder") or {}
            who = f" ({holder['name']})" if isinstance(holder, dict) and holder.get("name") else ""
            reason = f"the process following this run{who} stopped before it ended"
            for execution_id, marker in followed.get(follower, []):
                outcome = self.take_over(execution_id, lambda f, dead=follower: f == dead, reason)
                handled += outcome in ("failed", "followed")
                if outcome == "stale":  # no record names this follower (any more): the marker alone is left
                    self._delete(marker)
            if follower not in followed or all(self._gone(m) for _, m in followed[follower]):
                self._delete(lease_key(follower))
        return handled

    def _lease(self, follower: str, stamp: str | None) -> dict | None:
        """The lease's body, or None when it is gone: read again only when its stamp changed. A marker seen
        without a lease is checked with a read: the lease is made before the marker, so gone means gone."""
        key = lease_key(follower)
        if stamp is not None and key in self._seen and self._seen[key][0] == stamp:
            return self._seen[key][1]
        try:
            body = json.loads(self.store.get(key).data)
        except KeyNotFound:
            return None
        except ValueError:
            body = {}  # unreadable: its holder cannot renew it either
        if stamp is not None:
            self._seen[key] = (stamp, body)
        return body

    def _gone(self, key: str) -> bool:
        return not self.store.exists(key)

    def _delete(self, key: str) -> None:
        try:
            self.store.delete(key)
        except KeyNotFound:
            pass
