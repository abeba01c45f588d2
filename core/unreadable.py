"""One object in the store that cannot be read breaks only itself.

A record (a template, a manifest, an execution, a lease, an idempotency record) or an index may be corrupt:
cut short by a full disk, written by hand, by an older version, or by anyone who can write the store. Its
reader parses it here (`load_object`), and then:
- a list skips it and reports it: one log line per object and reason in this process, and an entry
  `{"key", "reason"}` in the list answer's `skipped` (every list answers `skipped`, empty when all is well);
- a read of that one object by name answers its own error (a RecordCorrupt subclass: 502 with a code naming
  what it is, and a message naming it);
- an index is rebuilt from the records it indexes and written back; a lease or a claim that cannot be read
  counts as expired and is taken over by compare-and-swap.
"""

from __future__ import annotations

import json
import logging
import threading

log = logging.getLogger("comfyui_sagemaker")
_reported: set[tuple[str, str]] = set()
_reported_lock = threading.Lock()
MAX_REPORTED = 10_000  # remembered (key, reason) pairs, so a log line is written once, not on every list


class Unreadable(ValueError):
    """The object under `key` is not what its reader can use; `reason` says why in a few words."""

    def __init__(self, key: str, reason: str):
        super().__init__(f"{key}: {reason}")
        self.key = key
        self.reason = reason


def load_object(data: bytes, key: str) -> dict:
    """The JSON object stored under `key`; Unreadable if it is not JSON or not an object."""
    try:
        value = json.loads(data)
    except (ValueError, RecursionError) as err:
        raise Unreadable(key, f"not JSON ({str(err)[:120]})") from None
    if not isinstance(value, dict):
        raise Unreadable(key, f"a JSON {type(value).__name__}, not an object")
    return value


def report(key: str, reason: str) -> dict:
    """Log once (per key and reason, in this process) that an object was skipped; its `skipped` entry."""
    with _reported_lock:
        first = (key, reason) not in _reported
        if first:
            if len(_reported) >= MAX_REPORTED:
                _reported.clear()
            _reported.add((key, reason))
    if first:
        log.warning("comfyui-sagemaker: %s cannot be read (%s): skipped; delete it or publish it again", key, reason)
    return {"key": key, "reason": reason}


def skipped_entry(err: Unreadable) -> dict:
    return report(err.key, err.reason)
