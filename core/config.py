"""The configuration: the one module that reads and writes it.

Environment variables `COMFYUI_SAGEMAKER_<KEY>` win over `config.json` in the
extension's directory, which the ComfyUI face passes in as
`folder_paths.get_system_user_directory("sagemaker")` (a system user folder:
ComfyUI's /userdata API cannot read or write it). Credentials are never a key:
they come only from boto3's own chain.

Every key is declared once, in `Config`: its type, range, length and characters. The file, the
environment and the Connect panel's changes are all validated by it, and its JSON schema is what the
panel is told (GET /sagemaker/connect).
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import secrets
import tempfile
import threading
import unicodedata
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from . import instance_allowlist
from .errors import ConfigInvalid
from .retention import RETENTION_DAYS

ENV_PREFIX = "COMFYUI_SAGEMAKER_"
CONFIG_FILE = "config.json"
LOCK_FILE = ".config.json.lock"
STORES = ("folder", "s3")
ROLES = ("designer", "artist")
MAX_HOSTS = 64

Hosts = tuple[str, ...]


def _whole(default: int, low: int, high: int, unit: str = "") -> Any:
    """A whole number in [low, high]: strict, so never true/false or 1e9 (text from the environment is
    turned into a number first)."""
    return Field(default, strict=True, ge=low, le=high,
                 description=f"a whole number{' of ' + unit if unit else ''} from {low} to {high}")

_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_PREFIX_SEGMENT = re.compile(r"[A-Za-z0-9!_.*'()=+-]{1,255}")
_REGION = re.compile(r"[a-z]{2}(-[a-z]+)+-\d{1,2}")
_TOPIC_ARN = re.compile(r"arn:aws[a-z\-]*:sns:[a-z0-9\-]+:[0-9]{12}:[a-zA-Z0-9_.-]+")  # SnsTopicArn's pattern
_ROLE_ARN = re.compile(r"arn:aws[a-z-]*:iam::\d{12}:role/[A-Za-z0-9+=,.@_/-]{1,512}")
# Values that are empty or one of AWS's names: the field, its pattern and what it must be.
_NAMED = {"region": (_REGION, "a region name"), "sagemaker_role_arn": (_ROLE_ARN, "a role ARN"),
          "notification_topic_arn": (_TOPIC_ARN, "an SNS topic ARN")}
_VISIBLE = re.compile(r"[\x21-\x7e]+")  # printable ASCII, no space: what an HTTP header carries unchanged
_LABEL = re.compile(r"[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?")


class Config(BaseModel):
    """The configuration. Each field's description is what an error about it says the value must be."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    store: Literal["folder", "s3"] = Field("folder", description="folder or s3")
    store_path: str = Field("", max_length=4096, description="a folder path (default: <config dir>/store)")
    s3_bucket: str = Field("", description="an S3 bucket name: 3 to 63 lowercase letters, digits, dots and hyphens")
    s3_prefix: str = Field("", max_length=512, description=(
        "empty or a key prefix of letters, digits and !_.*'()=+- in parts separated by /, none of them . or .."))
    s3_sse: Literal["", "AES256", "aws:kms"] = Field(
        "", description="empty (the bucket's default encryption), AES256 or aws:kms")
    s3_kms_key_id: str = Field("", max_length=2048, description="empty or a KMS key id, alias or ARN")
    s3_max_concurrency: int = _whole(10, 1, 64)  # parallel parts per transfer
    region: str = Field("", description="empty or an AWS region such as us-east-1")
    sagemaker_role_arn: str = Field("", description="empty or an IAM role ARN (arn:aws:iam::<account>:role/<name>)")
    worker_image_uri: str = Field("", max_length=1024, description="empty or a container image URI (no spaces)")
    # The SNS topic async endpoints announce each run's end on (aws/notifications.py); empty: results are polled.
    notification_topic_arn: str = Field("", max_length=2048, description=(
        "empty or an SNS topic ARN (arn:aws:sns:<region>:<account>:<name>)"))
    max_instances: int = _whole(4, 1, 100)
    # What an endpoint may run on (core/instance_allowlist.py): the server and the designer policy enforce it.
    allowed_instance_types: tuple[str, ...] = Field(instance_allowlist.DEFAULT, description=(
        f"a list of at most {instance_allowlist.MAX_ENTRIES} instance types (ml.g5.xlarge) or families (ml.g5.*)"))
    allowed_hosts: Hosts = Field((), description=f"a list of at most {MAX_HOSTS} host names")
    # The one address this machine's shared local endpoints listen on and the team reaches them at
    # (core/shared_registry.py): chosen, never every address; empty: sharing is refused.
    share_host: str = Field("", description="empty or this machine's IP address on the team's network (one address, "
                                            "not 0.0.0.0)")
    token: str = Field("", description="empty or 8 to 256 printable ASCII characters without spaces")
    # Model downloads may reach these hosts (host or host:port) even on loopback or private addresses.
    download_allowed_hosts: Hosts = Field((), description=f"a list of at most {MAX_HOSTS} host names (host:port)")
    # Team mode: what this ComfyUI may do on a shared store, and how it is named to the others.
    role: Literal["designer", "artist"] = Field("designer", description="designer or artist")
    display_name: str = Field("", description=(
        "at most 64 characters, none of them control or direction-changing characters"))
    execution_retention_days: int = _whole(RETENTION_DAYS, 1, 3650, "days")
    # Webhooks (core/webhooks.py): hosts (host or host:port) a webhook_url may name even on loopback or private
    # addresses; how long one delivery is retried in all, and how long one attempt may take.
    webhook_allowed_hosts: Hosts = Field((), description=f"a list of at most {MAX_HOSTS} host names (host:port)")
    webhook_retry_seconds: int = _whole(900, 1, 86400, "seconds")
    webhook_timeout_seconds: int = _whole(10, 1, 86400, "seconds")

    @field_validator("share_host")
    @classmethod
    def _share_host(cls, v: str) -> str:
        if not v:
            return v
        try:
            address = ipaddress.ip_address(v)
        except ValueError:
            raise ValueError(f"{v!r} is not an IP address") from None
        if address.is_unspecified:
            raise ValueError(f"{v} listens on every address: choose this machine's one address")
        return v

    @field_validator("store_path")
    @classmethod
    def _path(cls, v: str) -> str:
        if any(unicodedata.category(c) == "Cc" for c in v):
            raise ValueError("it holds a control character")
        return v

    @field_validator("s3_bucket")
    @classmethod
    def _bucket(cls, v: str) -> str:
        if v and (not _BUCKET.fullmatch(v) or ".." in v):
            raise ValueError(f"{v!r} is not a bucket name")
        return v

    @field_validator("s3_prefix")
    @classmethod
    def _prefix(cls, v: str) -> str:
        parts = v.removesuffix("/").split("/") if v else []
        for part in parts:
            if part in (".", "..") or not _PREFIX_SEGMENT.fullmatch(part):
                raise ValueError(f"{v!r} is not a plain key prefix")
        return v

    @field_validator("s3_kms_key_id", "worker_image_uri")
    @classmethod
    def _visible(cls, v: str) -> str:
        if v and not _VISIBLE.fullmatch(v):
            raise ValueError("it holds spaces or characters outside printable ASCII")
        return v

    @field_validator(*_NAMED)
    @classmethod
    def _named(cls, v: str, info) -> str:
        pattern, what = _NAMED[info.field_name]
        if v and not pattern.fullmatch(v):
            raise ValueError(f"{v!r} is not {what}")
        return v

    @field_validator("token")
    @classmethod
    def _token(cls, v: str) -> str:
        # A newline or a space could never be sent back in a header: such a token would lock everyone out.
        if v and not (8 <= len(v) <= 256 and _VISIBLE.fullmatch(v)):
            raise ValueError("it has another length or a character that is not printable ASCII")
        return v

    @field_validator("display_name")
    @classmethod
    def _display_name(cls, v: str) -> str:
        v = v.strip()
        if len(v) > 64:
            raise ValueError("it is longer than 64 characters")
        # Cf holds the direction overrides (U+202E) that make a name read as another in others' lists;
        # the zero-width joiner inside emoji is the one format character a name may hold.
        bad = [c for c in v if unicodedata.category(c) in ("Cc", "Cf", "Co", "Cs", "Zl", "Zp", "Cn") and c != "\u200d"]
        if bad:
            raise ValueError(f"it holds U+{ord(bad[0]):04X}")
        return v

    @field_validator("allowed_hosts", "download_allowed_hosts", "webhook_allowed_hosts", mode="before")
    @classmethod
    def _hosts(cls, v: object) -> object:
        if isinstance(v, str):
            v = [h for h in v.replace(",", " ").split() if h]
        if not isinstance(v, (list, tuple)) or not all(isinstance(h, str) for h in v):
            raise ValueError("it is not a list of host names")
        if len(v) > MAX_HOSTS:
            raise ValueError(f"it has {len(v)} entries")
        return tuple(host_entry(h) for h in v)

    @field_validator("allowed_instance_types", mode="before")
    @classmethod
    def _instance_types(cls, v: object) -> tuple[str, ...]:
        return instance_allowlist.entries(v)

    def public(self) -> dict:
        """What may be shown to a browser: never the token."""
        d = self.model_dump(mode="json")
        d["token"] = bool(self.token)
        return d


def host_entry(raw: str) -> str:
    """One allowed host: a host name, an IPv4 or IPv6 address (bare or in brackets), each with an optional
    :port; lowercased. ValueError naming the entry otherwise."""
    h = raw.strip().lower()
    bad = ValueError(f"{raw[:80]!r} is not a host name")
    port = None
    if h.startswith("["):
        inside, _, rest = h[1:].partition("]")
        host, port = inside, (rest[1:] if rest.startswith(":") else None if not rest else "x")
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise bad from None
    elif h.count(":") > 1:
        try:
            ipaddress.IPv6Address(h)
        except ValueError:
            raise bad from None
    else:
        host, _, port_text = h.partition(":")
        port = port_text if ":" in h else None
        if not host or len(host) > 253 or not all(_LABEL.fullmatch(label) for label in host.split(".")):
            raise bad
    if port is not None and not (port.isascii() and port.isdigit() and 1 <= int(port) <= 65535):
        raise bad
    return h


KEYS = tuple(Config.model_fields)
# Whole numbers and lists come from the environment as text.
_WHOLE = {k for k, f in Config.model_fields.items() if isinstance(f.default, int)}


def _message(err: ValidationError, source: str, data: Mapping) -> str:
    first = err.errors()[0]
    key = str(first["loc"][0]) if first["loc"] else ""
    where = f"{key} (from {ENV_PREFIX + key.upper() if source == 'environment' else source})"
    if first["type"] == "extra_forbidden":
        return f"{source} has unknown keys: {', '.join(sorted(set(data) - set(KEYS)))}"
    description = Config.model_fields[key].description if key in Config.model_fields else ""
    value = data.get(key)
    detail = str(first.get("ctx", {}).get("error", "")) if first["type"] == "value_error" else ""
    shown = f"got {value!r:.80}" if not isinstance(value, (list, tuple)) else f"got {len(value)} entries"
    return f"{where} must be {description}" + (f": {detail}" if detail else f", {shown}")


def _validate(data: Mapping, source: str) -> Config:
    try:
        return Config.model_validate(dict(data))
    except ValidationError as err:
        raise ConfigInvalid(_message(err, source, data)) from None


def _environment_values(environ: Mapping[str, str]) -> dict:
    values: dict[str, object] = {}
    for key in KEYS:
        raw = environ.get(ENV_PREFIX + key.upper())
        if raw is None:
            continue
        values[key] = int(raw) if key in _WHOLE and raw.strip().isascii() and raw.strip().isdigit() else raw
    return values


class ConfigRefused(ConfigInvalid):
    """A change to the configuration (Connect panel) that would make it invalid: nothing is written."""


class RoleRaiseRefused(ConfigRefused):
    """A change over HTTP would make this ComfyUI a designer's: only the file or the environment may."""

    code = "forbidden_for_role"


# What the Connect panel may change. store_path is not: a folder a request names would let a caller
# write anywhere this ComfyUI may write; it is set in the file or the environment only.
EDITABLE = ("store", "s3_bucket", "s3_prefix", "s3_sse", "s3_kms_key_id", "s3_max_concurrency", "region",
            "sagemaker_role_arn", "worker_image_uri", "notification_topic_arn", "max_instances",
            "allowed_instance_types", "allowed_hosts",
            "token", "share_host", "download_allowed_hosts", "role", "display_name", "execution_retention_days",
            "webhook_allowed_hosts", "webhook_retry_seconds", "webhook_timeout_seconds")
# What "replace the file" keeps unless the changes name it: what the panel cannot set or cannot show.
KEPT_ON_REPLACE = ("store_path", "token")


def file_values(config_dir: Path) -> dict:
    """The file's own values (no environment); {} when there is no file. ConfigInvalid when unreadable."""
    path = Path(config_dir) / CONFIG_FILE
    try:
        if not path.exists():
            return {}
        if not path.is_file():
            raise ConfigInvalid(f"{path.name} is not a regular file")
        data = json.loads(path.read_text(encoding="utf-8"))
    except ConfigInvalid:
        raise
    except (OSError, ValueError, RecursionError) as e:
        raise ConfigInvalid(f"{path.name} is not readable JSON: {e}") from None
    if not isinstance(data, dict):
        raise ConfigInvalid(f"{path.name} must hold a JSON object")
    return data


def from_environment(environ: Mapping[str, str] | None = None) -> list[str]:
    """The keys an environment variable sets (they win over the file)."""
    environ = os.environ if environ is None else environ
    return [k for k in KEYS if ENV_PREFIX + k.upper() in environ]


def load(config_dir: Path | None, environ: Mapping[str, str] | None = None) -> Config:
    """Read `config_dir/config.json` (if any) under the environment's overrides.

    Raises ConfigInvalid naming the key and its source for a bad value or a
    file that is not a JSON object.
    """
    data = file_values(config_dir) if config_dir is not None else {}
    return build(data, CONFIG_FILE, config_dir, environ)


def build(data: Mapping, source: str, config_dir: Path | None, environ: Mapping[str, str] | None = None) -> Config:
    """The configuration `data` (the file's values) makes under the environment's overrides."""
    environ = os.environ if environ is None else environ
    _validate(data, source)  # the file's own values must be valid, also where the environment overrides them
    env = _environment_values(environ)
    if env:
        _validate(env, "environment")
    cfg = _validate({**data, **env}, source)
    if not cfg.store_path and config_dir is not None:
        cfg = cfg.model_copy(update={"store_path": str(Path(config_dir) / "store")})
    if cfg.store == "s3" and not cfg.s3_bucket:
        raise ConfigInvalid("store is s3 but s3_bucket is not set")
    return cfg


def fail_safe(environ: Mapping[str, str] | None = None) -> Config:
    """What runs when the configuration cannot be read: the least rights. An artist's ComfyUI (unless the
    environment says designer), on loopback only, with the environment's values where each one is valid.
    A token variable that is set but invalid locks every guarded route (a token nobody knows)."""
    environ = os.environ if environ is None else environ
    values: dict[str, object] = {"role": "artist"}
    for key, value in _environment_values(environ).items():
        try:
            Config.model_validate({key: value})
        except ValidationError:
            if key == "token":
                values["token"] = secrets.token_urlsafe(32)
            continue
        values[key] = value
    if values.get("store") == "s3" and not values.get("s3_bucket"):
        values.pop("store")
    return Config.model_validate(values)


# --- writing ---------------------------------------------------------------------------------------------

_in_process = threading.Lock()  # flock is per open file: threads of one process need their own lock too


@contextmanager
def _locked(config_dir: Path) -> Iterator[None]:
    """The one writer of config.json at a time, across threads and processes (the Connect panel, aws setup)."""
    import fcntl

    Path(config_dir).mkdir(parents=True, exist_ok=True)
    with _in_process:
        fd = os.open(Path(config_dir) / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)


def _write(config_dir: Path, data: dict) -> None:
    """Under the lock: a temp file of this writer's own (it may hold the token: 0600), flushed to disk, then
    renamed over config.json. Temp files a killed writer left are removed first: none is live while we hold
    the lock."""
    directory = Path(config_dir)
    for stale in directory.glob(f".{CONFIG_FILE}.*.tmp"):
        stale.unlink(missing_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{CONFIG_FILE}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(json.dumps(data, indent=2) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, directory / CONFIG_FILE)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def preview(config_dir: Path, changes: object, replace: bool = False, environ: Mapping[str, str] | None = None, *,
            acting_role: str | None = None, last_good: Mapping | None = None) -> tuple[dict, Config]:
    """The file's values with `changes` applied, and the configuration they make; nothing written.

    `replace` starts from nothing but what the panel cannot set or show (KEPT_ON_REPLACE), taken from the
    file, or from `last_good` (the values last read from it) when it cannot be read. `acting_role` is the
    role of the ComfyUI asking over HTTP: an artist's (or one running fail-safe) cannot make itself a
    designer's; None is the file's owner (the CLI)."""
    if not isinstance(changes, dict):
        raise ConfigRefused("the changes must be an object of configuration keys")
    for key in changes:
        if key not in EDITABLE:
            raise ConfigRefused(f"{key} cannot be changed here" if key in KEYS
                                else f"unknown configuration key {key!r}")
    try:
        current = file_values(config_dir)
    except ConfigInvalid as err:
        if not replace:
            raise ConfigRefused(f"{err.message}: fix the file, or replace it with these settings") from None
        current = dict(last_good or {})
    data = {k: current[k] for k in KEPT_ON_REPLACE if k in current} if replace else dict(current)
    for key, value in changes.items():
        if value is None or (key == "token" and value == ""):
            data.pop(key, None)
        else:
            data[key] = list(value) if isinstance(value, tuple) else value
    try:
        cfg = build(data, "the change", config_dir, environ)
    except ConfigInvalid as err:
        raise ConfigRefused(err.message) from None
    if acting_role is not None and acting_role != "designer" and cfg.role == "designer":
        raise RoleRaiseRefused("only config.json or the COMFYUI_SAGEMAKER_ROLE environment variable can make this "
                               "ComfyUI a designer's; a change from the page cannot")
    return data, cfg


def update(config_dir: Path, changes: object, replace: bool = False, environ: Mapping[str, str] | None = None, *,
           acting_role: str | None = None, last_good: Mapping | None = None) -> tuple[dict, Config]:
    """Change the file's values (a None value removes the key; `replace` as in preview) and write them, only if
    the result is a valid configuration. Read, check and write happen under one lock, so two changes at once
    both land, one after the other. Returns the values written and the configuration they make."""
    with _locked(config_dir):
        data, cfg = preview(config_dir, changes, replace, environ, acting_role=acting_role, last_good=last_good)
        _write(config_dir, data)
    return data, cfg
