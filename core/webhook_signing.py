"""Webhook signatures in the Standard Webhooks scheme (standardwebhooks.com), so receivers can use its stock
verifiers (`pip install standardwebhooks`, `npm i standardwebhooks`, Svix's libraries).

- A secret is `whsec_` + base64 of 32 random bytes; the HMAC key is the decoded bytes.
- Headers: `webhook-id` (the same on every retry of one event: the receiver de-duplicates on it),
  `webhook-timestamp` (Unix seconds of this attempt), `webhook-signature`: `v1,` + base64 of
  HMAC-SHA256(key, "<id>.<timestamp>.<raw body>"), one per secret, space-separated (several secrets during
  a rotation). The id is signed too: a captured request replayed under another id does not verify.
- A receiver recomputes it over the raw body, compares in constant time and refuses a timestamp more than
  five minutes from its clock. `verify` does what the stock verifiers do.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import time
from collections.abc import Mapping

from .errors import SageMakerError

PREFIX = "whsec_"
KEY_BYTES = 32
MIN_KEY_BYTES, MAX_KEY_BYTES = 24, 64  # what the scheme asks of a secret
HEADER_ID = "webhook-id"
HEADER_TIMESTAMP = "webhook-timestamp"
HEADER_SIGNATURE = "webhook-signature"
TOLERANCE_S = 300


class WebhookSecretInvalid(SageMakerError):
    """A webhook secret is not `whsec_` + base64 of 24 to 64 bytes."""

    code = "webhook_secret_invalid"


def new_secret() -> str:
    return PREFIX + base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode()


def keys(text: str, where: str) -> list[bytes]:
    """The HMAC keys of one or more whitespace-separated `whsec_` secrets (the first signs, others during a
    rotation); WebhookSecretInvalid naming `where` (never echoing the secret)."""
    found = []
    for item in text.split():
        try:
            if not item.startswith(PREFIX):
                raise ValueError
            key = base64.b64decode(item[len(PREFIX):], validate=True)
        except (ValueError, binascii.Error):
            raise WebhookSecretInvalid(f"{where} is not a webhook secret (whsec_ followed by base64)") from None
        if not MIN_KEY_BYTES <= len(key) <= MAX_KEY_BYTES:
            raise WebhookSecretInvalid(f"{where}: a webhook secret holds {MIN_KEY_BYTES} to {MAX_KEY_BYTES} bytes, "
                                       f"not {len(key)}")
        found.append(key)
    if not found:
        raise WebhookSecretInvalid(f"{where} is empty")
    return found


def sign(keys: list[bytes], msg_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` value: one `v1,<base64>` per key."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return " ".join("v1," + base64.b64encode(hmac.new(k, signed, hashlib.sha256).digest()).decode() for k in keys)


def headers(keys: list[bytes], msg_id: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    """The three headers of one attempt to send `body` as event `msg_id`, now."""
    if "." in msg_id:  # the scheme joins with dots: an id must not hold one
        raise ValueError("a webhook id holds no '.'")
    timestamp = int(time.time()) if timestamp is None else timestamp
    return {HEADER_ID: msg_id, HEADER_TIMESTAMP: str(timestamp), HEADER_SIGNATURE: sign(keys, msg_id, timestamp, body)}


def verify(secret: str, received: Mapping[str, str], body: bytes, now: float | None = None,
           tolerance: float = TOLERANCE_S) -> bool:
    """What a receiver does: one of the signatures matches the id, timestamp and raw body, and the timestamp
    is recent."""
    lowered = {k.lower(): v for k, v in received.items()}
    msg_id, stamp = lowered.get(HEADER_ID, ""), lowered.get(HEADER_TIMESTAMP, "")
    try:
        timestamp = int(stamp)
        key = keys(secret, "the secret")[0]
    except (ValueError, WebhookSecretInvalid):
        return False
    if not msg_id or abs((time.time() if now is None else now) - timestamp) > tolerance:
        return False
    expected = sign([key], msg_id, timestamp, body)
    return any(hmac.compare_digest(expected, given) for given in lowered.get(HEADER_SIGNATURE, "").split())
