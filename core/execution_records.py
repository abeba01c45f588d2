"""Execution records in the store, laid out so that every list costs a page, not the store.

- `executions/records/<instance>/<id>.json`: the record. An id is the UTC time to the microsecond,
  8 random hex digits and the instance id of the ComfyUI that made it (so ids sort by time, and the
  key - like the async request and cancel keys named by the id - carries its owner, which the
  artist's IAM policy scopes writes by). Created exclusively; every later write is compare-and-swap
  on its ETag, so nothing rewrites someone else's record unseen.
- `executions/index/{all,owner/<owner>,template/<template>}/<inv>.<owner>.<template>`: empty markers
  written at creation; `<inv>` is the id under an inverted time, so a folder lists newest first and
  a page is one LIST request. The owner and template in the name let a list filter on them from
  the names alone.
- `executions/index/state/<final state>/<inv>...`: written when a run ends, and beside it
  `executions/index/owner-state/<owner>/<final state>/<inv>...`, so one owner's runs in one state are one
  LIST too. Runs that ended before a store had these are indexed once by a designer's maintenance
  (`index_by_owner`), which then writes `executions/index/owner-state.complete`; until then such a list
  scans the state folder for the owner's markers.
- `executions/inflight/<owner>/<id>.<follower>`: while a run is queued or running, one marker that names the
  process following it (its record's `follower`, whose lease is `executions/inflight/<follower>.json`,
  core/followers.py). A ComfyUI restarting takes over its own in-flight runs from here, and one listing of the
  in-flight folder tells who follows what, without reading a record: work that grows with the runs in flight.
  Versions before it wrote a second marker beside it, `executions/inflight/<owner>/<id>` (and a record of an
  older one names no follower: that marker alone). Both are read (a store shared with them), and the second is
  removed when such a run is followed again or ended from here (`ended(..., earlier=True)`). Those versions do
  not count a run of this layout among the runs in flight (their lists of queued or running runs, a Stop's end of
  an endpoint's runs, expiry); their sweep does take it over.
- `executions/<id>.json`: records an older version wrote (no owner); readable by id, never
  rewritten, not listed, removed by retention.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone

from .errors import ExecutionCorrupt
from .identity import Owner
from .records import ExecutionRecord
from .shapes import ShapeInvalid, validate
from .store import KeyExists, KeyNotFound, PreconditionFailed, Store
from .unreadable import Unreadable, load_object, report

ROOT = "executions/"
RECORDS = ROOT + "records/"
INDEX = ROOT + "index/"
INFLIGHT = ROOT + "inflight/"
OWNER_STATE = INDEX + "owner-state/"
OWNER_STATE_COMPLETE = INDEX + "owner-state.complete"  # every ended run has its owner-state marker
# <time>-<random>-<instance>; ids made before team mode lack the instance.
ID_RE = re.compile(r"[0-9]{8}T[0-9]{12}-[0-9a-f]{8}(?:-[a-z0-9]{12})?")
FINAL = ("succeeded", "failed", "cancelled")
NO_TEMPLATE = "-"


def inverted(execution_id: str) -> str:
    """A prefix that sorts newer ids first: 10**20 - 1 - the id's 20 time digits."""
    digits = int(execution_id[:8] + execution_id[9:21])
    return f"{10**20 - 1 - digits:020d}-{execution_id}"


def id_time(execution_id: str) -> datetime:
    return datetime.strptime(execution_id[:21], "%Y%m%dT%H%M%S%f").replace(tzinfo=timezone.utc)


def template_part(template: str | None) -> str:
    from .templates import encode_name

    return encode_name(template) if template else NO_TEMPLATE


@dataclass(frozen=True)
class Marker:
    execution_id: str
    owner: str
    template: str

    @classmethod
    def parse(cls, key: str) -> Marker | None:
        parts = key.rsplit("/", 1)[-1].split(".")
        if len(parts) < 3:
            return None
        inv_id, template, owner = parts[0], parts[-1], ".".join(parts[1:-1])
        execution_id = inv_id[21:]
        return cls(execution_id, owner, template) if ID_RE.fullmatch(execution_id) else None


def parse_record(data: bytes, key: str, execution_id: str | None = None) -> ExecutionRecord:
    """An execution record; Unreadable if it is not one (or is another execution's)."""
    try:
        record = validate(ExecutionRecord, load_object(data, key))
    except ShapeInvalid as err:
        raise Unreadable(key, err.reason) from None
    if execution_id is not None and record["id"] != execution_id:
        raise Unreadable(key, f"it is not the record of {execution_id}")
    return record


def marker_name(execution_id: str, owner: Owner | None, template: str | None) -> str:
    return f"{inverted(execution_id)}.{owner.key if owner else 'unowned'}.{template_part(template)}"


class ExecutionRecords:
    def __init__(self, store: Store):
        self.store = store
        self._by_owner_complete = False  # OWNER_STATE_COMPLETE seen (it is never removed)

    # one record

    def key(self, execution_id: str) -> str:
        instance = execution_id[31:] if len(execution_id) > 30 else "unowned"
        return f"{RECORDS}{instance}/{execution_id}.json"

    def read(self, execution_id: str) -> tuple[ExecutionRecord, str] | None:
        """(record, etag), from the current layout or an older version's; None if absent. ExecutionCorrupt
        (logged once) if it cannot be read."""
        for key in (self.key(execution_id), f"{ROOT}{execution_id}.json"):
            try:
                got = self.store.get(key)
            except KeyNotFound:
                continue
            try:
                return parse_record(got.data, key, execution_id), got.etag
            except Unreadable as err:
                report(err.key, err.reason)
                raise ExecutionCorrupt(f"execution {execution_id} cannot be read from the store ({err.reason})",
                                       err.key, err.reason) from None
        return None

    def create(self, record: ExecutionRecord) -> str:
        """The new record, its in-flight marker and its index markers; returns the record's ETag. The marker goes
        first: a run is never in the store without one (its follower's lease is held before)."""
        owner = Owner.from_json(record.get("owner"))
        name = marker_name(record["id"], owner, record.get("template"))
        self.store.put(self.inflight_key(record, record.get("follower")), b"")
        etag = self.store.create(self.key(record["id"]), _dump(record))
        folders = [f"{INDEX}all/", f"{INDEX}owner/{owner.key if owner else 'unowned'}/"]
        if record.get("template"):
            folders.append(f"{INDEX}template/{template_part(record['template'])}/")
        for folder in folders:
            self.store.put(folder + name, b"")
        return etag

    def replace(self, record: ExecutionRecord, etag: str) -> str:
        """Compare-and-swap; PreconditionFailed if the record changed since `etag`."""
        return self.store.replace(self.key(record["id"]), _dump(record), if_match=etag)

    def ended(self, record: ExecutionRecord, earlier: bool = False) -> None:
        """A run ended: its state markers, and it leaves the in-flight folder. `earlier`: it may have markers of
        the earlier layout (a run this process did not create: ended by a sweep, a cancel from here, a restart)."""
        owner = Owner.from_json(record.get("owner"))
        if record["state"] in FINAL:
            name = marker_name(record["id"], owner, record.get("template"))
            self.store.put(f"{INDEX}state/{record['state']}/{name}", b"")
            self.store.put(f"{OWNER_STATE}{owner.key if owner else 'unowned'}/{record['state']}/{name}", b"")
        self.unmark_follower(record, record.get("follower"))
        if earlier:
            self.unmark_earlier(record, record.get("follower"))

    def forget_inflight(self, execution_id: str) -> None:
        """A run whose record cannot be read leaves the in-flight folder (its markers, whoever's, of either layout):
        nobody can end it by its record. Rare: one listing of the in-flight folder."""
        for key in self.store.list(INFLIGHT):
            name = key.rsplit("/", 1)[-1]
            if name == execution_id or name.startswith(execution_id + "."):
                try:
                    self.store.delete(key)
                except KeyNotFound:
                    pass

    def inflight_key(self, record: ExecutionRecord, follower: str | None) -> str:
        """The run's in-flight marker, naming its follower (a record that names none: its id alone)."""
        owner = Owner.from_json(record.get("owner"))
        folder = f"{INFLIGHT}{owner.key if owner else 'unowned'}/"
        return f"{folder}{record['id']}.{follower}" if follower else f"{folder}{record['id']}"

    def mark_follower(self, record: ExecutionRecord, follower: str) -> None:
        self.store.put(self.inflight_key(record, follower), b"")

    def unmark_follower(self, record: ExecutionRecord, follower: str | None) -> None:
        self.store.discard(self.inflight_key(record, follower))

    def unmark_earlier(self, record: ExecutionRecord, follower: str | None) -> None:
        """The in-flight marker an earlier version wrote beside the follower's, `<owner>/<id>`."""
        if follower:
            self.store.discard(self.inflight_key(record, None))

    def swap(self, execution_id: str, change: Callable[[ExecutionRecord], ExecutionRecord | None],
             attempts: int = 5) -> ExecutionRecord | None:
        """Apply `change(record) -> record | None` with compare-and-swap, re-reading on a lost race.
        None when the record is absent or `change` declines (returns None)."""
        for _ in range(attempts):
            got = self.read(execution_id)
            if got is None:
                return None
            new = change(got[0].copy())
            if new is None:
                return None
            try:
                self.replace(new, got[1])
                return new
            except (PreconditionFailed, KeyNotFound):
                continue
        raise PreconditionFailed(execution_id)

    # lists

    def inflight(self, owner_key: str | None = None) -> list[str]:
        """Ids of runs queued or running (of one owner, or everyone's), newest first: the in-flight folder
        holds only those, so this grows with runs in flight, not with the records."""
        keys = list(self._all(f"{INFLIGHT}{owner_key}/")) if owner_key else self.store.list(INFLIGHT)
        return sorted({i for i in (_inflight_id(k) for k in keys) if i}, reverse=True)

    def inflight_of(self, instance: str) -> list[str]:
        """Ids of runs in flight of one ComfyUI, all its --multi-user users included, newest first."""
        ids = set()
        for key in self.store.list(INFLIGHT):
            owner = key[len(INFLIGHT):].rpartition("/")[0]
            if (owner == instance or owner.startswith(instance + ".")) and (execution_id := _inflight_id(key)):
                ids.add(execution_id)
        return sorted(ids, reverse=True)

    def state_folder(self, state: str, owner_key: str | None) -> str:
        """Where a page of runs in a final state is listed: one owner's own folder once the store has one for
        every ended run, else the state's folder (filtered by owner name by name)."""
        if owner_key is not None and self.indexed_by_owner():
            return f"{OWNER_STATE}{owner_key}/{state}/"
        return f"{INDEX}state/{state}/"

    def indexed_by_owner(self) -> bool:
        if not self._by_owner_complete:
            try:
                self.store.get(OWNER_STATE_COMPLETE)
                self._by_owner_complete = True
            except KeyNotFound:
                pass
        return self._by_owner_complete

    def index_by_owner(self) -> int:
        """Once per store (a designer's maintenance): the owner-state marker of every run that ended before this
        version wrote them, then OWNER_STATE_COMPLETE. Returns how many markers it wrote; 0 when done before."""
        if self.indexed_by_owner():
            return 0
        written = 0
        for state in FINAL:
            for key in self._all(f"{INDEX}state/{state}/"):
                marker = Marker.parse(key)
                if marker is not None:
                    self.store.put(f"{OWNER_STATE}{marker.owner}/{state}/{key.rsplit('/', 1)[-1]}", b"")
                    written += 1
        try:
            self.store.create(OWNER_STATE_COMPLETE, b"")
        except KeyExists:
            pass
        self._by_owner_complete = True
        return written

    def _all(self, folder: str) -> Iterator[str]:
        after = ""
        while True:
            page = self.store.list_page(folder, after, 1000)
            yield from page
            if len(page) < 1000:
                return
            after = page[-1]

    def page(self, folder: str, owner_key: str | None, template: str | None, limit: int,
             after: str | None) -> tuple[list[str], str | None]:
        """Up to `limit` execution ids from an index folder, newest first, after the cursor `after`
        (a marker name), keeping those of `owner_key` / `template` when given. Returns (ids, next cursor)."""
        wanted_template = template_part(template) if template else None
        start = folder + after if after else ""
        ids: list[str] = []
        last = None
        # A folder that is the filter (all, one owner's, one template's) needs limit + 1 keys; a filtered
        # scan (a state folder narrowed by owner or template) reads full pages.
        filtered = (owner_key is not None and not folder.startswith((f"{INDEX}owner/", OWNER_STATE))) \
            or (wanted_template is not None and not folder.startswith(f"{INDEX}template/"))
        page_size = 1000 if filtered else min(limit + 1, 1000)
        while len(ids) < limit:
            keys = self.store.list_page(folder, start, page_size)
            for key in keys:
                marker = Marker.parse(key)
                last = key.rsplit("/", 1)[-1]
                if marker and (owner_key is None or marker.owner == owner_key) \
                        and (wanted_template is None or marker.template == wanted_template):
                    ids.append(marker.execution_id)
                    if len(ids) == limit:
                        break
            if len(keys) < page_size or len(ids) == limit:
                break
            start = keys[-1]
        more = bool(ids) and len(ids) == limit
        return ids, (last if more else None)

    def expired(self, cutoff: datetime) -> Iterator[str]:
        """Ids older than `cutoff`, oldest first in each instance's folder (their keys sort by time)."""
        instances = sorted({k[len(RECORDS):].split("/", 1)[0] for k in self.store.list(RECORDS)})
        for folder in [*(f"{RECORDS}{i}/" for i in instances), ROOT]:
            for key in self._all(folder):
                execution_id = key.rsplit("/", 1)[-1].removesuffix(".json")
                if not ID_RE.fullmatch(execution_id):
                    continue
                if id_time(execution_id) >= cutoff:
                    break
                yield execution_id

    def remove(self, record: ExecutionRecord) -> None:
        """A record and all its markers (retention)."""
        owner = Owner.from_json(record.get("owner"))
        name = marker_name(record["id"], owner, record.get("template"))
        keys = [f"{INDEX}all/{name}", f"{INDEX}owner/{owner.key if owner else 'unowned'}/{name}",
                f"{INFLIGHT}{owner.key if owner else 'unowned'}/{record['id']}"]
        if record.get("follower"):
            keys.append(self.inflight_key(record, record["follower"]))
        if record.get("template"):
            keys.append(f"{INDEX}template/{template_part(record['template'])}/{name}")
        keys += [f"{INDEX}state/{state}/{name}" for state in FINAL]
        keys += [f"{OWNER_STATE}{owner.key if owner else 'unowned'}/{state}/{name}" for state in FINAL]
        keys += [self.key(record["id"]), f"{ROOT}{record['id']}.json"]
        for key in keys:
            try:
                self.store.delete(key)
            except KeyNotFound:
                pass


def _inflight_id(key: str) -> str | None:
    """The run of an in-flight marker (`<owner>/<id>.<follower>`, or an earlier version's `<owner>/<id>`); None
    for a follower's lease (`<follower>.json`, beside the owners' folders)."""
    folder, _, name = key[len(INFLIGHT):].rpartition("/")
    execution_id = name.split(".", 1)[0]
    return execution_id if folder and ID_RE.fullmatch(execution_id) else None


def _dump(record: ExecutionRecord) -> bytes:
    return json.dumps(record).encode()


__all__ = ["ExecutionRecords", "KeyExists", "FINAL", "ID_RE", "inverted"]
