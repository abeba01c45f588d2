"""Leases in the store: an object with an expiry, renewed while its holder lives.

One deploy of an environment at a time, across every ComfyUI on the store: a lease object
(`environments/<name>/lease.json`) taken with an exclusive create (or, once expired or released,
a compare-and-swap), renewed while the work runs, released at its end. A ComfyUI killed mid-publish
stops renewing: its lease expires and the next publish proceeds.

A process following runs holds a lease of its own (`hold`, a key nobody else creates; core/followers.py):
others read its expiry (`read`, `expired`) to tell a live follower from a dead one.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import dataclass, field

from .errors import Conflict
from .identity import Owner
from .store import KeyExists, KeyNotFound, PreconditionFailed, Store
from .unreadable import Unreadable, load_object, report

TTL = 120.0  # seconds a lease lives without renewal
RENEW = 30.0


class DeployInProgress(Conflict):
    """Another publish or deploy of this environment holds its lease."""

    code = "deploy_in_progress"


@dataclass
class Lease:
    key: str
    token: str
    etag: str
    what: str
    stop: threading.Event
    lock: threading.Lock
    lost: threading.Event = field(default_factory=threading.Event)  # it could not be renewed: someone took it


def _held(data: bytes, key: str) -> dict | None:
    """A lease's content, or None (logged once) if it cannot be read: such a lease counts as expired, taken over
    by compare-and-swap (a lease only keeps two deploys apart; one nobody can read must not stop them all)."""
    try:
        held = load_object(data, key)
        expires = held.get("expires_at", 0)
        if isinstance(expires, bool) or not isinstance(expires, (int, float)) \
                or not isinstance(held.get("holder", {}), dict) or not isinstance(held.get("what", ""), str):
            raise Unreadable(key, "not a lease (holder, what, expires_at)")
    except Unreadable as err:
        report(err.key, err.reason)
        return None
    return {**held, "expires_at": expires}


def lease_key(environment: str) -> str:
    return f"environments/{environment.lower()}/lease.json"


def expired(data: object, now: float | None = None) -> bool:
    """Whether a lease object's body (parsed) is past its expiry; an unreadable one counts as expired: its
    holder cannot renew it either (its compare-and-swap would fail)."""
    expires = data.get("expires_at") if isinstance(data, dict) else None
    if isinstance(expires, bool) or not isinstance(expires, (int, float)):
        return True
    return expires <= (time.time() if now is None else now)


class Leases:
    def __init__(self, store: Store, holder: Owner, ttl: float = TTL, renew_every: float = RENEW):
        self.store = store
        self.holder = holder
        self.ttl = ttl
        self.renew_every = renew_every

    def _body(self, token: str, what: str, released: bool = False) -> bytes:
        return json.dumps({"holder": self.holder.to_json(), "token": token, "what": what,
                           "expires_at": 0 if released else time.time() + self.ttl}).encode()

    def hold(self, key: str, what: str) -> Lease:
        """A lease under a key only this holder creates (no contention: KeyExists would be a bug), renewed
        until released; `lost` is set if a renewal finds it gone or changed (someone judged it expired)."""
        token = uuid.uuid4().hex
        etag = self.store.create(key, self._body(token, what))
        lease = Lease(key, token, etag, what, threading.Event(), threading.Lock())
        threading.Thread(target=self._keep, args=(lease,), daemon=True, name=f"lease-{key.rsplit('/', 1)[-1]}").start()
        return lease

    def current(self, environment: str) -> dict | None:
        """The lease in force (unexpired, unreleased), or None (also for one that cannot be read)."""
        key = lease_key(environment)
        try:
            data = _held(self.store.get(key).data, key)
        except KeyNotFound:
            return None
        return data if data is not None and data["expires_at"] > time.time() else None

    def acquire(self, environment: str, what: str) -> Lease:
        key, token = lease_key(environment), uuid.uuid4().hex
        try:
            etag = self.store.create(key, self._body(token, what))
        except KeyExists:
            got = self.store.get(key)
            held = _held(got.data, key) or {"expires_at": 0}  # unreadable: as expired, taken over below
            if held["expires_at"] > time.time():
                who = (held.get("holder") or {}).get("name", "another ComfyUI")
                raise DeployInProgress(f"{who} is {held.get('what', 'deploying')} environment {environment!r}; "
                                       "wait until it ends") from None
            try:  # expired or released: take it over, unless someone else does first
                etag = self.store.replace(key, self._body(token, what), if_match=got.etag)
            except PreconditionFailed:
                raise DeployInProgress(f"someone else just started {what} environment {environment!r}") from None
        lease = Lease(key, token, etag, what, threading.Event(), threading.Lock())
        threading.Thread(target=self._keep, args=(lease,), daemon=True, name=f"lease-{environment}").start()
        return lease

    def _keep(self, lease: Lease) -> None:
        while not lease.stop.wait(self.renew_every):
            try:
                with lease.lock:
                    if lease.stop.is_set():
                        return
                    lease.etag = self.store.replace(lease.key, self._body(lease.token, lease.what),
                                                    if_match=lease.etag)
            except (PreconditionFailed, KeyNotFound):
                lease.lost.set()
                return  # lost (it expired and was taken over): the holder's next store write will say so
            except Exception:
                continue  # a passing store error: try again before the lease runs out

    def release(self, lease: Lease, remove: bool = False) -> None:
        """Stop renewing; mark it released (anyone may take it now), or with `remove` delete it (a lease of
        a key only its holder uses: nothing is left behind)."""
        lease.stop.set()
        try:
            with lease.lock:
                if remove:
                    if self.store.get(lease.key).etag == lease.etag:
                        self.store.discard(lease.key)
                else:
                    self.store.replace(lease.key, self._body(lease.token, lease.what, released=True),
                                       if_match=lease.etag)
        except (PreconditionFailed, KeyNotFound):
            pass  # it expired and someone took it: theirs now
