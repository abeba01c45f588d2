"""Cancel tokens: at the worker, only a run's own invoker can cancel it.

Whoever may invoke an endpoint may send a cancel to it (a SageMaker endpoint has one door), so a cancel
proves it comes from the invoker. The invoker makes a random token per run and keeps it in memory; the
invocation carries only the token's sha256 (`cancel_sha256`), since an async invocation is written to
the store (`async/requests/`), where everyone who reads the store reads it. A cancel presents the token
(`cancel_token`, in a cancel invocation or in the store's cancel marker); the worker hashes it and
compares the digests in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
from typing import Final, TypeGuard

DIGEST_FIELD: Final = "cancel_sha256"  # in an invocation
TOKEN_FIELD: Final = "cancel_token"  # in a cancel invocation or a cancel marker
MAX_TOKEN = 256  # characters: a token is 43
MARKER_BYTES = 4096  # a cancel marker is read up to this size, never whole
_DIGEST = re.compile(r"[0-9a-f]{64}")


def new_token() -> str:
    return secrets.token_urlsafe(32)


def digest_of(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def is_digest(value: object) -> TypeGuard[str]:
    return isinstance(value, str) and bool(_DIGEST.fullmatch(value))


def is_token(value: object) -> TypeGuard[str]:
    return isinstance(value, str) and 0 < len(value) <= MAX_TOKEN and value.isascii()


def matches(token: object, digest: str | None) -> bool:
    """`token` is the one whose sha256 is `digest` (compared in constant time)."""
    if not is_token(token) or not is_digest(digest):
        return False
    return hmac.compare_digest(digest_of(token), digest)


def marker(token: str) -> bytes:
    """The body of a cancel marker (async/cancel/<execution id>)."""
    return json.dumps({TOKEN_FIELD: token}).encode()


def token_in_marker(data: bytes) -> str | None:
    """The token a cancel marker carries; None if it carries none (an older caller's `{}`, or junk)."""
    try:
        body = json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    token = body.get(TOKEN_FIELD) if isinstance(body, dict) else None
    return token if is_token(token) else None
