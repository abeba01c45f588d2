"""Idempotency keys (the `Idempotency-Key` header of the Comfy API v2), Stripe's semantics, kept in the store
so every process on it (ComfyUIs, gateway replicas) agrees:

- a retry with the same key and the same body replays the recorded response (no second run), where the
  caller wants that (assets); the Comfy API v2's jobs refuse it instead, as the protocol says, naming the job;
- the same key with another body is refused (`idempotency_key_reuse`, 422);
- a retry while the first request is still being handled is refused (`idempotency_conflict`, 409 with
  Retry-After); a claim older than STALE_S (its process died) is taken over;
- keys expire 24 hours after the first request (the Comfy API v2's window); a request that failed leaves no
  key behind (the retry runs anew); a record that cannot be read counts as expired (core/unreadable.py).

`idempotency/<scope>/<sha256 of the key>.json` holds {fingerprint, state, created_at, response}: created
exclusively by the first request, finished or removed by it with compare-and-swap. An expired one is taken
over by the next request with its key (lazily, on read) and removed by a designer's hourly maintenance
(`remove_expired`): each claim first writes an empty marker `idempotency/expiry/<UTC time>.<scope>.<sha256>`
in one folder whose names sort by time, so the sweep lists only what has expired (one LIST per 1,000, then a
GET and two DELETEs each; an idle store costs one LIST an hour). On S3 the stack's lifecycle rule expires
`idempotency/` after a day as well, at no request cost.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from ..errors import BadRequest, Conflict, SageMakerError
from ..store import KeyExists, KeyNotFound, PreconditionFailed, Store
from ..store import check_key as check_store_key
from ..unreadable import Unreadable, load_object, report

PREFIX = "idempotency/"
EXPIRY = PREFIX + "expiry/"
TTL_S = 24 * 3600
STALE_S = 600
RETRY_AFTER_S = 1


class IdempotencyKeyInvalid(BadRequest):
    """The Idempotency-Key header is empty, longer than 255 characters or not printable ASCII."""

    code = "invalid_idempotency_key"


class IdempotencyKeyReuse(SageMakerError):
    """This Idempotency-Key was used before (v2 jobs: with any body; elsewhere: with another body).
    `details` may name what the first request made."""

    code = "idempotency_key_reuse"

    def __init__(self, message: str, details: dict | None = None):
        super().__init__(message)
        self.details = details


class IdempotencyConflict(Conflict):
    """A request with this Idempotency-Key is still being handled; retry after a moment."""

    code = "idempotency_conflict"
    retry_after = RETRY_AFTER_S


@dataclass(frozen=True)
class Claim:
    key: str
    etag: str
    fingerprint: str
    created_at: float = 0.0


@dataclass(frozen=True)
class Replay:
    status: int
    response: dict


def fingerprint(body: object) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def check_key(key: str) -> str:
    if not key or len(key) > 255 or not key.isascii() or any(ord(c) < 0x20 or ord(c) == 0x7F for c in key):
        raise IdempotencyKeyInvalid("Idempotency-Key must be 1 to 255 printable ASCII characters")
    return key


def _held(data: bytes, key: str) -> dict | None:
    """A key's record, or None (logged once) if it cannot be read."""
    try:
        held = load_object(data, key)
        created = held.get("created_at") or 0
        if isinstance(created, bool) or not isinstance(created, (int, float)):
            raise Unreadable(key, "created_at is not a time")
    except Unreadable as err:
        report(err.key, err.reason)
        return None
    return {**held, "created_at": float(created)}


class Idempotency:
    def __init__(self, store: Store, clock=time.time):
        self.store = store
        self.clock = clock

    def _key(self, scope: str, key: str) -> str:
        return f"{PREFIX}{scope}/{hashlib.sha256(key.encode()).hexdigest()}.json"

    @staticmethod
    def _marker(store_key: str, created_at: float) -> str:
        scope, name = store_key[len(PREFIX):].rsplit("/", 1)
        when = datetime.fromtimestamp(created_at, timezone.utc).strftime("%Y%m%dT%H%M%S")
        return f"{EXPIRY}{when}.{scope}.{name.removesuffix('.json')}"

    def begin(self, scope: str, key: str, fp: str) -> Claim | Replay:
        """Claim the key for a new request, or the recorded response to replay. Raises
        IdempotencyKeyReuse (another body) or IdempotencyConflict (still in flight)."""
        store_key = self._key(scope, check_key(key))
        created = self.clock()
        record = {"fingerprint": fp, "state": "in_flight", "created_at": created, "response": None}
        marker = self._marker(store_key, created)
        self.store.put(marker, b"")  # before the claim: no claim is ever left that the sweep cannot find
        for _ in range(5):
            try:
                return Claim(store_key, self.store.create(store_key, json.dumps(record).encode()), fp, created)
            except KeyExists:
                pass
            try:
                got = self.store.get(store_key)
            except KeyNotFound:
                continue  # removed meanwhile (a failed first request): claim it
            held = _held(got.data, store_key)
            age = self.clock() - held["created_at"] if held else 0.0
            # One that cannot be read is taken over, as an expired one; lazily on read: an expired key is a new one.
            if held is None or age > TTL_S or (held.get("state") == "in_flight" and age > STALE_S):
                try:
                    return Claim(store_key, self.store.replace(store_key, json.dumps(record).encode(), got.etag), fp,
                                 created)
                except (PreconditionFailed, KeyNotFound):
                    continue
            if self._marker(store_key, float(held.get("created_at") or 0)) != marker:
                self._forget(marker)  # the key is held by an earlier request: its own marker stands
            if held.get("fingerprint") != fp:
                raise IdempotencyKeyReuse("this Idempotency-Key was used with another request body; use a new key "
                                          "for a new request")
            if held.get("state") == "done" and isinstance(held.get("response"), dict):
                return Replay(int(held.get("status") or 200), held["response"])
            raise IdempotencyConflict("a request with this Idempotency-Key is still being handled; retry shortly")
        raise IdempotencyConflict("this Idempotency-Key is contended; retry shortly")

    def finish(self, claim: Claim, status: int, response: Mapping[str, Any]) -> None:
        # created_at stays the first request's: the key expires 24 hours after it, where its marker says.
        record = {"fingerprint": claim.fingerprint, "state": "done", "created_at": claim.created_at or self.clock(),
                  "status": status, "response": response}
        try:
            self.store.replace(claim.key, json.dumps(record).encode(), claim.etag)
        except (PreconditionFailed, KeyNotFound):
            pass  # taken over as stale meanwhile: that request's answer stands

    def abandon(self, claim: Claim) -> None:
        """The request failed: free the key (a retry runs anew)."""
        try:
            current = self.store.get(claim.key)
            if current.etag == claim.etag:
                self.store.delete(claim.key)
                self._forget(self._marker(claim.key, claim.created_at))
        except KeyNotFound:
            pass

    def remove_expired(self, limit: int = 10_000) -> int:
        """Delete the keys past their 24 hours (a designer's maintenance): the expiry folder is read oldest
        first and only as far as what has expired, so the work grows with the expired keys, not all keys.
        A marker whose key was claimed again since (lazily, after expiry) just goes: that claim has its own."""
        cutoff = datetime.fromtimestamp(self.clock() - TTL_S, timezone.utc).strftime("%Y%m%dT%H%M%S")
        removed, after = 0, ""
        while removed < limit:
            page = self.store.list_page(EXPIRY, after, 1000)
            for marker in page:
                name = marker[len(EXPIRY):]
                if name[:15] >= cutoff:
                    return removed
                store_key = self._key_of(name)
                if store_key is not None:
                    try:
                        held = json.loads(self.store.get(store_key).data)
                        if self.clock() - float(held.get("created_at") or 0) > TTL_S:
                            self._forget(store_key)
                            removed += 1
                    except KeyNotFound:
                        pass
                    except (ValueError, TypeError, AttributeError):  # unreadable: it can only be expired junk
                        self._forget(store_key)
                        removed += 1
                self._forget(marker)
            if len(page) < 1000:
                return removed
            after = page[-1]
        return removed

    @staticmethod
    def _key_of(marker_name: str) -> str | None:
        """The record key a marker name (`<time>.<scope>.<sha256>`) stands for; None if it is not one."""
        rest, _, digest = marker_name[16:].rpartition(".")
        if len(digest) != 64 or not rest or any(c not in "0123456789abcdef" for c in digest):
            return None
        try:
            return check_store_key(f"{PREFIX}{rest}/{digest}.json")
        except ValueError:
            return None

    def _forget(self, key: str) -> None:
        try:
            self.store.delete(key)
        except KeyNotFound:
            pass
