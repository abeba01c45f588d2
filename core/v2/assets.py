"""Assets (the Comfy API v2's inputs and outputs) over the store's content-addressed blobs.

The bytes stay where every other blob is, `blobs/sha256/<hex>` (checked against their digest when
written, as always). The v2 API names content by blake3, so beside them:
- `blobs/blake3/<hex>`: {"sha256", "size"}, written once the bytes were hashed both ways by us (an
  upload); `HEAD /assets/by-hash` and `POST /assets/from-hash` look here, and only mint over a blob
  that is still present with that size and whose bytes hash to both (an entry is only a pointer that
  whoever can write the store can rewrite: one pointing at other bytes counts as missing, and is logged);
- `assets/records/<uuid>.json`: an uploaded asset, {id, sha256, blake3, size, content_type, file_path,
  created_at, owner}, created exclusively.
An output is an asset too, with no record of its own: its id `out-<execution id>-<24 hex of its sha256>`
names the run and the output, and is served only while that run's record lists that output.

A job uses an asset by a `{"__type": "core/ASSET", "info": {"id": ...}}` reference where a file name goes;
it reaches the endpoint as an input file `sagemaker-<sha256[:16]><ext>` (the same names the template API
gives uploaded images), its blob already in the store.
"""

from __future__ import annotations

import json
import logging
import mimetypes
import re
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import PurePosixPath
from typing import Any

from ..errors import BadRequest, Conflict, NotFound, RecordCorrupt
from ..execution_records import ID_RE
from ..identity import Owner
from ..records import ExecutionRecord, OwnerJson
from ..store import DIGEST_RE, BlobCorrupt, KeyExists, KeyNotFound, Store, blob_key
from ..templates import now
from ..unreadable import Unreadable, load_object, report
from .blob_reads import read_verified

log = logging.getLogger("comfyui_sagemaker")

RECORDS = "assets/records/"
BY_BLAKE3 = "blobs/blake3/"
BLAKE3 = re.compile(r"blake3:([0-9a-f]{64})")
UPLOAD_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
OUTPUT_ID = re.compile(rf"out-({ID_RE.pattern})-([0-9a-f]{{24}})")
EXTENSION = re.compile(r"\.[A-Za-z0-9]{1,10}")
MAX_FILE_PATH = 255
MAX_UPLOAD_BYTES = 1024**3
CHECKED_PAIRS = 4096  # (blake3, sha256) pairs remembered as checked, per process
OCTETS = "application/octet-stream"
# ComfyUI's output keys -> the v2 output kinds
KINDS = {"images": "image", "gifs": "video", "video": "video", "videos": "video", "audio": "audio", "text": "text",
         "latents": "latent"}


class HashMismatch(Conflict):
    """The uploaded bytes do not hash to the expected_hash the caller declared; nothing was stored."""

    code = "hash_mismatch"


class BlobNotFound(NotFound):
    """No blob with this hash that an asset can be made from."""

    code = "blob_not_found"


class AssetNotFound(NotFound):
    """No asset has this id (or the run that made the output no longer lists it)."""

    code = "not_found"


class AssetInUse(Conflict):
    """The asset cannot be deleted now: a job in flight reads its bytes, or it is a job's output (kept as long
    as its job)."""

    code = "asset_in_use"


class AssetCorrupt(RecordCorrupt):
    """The asset's record in the store cannot be read."""

    code = "asset_corrupt"


class MissingAsset(BadRequest):
    """A job's asset reference is malformed or names no asset."""

    code = "missing_asset"


@dataclass
class Asset:
    id: str
    sha256: str
    size: int
    content_type: str
    file_path: str | None
    created_at: str
    blake3: str | None = None
    job_id: str | None = None
    owner: OwnerJson | None = None

    def to_json(self) -> dict:
        return asdict(self)


def parse_hash(value: object) -> str:
    """The hex of a `blake3:<hex>` hash; BadRequest otherwise."""
    match = BLAKE3.fullmatch(value) if isinstance(value, str) else None
    if not match:
        raise BadRequest("a hash is written blake3:<64 lowercase hex digits>")
    return match.group(1)


def clean_file_path(value: object) -> str:
    """The file name an asset keeps (its last path part), for display and its extension."""
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_FILE_PATH \
            or any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        raise BadRequest(f"file_path must be a file name of 1 to {MAX_FILE_PATH} printable characters")
    name = PurePosixPath(value.replace("\\", "/")).name
    if name in ("", ".", ".."):
        raise BadRequest("file_path must end in a file name")
    return name


def content_type_of(value: object, file_path: str | None) -> str:
    if isinstance(value, str) and re.fullmatch(r"[A-Za-z0-9!#$&^_.+-]{1,64}/[A-Za-z0-9!#$&^_.+-]{1,64}", value):
        return value.lower()
    guessed = mimetypes.guess_type(file_path or "")[0]
    return guessed or OCTETS


def input_name(asset: Asset) -> str:
    """The input file name a job's reference to `asset` becomes on the endpoint (content-derived)."""
    suffix = PurePosixPath(asset.file_path or "").suffix
    return f"sagemaker-{asset.sha256[:16]}{suffix if EXTENSION.fullmatch(suffix) else ''}"


def output_id(execution_id: str, sha256: str) -> str:
    return f"out-{execution_id}-{sha256[:24]}"


def output_items(record: ExecutionRecord) -> list[tuple[str, str, dict]]:
    """(node id, ui key, item) of every output file of a record, in the record's order."""
    out = []
    for node, ui in (record.get("outputs") or {}).items():
        if not isinstance(ui, dict):
            continue
        for key, items in ui.items():
            for item in items if isinstance(items, list) else ():
                if isinstance(item, dict) and isinstance(item.get("sha256"), str) \
                        and DIGEST_RE.fullmatch(item["sha256"]) and isinstance(item.get("filename"), str):
                    out.append((str(node), key, item))
    return out


class AssetService:
    """`read_execution(execution id)` gives a run's record (or None): outputs are looked up there."""

    def __init__(self, store: Store, owner: Callable[[str | None], Owner],
                 read_execution: Callable[[str], ExecutionRecord | None]):
        self.store = store
        self.owner = owner
        self.read_execution = read_execution
        # (blake3, sha256) pairs whose bytes were hashed both ways here. A fact about content, not about an
        # object: bytes that hash to that sha256 hash to that blake3, whatever is rewritten in the store later.
        self._checked: set[tuple[str, str]] = set()

    def _checked_pair(self, blake3: str, sha256: str) -> None:
        if len(self._checked) >= CHECKED_PAIRS:
            self._checked.clear()
        self._checked.add((blake3, sha256))

    # uploads

    def ingest(self, path: str, sha256: str, blake3: str, size: int, content_type: object, file_path: object,
               expected_hash: object = None, user: str | None = None) -> tuple[Asset, bool]:
        """A file already hashed both ways (sha256, blake3 hex) becomes an asset: (asset, whether its bytes
        were new to the store). HashMismatch, with nothing stored, when expected_hash differs."""
        name = clean_file_path(file_path)
        if expected_hash is not None and expected_hash != "" and parse_hash(expected_hash) != blake3:
            raise HashMismatch(f"the bytes received hash to blake3:{blake3}, not {expected_hash}; nothing was "
                               "stored (the upload was cut or changed on the way)")
        new = not self.store.has_blob(sha256, size, path)
        if new:
            self.store.put_blob(sha256, path)  # BlobMismatch if the file changed under us
        self.store.put(BY_BLAKE3 + blake3, json.dumps({"sha256": sha256, "size": size}).encode())
        self._checked_pair(blake3, sha256)
        asset = Asset(str(uuid.uuid4()), sha256, size, content_type_of(content_type, name), name, now(),
                      blake3=blake3, owner=self.owner(user).to_json())
        self._create(asset)
        return asset, new

    def _create(self, asset: Asset) -> None:
        try:
            self.store.create(f"{RECORDS}{asset.id}.json", json.dumps(asset.to_json()).encode())
        except KeyExists:  # a uuid4 collision: a new id
            asset.id = str(uuid.uuid4())
            self.store.create(f"{RECORDS}{asset.id}.json", json.dumps(asset.to_json()).encode())

    def blob_of(self, blake3_hash: object) -> tuple[str, int] | None:
        """(sha256, size) of the blob with this blake3 hash, if it is in the store: the entry's blob is read
        and hashed both ways before the entry is believed (once per pair; see `_checked`)."""
        hexa = parse_hash(blake3_hash)
        key = BY_BLAKE3 + hexa
        try:
            entry = json.loads(self.store.get(key).data)
            sha, size = entry["sha256"], int(entry["size"])
        except (KeyNotFound, ValueError, KeyError, TypeError, RecursionError):
            return None
        if not isinstance(sha, str) or not DIGEST_RE.fullmatch(sha) or self.store.size(blob_key(sha)) != size:
            return None
        if (hexa, sha) not in self._checked:
            try:
                read_verified(self.store, sha, blake3=hexa)
            except (BlobCorrupt, KeyNotFound) as err:
                log.warning("comfyui-sagemaker: %s points at blob %s, whose bytes are not blake3:%s (%s): treated "
                            "as missing", key, sha, hexa, err.message if isinstance(err, BlobCorrupt) else "gone")
                return None
            self._checked_pair(hexa, sha)
        return sha, size

    def from_hash(self, blake3_hash: object, file_path: object = None, content_type: object = None,
                  user: str | None = None) -> Asset:
        """A new asset over bytes the store has (found by blake3); BlobNotFound otherwise."""
        found = self.blob_of(blake3_hash)
        if found is None:
            raise BlobNotFound(f"no blob with hash {blake3_hash}: upload the bytes")
        name = clean_file_path(file_path) if file_path is not None else None
        asset = Asset(str(uuid.uuid4()), found[0], found[1], content_type_of(content_type, name), name, now(),
                      blake3=parse_hash(blake3_hash), owner=self.owner(user).to_json())
        self._create(asset)
        return asset

    # reading

    def get(self, asset_id: object) -> Asset:
        if isinstance(asset_id, str) and UPLOAD_ID.fullmatch(asset_id):
            key = f"{RECORDS}{asset_id}.json"
            try:
                return _asset(load_object(self.store.get(key).data, key), key)
            except KeyNotFound:
                raise AssetNotFound(f"asset {asset_id} does not exist") from None
            except Unreadable as err:
                report(err.key, err.reason)
                raise AssetCorrupt(f"asset {asset_id} cannot be read from the store ({err.reason})", err.key,
                                   err.reason) from None
        match = OUTPUT_ID.fullmatch(asset_id) if isinstance(asset_id, str) else None
        if match:
            record = self.read_execution(match.group(1))
            if record is not None:
                for node, key, item in output_items(record):
                    if item["sha256"].startswith(match.group(2)):
                        return self.output_asset(record, node, key, item)
        raise AssetNotFound(f"asset {str(asset_id)[:120]!r} does not exist")

    def delete(self, asset_id: object, user: str | None, reads: Callable[[str], str | None]) -> None:
        """Delete an uploaded asset's record (its bytes stay while anything else refers to them: retention by
        reachability, core/retention.py). Only its owner may: someone else's is AssetNotFound, as one that never
        was. AssetInUse for an output, or while `reads(sha256)` names a job in flight that reads its bytes."""
        asset = self.get(asset_id)  # AssetNotFound
        if asset.job_id is not None:
            raise AssetInUse(f"asset {asset.id} is an output of job {asset.job_id}: it is kept as long as the job")
        owner = Owner.from_json(asset.owner)  # None: a record of a version before owners (anyone's)
        if owner is not None and owner.key != self.owner(user).key:
            raise AssetNotFound(f"asset {asset.id} does not exist")
        job = reads(asset.sha256)
        if job is not None:
            raise AssetInUse(f"job {job}, still in flight, reads asset {asset.id}: delete it once the job ended")
        try:
            self.store.delete(f"{RECORDS}{asset.id}.json")
        except KeyNotFound:  # deleted meanwhile
            raise AssetNotFound(f"asset {asset.id} does not exist") from None

    def output_asset(self, record: ExecutionRecord, node: str, key: str, item: dict) -> Asset:
        size = item.get("size")
        if not isinstance(size, int):
            size = self.store.size(blob_key(item["sha256"])) or 0
        name = PurePosixPath(item["filename"]).name
        return Asset(output_id(record["id"], item["sha256"]), item["sha256"], size,
                     mimetypes.guess_type(name)[0] or OCTETS, name,
                     record.get("finished_at") or record.get("created_at") or now(), job_id=record["id"],
                     owner=record.get("owner"))

    def resolve(self, reference: object) -> Asset:
        """The asset a job's `core/ASSET` reference (or a bare asset id) names; MissingAsset otherwise."""
        asset_id = reference
        if isinstance(reference, dict):
            info = reference.get("info")
            asset_id = info.get("id") if isinstance(info, dict) else None
        if not isinstance(asset_id, str) or not asset_id:
            raise MissingAsset("an asset reference must be {\"__type\": \"core/ASSET\", \"info\": {\"id\": ...}}")
        try:
            return self.get(asset_id)
        except AssetNotFound:
            raise MissingAsset(f"asset {asset_id[:120]!r} does not exist") from None


def _asset(data: dict, key: str) -> Asset:
    """An uploaded asset's record; Unreadable if it is not one."""
    if not isinstance(data.get("sha256"), str) or not DIGEST_RE.fullmatch(data["sha256"]):
        raise Unreadable(key, "sha256 is not a digest")
    if isinstance(data.get("size"), bool) or not isinstance(data.get("size"), int):
        raise Unreadable(key, "size is not a whole number")
    if not all(isinstance(data.get(k), str) for k in ("id", "content_type", "created_at")):
        raise Unreadable(key, "id, content_type or created_at is not a string")
    if data.get("blake3") is not None and not (isinstance(data["blake3"], str) and DIGEST_RE.fullmatch(data["blake3"])):
        raise Unreadable(key, "blake3 is not a digest")
    if not isinstance(data.get("file_path"), (str, type(None))) \
            or not isinstance(data.get("owner"), (dict, type(None))):
        raise Unreadable(key, "file_path or owner is malformed")
    fields: dict[str, Any] = {k: data.get(k) for k in Asset.__dataclass_fields__}  # checked above
    return Asset(**fields)


def is_reference(value: object) -> bool:
    return isinstance(value, dict) and value.get("__type") == "core/ASSET"
