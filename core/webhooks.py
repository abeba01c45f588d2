"""Webhooks: when a run that named a `webhook_url` ends, a signed POST of its record to that URL.

- The URL is checked like a model download (core/fetch.py): http(s) only, and only globally routable
  addresses unless its host is in `webhook_allowed_hosts`; checked when the run is created (a refusal
  is a 400 before anything is spent) and again at each attempt, connecting to the address checked.
  Redirects are not followed (a 3xx is a failed attempt).
- The body is the run as its caller sees it: the v2 Job object for a job made through the Comfy API
  v2, else the execution record (`GET /sagemaker/executions/{id}`), in `{"type": "run.ended", ...}`.
- Signed with HMAC-SHA256 under a secret per store (`webhooks/secret.json`, made once by whoever needs
  it first; `python <extension> webhook-secret` prints it): headers `X-SageMaker-Webhook-Id` (the
  execution id: the same on every retry, for the receiver's de-duplication), `X-SageMaker-Webhook-Timestamp`
  (Unix seconds of this attempt) and `X-SageMaker-Webhook-Signature: v1=<hex HMAC-SHA256(secret,
  "<timestamp>.<body>")>`. A receiver recomputes it over the raw body, compares in constant time, and
  refuses a timestamp more than five minutes away from its clock (a replayed request). `verify` does it.
- Retried with exponential backoff (1 s, 2 s, 4 s ... at most a minute apart) until a 2xx or until
  `webhook_retry_seconds` have passed. One attempt, from connecting to reading the answer, takes at most
  `webhook_timeout_seconds` in all (core/http_deadline.py), however slowly the receiver trickles.
- Delivery state is on the record (`webhook: {url, state: pending | sending | delivered | failed, attempts,
  last_status, last_error, delivered_at}`), written by compare-and-swap. The process that ends the run
  claims the delivery (pending -> sending), so it is sent once even with several processes on one
  store. An attempt is counted when it starts. Whatever goes wrong once claimed (a secret that cannot be
  read, an unexpected error) is an attempt that failed with its reason, retried within the window, then
  `failed`: never left `sending` by a process that lives on (one that dies mid-delivery leaves it so).
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import logging
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterable, Mapping

from .errors import BadRequest
from .fetch import DownloadRefused, check_url, open_checked
from .http_deadline import Deadline
from .store import KeyExists, KeyNotFound, PreconditionFailed, Store

log = logging.getLogger("comfyui_sagemaker")

SECRET_KEY = "webhooks/secret.json"
HEADER_ID = "X-SageMaker-Webhook-Id"
HEADER_TIMESTAMP = "X-SageMaker-Webhook-Timestamp"
HEADER_SIGNATURE = "X-SageMaker-Webhook-Signature"
TOLERANCE_S = 300  # a receiver refuses timestamps further than this from its clock
MAX_URL = 2048
MAX_DELAY_S = 60.0
ANSWER_BYTES = 64 * 1024  # read of a receiver's answer, so its connection ends cleanly; the rest is not wanted
FINAL_STATES = ("delivered", "failed")


class WebhookRefused(BadRequest):
    """The webhook URL is not allowed: not http(s), or an address inside this machine's network (loopback,
    private, link-local such as the cloud metadata service) whose host is not in webhook_allowed_hosts."""

    code = "webhook_refused"


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The signature header's value for `body` sent at `timestamp`."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"v1={mac}"


def verify(secret: str, headers: Mapping[str, str], body: bytes, now: float | None = None,
           tolerance: float = TOLERANCE_S) -> bool:
    """What a receiver does: the signature matches the raw body and the timestamp is recent."""
    lowered = {k.lower(): v for k, v in headers.items()}
    try:
        timestamp = int(lowered.get(HEADER_TIMESTAMP.lower(), ""))
    except ValueError:
        return False
    if abs((time.time() if now is None else now) - timestamp) > tolerance:
        return False
    return hmac.compare_digest(lowered.get(HEADER_SIGNATURE.lower(), ""), sign(secret, timestamp, body))


class Webhooks:
    """Checks webhook URLs and delivers a run's end. `allowed_hosts`, `retry_seconds` and `timeout` are read
    at each use (the configuration applies without a restart); `body_for(record)` is what is sent."""

    def __init__(self, store: Store, records, body_for: Callable[[dict], dict],
                 allowed_hosts: Callable[[], Iterable[str]] = tuple,
                 retry_seconds: Callable[[], float] = lambda: 900, timeout: Callable[[], float] = lambda: 10,
                 resolve=socket.getaddrinfo, sleep: Callable[[float], None] | None = None):
        self.store = store
        self.records = records  # core.execution_records.ExecutionRecords
        self.body_for = body_for
        self.allowed_hosts = allowed_hosts
        self.retry_seconds = retry_seconds
        self.timeout = timeout
        self.resolve = resolve
        self._stop = threading.Event()
        self.sleep = sleep or (lambda s: self._stop.wait(s))
        self._threads: set[threading.Thread] = set()
        self._lock = threading.Lock()
        self._secret: tuple[float, str] | None = None

    # checking

    def check(self, url: object) -> str:
        """The URL, if a webhook may be sent to it now; WebhookRefused saying why."""
        if not isinstance(url, str) or not url or len(url) > MAX_URL:
            raise WebhookRefused(f"webhook_url must be an http(s) URL of at most {MAX_URL} characters")
        try:
            check_url(url, self.allowed_hosts(), self.resolve)
        except DownloadRefused as err:
            reason = err.message.replace("download_allowed_hosts", "webhook_allowed_hosts")
            raise WebhookRefused(f"webhook_url refused: {reason}") from None
        return url

    # the secret

    def secret(self) -> str:
        """This store's signing secret, made on first use (exclusively: every process agrees on one)."""
        cached = self._secret
        if cached and time.monotonic() - cached[0] < 60:
            return cached[1]
        for _ in range(3):
            try:
                value = json.loads(self.store.get(SECRET_KEY).data)["secret"]
                break
            except KeyNotFound:
                try:
                    self.store.create(SECRET_KEY, json.dumps({"secret": secrets.token_hex(32)}).encode())
                except KeyExists:
                    pass
        else:
            value = json.loads(self.store.get(SECRET_KEY).data)["secret"]
        self._secret = (time.monotonic(), value)
        return value

    def rotate(self) -> str:
        """A new secret (receivers must be given it); deliveries sign with it from now on."""
        value = secrets.token_hex(32)
        body = json.dumps({"secret": value}).encode()
        try:
            current = self.store.get(SECRET_KEY)
            self.store.replace(SECRET_KEY, body, current.etag)
        except KeyNotFound:
            self.store.create(SECRET_KEY, body)
        self._secret = (time.monotonic(), value)
        return value

    # delivering

    def ended(self, record: dict) -> None:
        """A run reached its final state here: deliver its webhook, if it has one still pending, in the
        background (never in the caller's way)."""
        hook = record.get("webhook")
        if not isinstance(hook, dict) or hook.get("state") != "pending":
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

    def _set(self, execution_id: str, **fields) -> dict | None:
        def change(stored: dict) -> dict | None:
            hook = stored.get("webhook")
            if not isinstance(hook, dict):
                return None
            return {**stored, "webhook": {**hook, **fields}}

        try:
            return self.records.swap(execution_id, change)
        except PreconditionFailed:
            log.warning("comfyui-sagemaker: webhook state of %s not recorded (record busy)", execution_id)
            return None

    def _claim(self, execution_id: str) -> dict | None:
        def claimed(stored: dict) -> dict | None:
            hook = stored.get("webhook")
            if not isinstance(hook, dict) or hook.get("state") != "pending":
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
        attempts, status, error = 0, None, "no attempt"
        try:
            body = json.dumps(self.body_for(record), separators=(",", ":")).encode()
            url = record["webhook"]["url"]
            started, delay = time.monotonic(), 1.0
            while True:
                attempts += 1
                self._set(execution_id, attempts=attempts)  # counted as it starts: a hung one shows
                status, error = self._attempt(url, execution_id, body)
                if status is not None and 200 <= status < 300:
                    self._set(execution_id, state="delivered", attempts=attempts, last_status=status, last_error=None,
                              delivered_at=_now())
                    return
                elapsed = time.monotonic() - started
                if elapsed + delay > self.retry_seconds() or self._stop.is_set():
                    break
                self._set(execution_id, last_status=status, last_error=error)
                self.sleep(delay)
                delay = min(delay * 2, MAX_DELAY_S)
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
        timestamp = int(time.time())
        try:
            signature = sign(self.secret(), timestamp, body)
        except Exception as err:  # a secret that cannot be read: this attempt fails, a later one may sign
            return None, f"not signed: the secret cannot be read ({type(err).__name__}: {err})"
        headers = {"Content-Type": "application/json", HEADER_ID: execution_id, HEADER_TIMESTAMP: str(timestamp),
                   HEADER_SIGNATURE: signature}
        seconds = self.timeout()
        try:
            parts, address = check_url(url, self.allowed_hosts(), self.resolve)
            deadline = Deadline(seconds, f"timed out: no whole answer within {seconds:g} s")
            response = open_checked(parts, address, headers, deadline, method="POST", body=body)
            try:
                response.read(ANSWER_BYTES)
            finally:
                response.close()
        except DownloadRefused as err:
            return None, err.message.replace("download_allowed_hosts", "webhook_allowed_hosts")
        except (OSError, ValueError, http.client.HTTPException) as err:  # refused, reset, timed out, TLS, bad HTTP
            return None, f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
        if 200 <= response.status < 300:
            return response.status, None
        return response.status, f"answered HTTP {response.status}"


def pending(url: str) -> dict:
    """The record's webhook field for a new run."""
    return {"url": url, "state": "pending", "attempts": 0, "last_status": None, "last_error": None,
            "delivered_at": None}


def _now() -> str:
    from .templates import now

    return now()
