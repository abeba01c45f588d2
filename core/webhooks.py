"""Webhooks: when a run that named a `webhook_url` ends, a signed POST of its record to that URL.

- The URL is checked like a model download (core/net/fetch.py): http(s) only, and only globally routable
  addresses unless its host is in `webhook_allowed_hosts`; checked when the run is created (a refusal
  is a 400 before anything is spent) and again at each attempt, connecting to the address checked.
  Redirects are not followed (a 3xx is a failed attempt).
- The body is the run as its caller sees it: the v2 Job object for a job made through the Comfy API
  v2, else the execution record (`GET /sagemaker/executions/{id}`), in `{"type": "run.ended", ...}`.
- Signed in the Standard Webhooks scheme (core/webhook_signing.py): `webhook-id` is the execution id (the
  same on every retry), `webhook-timestamp` the attempt's time, `webhook-signature` covers both and the
  body. The secret is this process's own, never the store's (core/webhook_secret.py); a process without
  one refuses a `webhook_url` when the run is created.
- Retried with exponential backoff (1 s, 2 s, 4 s ... at most a minute apart) until a 2xx or until
  `webhook_retry_seconds` have passed. One attempt, from connecting to reading the answer, takes at most
  `webhook_timeout_seconds` in all (core/net/http_deadline.py), however slowly the receiver trickles.
- Delivery state is on the record (`webhook: {url, state: pending | sending | delivered | failed, attempts,
  last_status, last_error, delivered_at}`), written by compare-and-swap. The process that ends the run
  claims the delivery (pending -> sending), so it is sent once even with several processes on one
  store. An attempt is counted when it starts. Whatever goes wrong once claimed (no secret, an unreadable
  one, an unexpected error) is an attempt that failed with its reason, retried within the window, then
  `failed`: never left `sending` by a process that lives on (one that dies mid-delivery leaves it so).
"""

from __future__ import annotations

import http.client
import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterable

from typing_extensions import TypedDict, Unpack

from .errors import BadRequest
from .execution_records import ExecutionRecords
from .net.fetch import DownloadRefused, check_url, open_checked
from .net.http_deadline import Deadline
from .net.retry import Backoff
from .records import ExecutionRecord, Webhook, WebhookState
from .store import PreconditionFailed, Store
from .webhook_secret import LEGACY_KEY, WebhookSecret, WebhookSecretUnavailable
from .webhook_signing import HEADER_ID, HEADER_SIGNATURE, HEADER_TIMESTAMP, headers, verify

log = logging.getLogger("comfyui_sagemaker")

WEBHOOK_HOSTS = ("webhook_allowed_hosts", "Webhooks may also reach")  # its key, its label in the Connect panel

__all__ = ["HEADER_ID", "HEADER_SIGNATURE", "HEADER_TIMESTAMP", "WebhookRefused", "Webhooks", "pending", "verify"]

MAX_URL = 2048
MAX_DELAY_S = 60.0
ANSWER_BYTES = 64 * 1024  # read of a receiver's answer, so its connection ends cleanly; the rest is not wanted
FINAL_STATES = ("delivered", "failed")


class WebhookRefused(BadRequest):
    """The webhook URL is not allowed: not http(s), or an address inside this machine's network (loopback,
    private, link-local such as the cloud metadata service) whose host is not in webhook_allowed_hosts."""

    code = "webhook_refused"


class WebhookChange(TypedDict, total=False):
    """How a delivery goes on (Webhooks._set)."""

    state: WebhookState
    attempts: int
    last_status: int | None
    last_error: str | None
    delivered_at: str | None


class Webhooks:
    """Checks webhook URLs and delivers a run's end. `allowed_hosts`, `retry_seconds` and `timeout` are read
    at each use (the configuration applies without a restart); `body_for(record)` is what is sent, signed
    with `secret` (core/webhook_secret.py)."""

    def __init__(self, store: Store, records: ExecutionRecords, body_for: Callable[[ExecutionRecord], dict],
                 secret: WebhookSecret,
                 allowed_hosts: Callable[[], Iterable[str]] = tuple,
                 retry_seconds: Callable[[], float] = lambda: 900, timeout: Callable[[], float] = lambda: 10,
                 resolve=socket.getaddrinfo, sleep: Callable[[float], None] | None = None):
        self.store = store
        self.records = records
        self.body_for = body_for
        self.secret = secret
        self.allowed_hosts = allowed_hosts
        self.retry_seconds = retry_seconds
        self.timeout = timeout
        self.resolve = resolve
        self._stop = threading.Event()
        self.sleep = sleep or (lambda s: self._stop.wait(s))
        self._threads: set[threading.Thread] = set()
        self._lock = threading.Lock()
        self._legacy_checked = False

    # checking

    def check(self, url: object) -> str:
        """The URL, if a webhook may be sent to it from here now; WebhookRefused saying why, or
        WebhookSecretUnavailable when this process cannot sign one."""
        if not isinstance(url, str) or not url or len(url) > MAX_URL:
            raise WebhookRefused(f"webhook_url must be an http(s) URL of at most {MAX_URL} characters")
        try:
            check_url(url, self.allowed_hosts(), self.resolve, WEBHOOK_HOSTS)
        except DownloadRefused as err:
            raise WebhookRefused(f"webhook_url refused: {err.message}") from None
        try:
            self.secret.keys()
        except WebhookSecretUnavailable as err:
            raise WebhookSecretUnavailable(f"webhooks cannot be signed here: {err.message}") from None
        return url

    # delivering

    def ended(self, record: ExecutionRecord) -> None:
        """A run reached its final state here: deliver its webhook, if it has one still pending, in the
        background (never in the caller's way)."""
        hook = record.get("webhook")
        if hook is None or hook["state"] != "pending":
            return
        thread = threading.Thread(target=self._deliver, args=(record["id"],), daemon=True,
                                  name=f"sagemaker-webhook-{record['id'][:24]}")
        with self._lock:
            self._threads.add(thread)
        thread.start()

    def busy(self) -> int:
        with self._lock:
            self._threads = {t for t in self._threads if t.is_alive()}
            return len(self._threads)

    def drain(self, timeout: float) -> int:
        """Wait up to `timeout` s for deliveries in progress (a process stopping); the number left."""
        deadline = time.monotonic() + timeout
        while self.busy() and time.monotonic() < deadline:
            time.sleep(0.05)
        left = self.busy()
        if left:
            self._stop.set()  # the backoff waits end: the threads record where they are and stop
        return left

    def _set(self, execution_id: str, **fields: Unpack[WebhookChange]) -> ExecutionRecord | None:
        def change(stored: ExecutionRecord) -> ExecutionRecord | None:
            hook = stored.get("webhook")
            if hook is None:
                return None
            return {**stored, "webhook": {**hook, **fields}}

        try:
            return self.records.swap(execution_id, change)
        except PreconditionFailed:
            log.warning("comfyui-sagemaker: webhook state of %s not recorded (record busy)", execution_id)
            return None

    def _claim(self, execution_id: str) -> ExecutionRecord | None:
        def claimed(stored: ExecutionRecord) -> ExecutionRecord | None:
            hook = stored.get("webhook")
            if hook is None or hook["state"] != "pending":
                return None
            return {**stored, "webhook": {**hook, "state": "sending"}}

        try:
            return self.records.swap(execution_id, claimed)
        except PreconditionFailed:
            return None

    def _deliver(self, execution_id: str) -> None:
        try:
            record = self._claim(execution_id)
        except Exception:  # the store failed before anything was claimed: it stays pending
            log.exception("comfyui-sagemaker: webhook of %s not claimed", execution_id)
            return
        if record is None:
            return  # someone else sends it, or it was sent
        self._warn_legacy()
        attempts, status = 0, None
        error: str | None = "no attempt"
        try:
            body = json.dumps(self.body_for(record), separators=(",", ":")).encode()
            url = record["webhook"]["url"]
            # Read at each pause: a configuration applied meanwhile counts from then on.
            pauses = Backoff(1.0, cap=MAX_DELAY_S, deadline=self.retry_seconds).pauses()
            while True:
                attempts += 1
                self._set(execution_id, attempts=attempts)  # counted as it starts: a hung one shows
                status, error = self._attempt(url, execution_id, body)
                if status is not None and 200 <= status < 300:
                    self._set(execution_id, state="delivered", attempts=attempts, last_status=status, last_error=None,
                              delivered_at=_now())
                    return
                pause = next(pauses, None)
                if pause is None or self._stop.is_set():
                    break
                self._set(execution_id, last_status=status, last_error=error)
                self.sleep(pause)
        except Exception as err:  # a delivery never takes anything else down, and never stays `sending`
            log.exception("comfyui-sagemaker: webhook of %s failed", execution_id)
            status, error = None, f"could not be sent: {type(err).__name__}: {err}"
        try:
            self._set(execution_id, state="failed", attempts=attempts, last_status=status, last_error=error)
        except Exception:  # the store itself fails: nothing more can be recorded from here
            log.exception("comfyui-sagemaker: webhook state of %s not recorded", execution_id)

    def _attempt(self, url: str, execution_id: str, body: bytes) -> tuple[int | None, str | None]:
        """(HTTP status, None) or (status or None, why it is not a delivery). The whole attempt, from
        connecting to reading the answer, ends within `timeout` seconds."""
        try:
            signed = headers(self.secret.keys(), execution_id, body)
        except WebhookSecretUnavailable as err:
            return None, f"not signed: {err.message}"
        seconds = self.timeout()
        try:
            parts, address = check_url(url, self.allowed_hosts(), self.resolve, WEBHOOK_HOSTS)
            deadline = Deadline(seconds, f"timed out: no whole answer within {seconds:g} s")
            response = open_checked(parts, address, {"Content-Type": "application/json", **signed}, deadline,
                                    method="POST", body=body)
            try:
                response.read(ANSWER_BYTES)
            finally:
                response.close()
        except DownloadRefused as err:
            return None, err.message
        except (OSError, ValueError, http.client.HTTPException) as err:  # refused, reset, timed out, TLS, bad HTTP
            return None, f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
        if 200 <= response.status < 300:
            return response.status, None
        return response.status, f"answered HTTP {response.status}"

    def _warn_legacy(self) -> None:
        """Once: the store still holds the secret older versions signed with, which every reader of the store
        could read. It is not used; receivers that trust it trust anyone who can read the store."""
        if self._legacy_checked:
            return
        self._legacy_checked = True
        try:
            if self.store.exists(LEGACY_KEY):
                log.warning("comfyui-sagemaker: the store holds %s, the webhook secret of older versions, readable "
                            "by everyone who reads the store: it is no longer used. Give receivers this process's "
                            "secret (webhook-secret prints it; it deletes the old one)", LEGACY_KEY)
        except Exception:
            pass


def pending(url: str) -> Webhook:
    """The record's webhook field for a new run."""
    return {"url": url, "state": "pending", "attempts": 0, "last_status": None, "last_error": None,
            "delivered_at": None}


def _now() -> str:
    from .templates import now

    return now()
