"""Retention: what the store keeps and for how long, with one source of truth for the days.

- Execution records older than the retention (`execution_retention_days`, RETENTION_DAYS by default) are
  removed by a designer's ComfyUI, daily (ExecutionService.apply_retention). On S3 the bucket's lifecycle
  rules (aws/stack.py) expire `executions/`, `async/` and `workers/` after the same days, so the records go
  even when no designer's ComfyUI runs, and a run's async request and result live as long as its record.
- Blobs are content-addressed and shared (two runs with the same output, an output used as an input, a
  model of several environments), so no single record owns one. A blob is removed only when nothing live
  refers to it: mark the digests every referrer names, sweep the other blobs (`sweep_blobs`). A blob written
  less than GRACE ago is never swept: a run that has just uploaded an input or written an output is not
  referred to yet.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta, timezone

from .store import BLOBS, DIGEST_RE, KeyNotFound, Store

log = logging.getLogger("comfyui_sagemaker")

RETENTION_DAYS = 30
# Longer than any run's life between its upload and its record (an async request waits at most 6 hours in
# SageMaker's queue and runs at most 1 hour: "InvokeEndpointAsync", RequestTTLSeconds, InvocationTimeoutSeconds).
GRACE = timedelta(days=1)
# `inputs/synced/<instance>.json`: the digests a ComfyUI's input sync holds as synced (core/input_sync.py).
SYNCED_INPUTS = "inputs/synced/"
# Every document under these refers to the blobs whose digests it names: execution records (outputs and
# inputs), environment manifests (models, custom node packs), templates, Comfy API v2 assets, async
# requests and results not read yet.
REFERRERS = ("executions/records/", "environments/", "templates/", "assets/records/", "async/")
LEGACY_RECORDS = "executions/"  # records an older version wrote: executions/<id>.json
# A referrer is read as text, not parsed: every 64-hex-digit string in it counts. What a reader could not
# parse (a newer version's field, a damaged manifest) still protects its blobs, and a string that only
# looks like a digest keeps at most one blob longer.
DIGEST_IN_TEXT = re.compile(rb"(?<![0-9a-f])[0-9a-f]{64}(?![0-9a-f])")


def _legacy_records(store: Store) -> Iterator[str]:
    after = ""
    while page := store.list_page(LEGACY_RECORDS, after):
        yield from (k for k in page if k.endswith(".json"))
        after = page[-1]


def _referrers(store: Store, now: datetime, retention: timedelta) -> Iterator[str]:
    for prefix in REFERRERS:
        yield from store.list(prefix)
    yield from _legacy_records(store)
    # A ComfyUI republishes its synced inputs whenever they change; one not heard of for the whole retention
    # is taken as gone (its own index is checked against the store before it is trusted, so it uploads again).
    for key, modified in store.list_modified(SYNCED_INPUTS).items():
        if now - modified < retention:
            yield key


def live_blobs(store: Store, now: datetime | None = None, retention_days: int = RETENTION_DAYS) -> set[str]:
    """Every digest a live referrer names (the mark)."""
    now = now or datetime.now(timezone.utc)
    live: set[str] = set()
    for key in _referrers(store, now, timedelta(days=retention_days)):
        try:
            data = store.get(key).data
        except KeyNotFound:  # removed since listed: it refers to nothing any more
            continue
        live |= {m.decode() for m in DIGEST_IN_TEXT.findall(data)}
    return live


def sweep_blobs(store: Store, now: datetime | None = None, retention_days: int = RETENTION_DAYS,
                grace: timedelta = GRACE) -> list[str]:
    """Remove the blobs nothing refers to that were written more than `grace` ago; the digests removed.

    The mark is taken twice: once to find the candidates, once more just before they are removed, so a
    reference made while the first mark read the store (a run that reused an old blob) saves its blob."""
    now = now or datetime.now(timezone.utc)
    old = {key[len(BLOBS):] for key, modified in store.list_modified(BLOBS).items()
           if now - modified >= grace and DIGEST_RE.fullmatch(key[len(BLOBS):])}
    if not old:
        return []
    candidates = old - live_blobs(store, now, retention_days)
    if not candidates:
        return []
    candidates -= live_blobs(store, now, retention_days)
    removed = []
    for digest in sorted(candidates):
        try:
            store.delete(BLOBS + digest)
        except KeyNotFound:
            continue
        removed.append(digest)
    if removed:
        log.info("comfyui-sagemaker: retention removed %d blob(s) nothing refers to", len(removed))
    return removed


def synced_inputs_document(instance: str, digests: Iterable[str]) -> bytes:
    """What `inputs/synced/<instance>.json` holds: the digests of the inputs a ComfyUI's input sync holds."""
    return json.dumps({"instance": instance, "sha256": sorted(set(digests))}).encode()
