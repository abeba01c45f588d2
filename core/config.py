"""The configuration: the one module that reads it.

Environment variables `COMFYUI_SAGEMAKER_<KEY>` win over `config.json` in the
extension's directory, which the ComfyUI face passes in as
`folder_paths.get_system_user_directory("sagemaker")` (a system user folder:
ComfyUI's /userdata API cannot read or write it). Credentials are never a key:
they come only from boto3's own chain.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from .errors import ConfigInvalid

ENV_PREFIX = "COMFYUI_SAGEMAKER_"
CONFIG_FILE = "config.json"
STORES = ("folder", "s3")
ROLES = ("designer", "artist")


@dataclass(frozen=True)
class Config:
    store: str = "folder"
    store_path: str = ""  # folder store; default: <config dir>/store
    s3_bucket: str = ""
    s3_prefix: str = ""
    s3_sse: str = ""  # server-side encryption: "" (the bucket's default), "AES256" or "aws:kms"
    s3_kms_key_id: str = ""
    s3_max_concurrency: int = 10  # parallel parts per transfer
    region: str = ""
    sagemaker_role_arn: str = ""
    worker_image_uri: str = ""
    max_instances: int = 4
    allowed_hosts: tuple[str, ...] = field(default_factory=tuple)
    token: str = ""
    # Model downloads may reach these hosts (host or host:port) even on loopback or private addresses.
    download_allowed_hosts: tuple[str, ...] = field(default_factory=tuple)
    # Team mode: what this ComfyUI may do on a shared store, and how it is named to the others.
    role: str = "designer"  # designer (publish, deploy, delete) | artist (read and run)
    display_name: str = ""  # default: this machine's host name
    execution_retention_days: int = 30  # execution records and their outputs; applied by a designer
    # Webhooks (core/webhooks.py): hosts (host or host:port) a webhook_url may name even on loopback or private
    # addresses; how long one delivery is retried in all, and how long one attempt may take.
    webhook_allowed_hosts: tuple[str, ...] = field(default_factory=tuple)
    webhook_retry_seconds: int = 900
    webhook_timeout_seconds: int = 10

    def public(self) -> dict:
        """What may be shown to a browser: never the token."""
        d = asdict(self)
        d["allowed_hosts"] = list(self.allowed_hosts)
        d["download_allowed_hosts"] = list(self.download_allowed_hosts)
        d["webhook_allowed_hosts"] = list(self.webhook_allowed_hosts)
        d["token"] = bool(self.token)
        return d


def _coerce(key: str, value: object, source: str) -> object:
    where = f"{key} (from {source})"
    if key == "s3_max_concurrency":
        try:
            n = int(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise ConfigInvalid(f"{where} must be a whole number, got {value!r}") from None
        if not 1 <= n <= 64:
            raise ConfigInvalid(f"{where} must be from 1 to 64, got {n}")
        return n
    if key == "s3_sse" and value not in ("", "AES256", "aws:kms"):
        raise ConfigInvalid(f"{where} must be empty, AES256 or aws:kms, got {value!r}")
    if key == "execution_retention_days":
        try:
            n = int(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise ConfigInvalid(f"{where} must be a whole number of days, got {value!r}") from None
        if n < 1:
            raise ConfigInvalid(f"{where} must be at least 1, got {n}")
        return n
    if key in ("webhook_retry_seconds", "webhook_timeout_seconds"):
        try:
            n = int(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise ConfigInvalid(f"{where} must be a whole number of seconds, got {value!r}") from None
        if not 1 <= n <= 86400:
            raise ConfigInvalid(f"{where} must be from 1 to 86400 seconds, got {n}")
        return n
    if key == "max_instances":
        try:
            n = int(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise ConfigInvalid(f"{where} must be a whole number, got {value!r}") from None
        if n < 1:
            raise ConfigInvalid(f"{where} must be at least 1, got {n}")
        return n
    if key in ("allowed_hosts", "download_allowed_hosts", "webhook_allowed_hosts"):
        if isinstance(value, str):
            value = [h for h in value.replace(",", " ").split() if h]
        if not isinstance(value, list) or not all(isinstance(h, str) for h in value):
            raise ConfigInvalid(f"{where} must be a list of host names")
        return tuple(h.strip().lower() for h in value)
    if not isinstance(value, str):
        raise ConfigInvalid(f"{where} must be a string, got {type(value).__name__}")
    if key == "store" and value not in STORES:
        raise ConfigInvalid(f"{where} must be one of {', '.join(STORES)}, got {value!r}")
    if key == "role" and value not in ROLES:
        raise ConfigInvalid(f"{where} must be designer or artist, got {value!r}")
    if key == "display_name" and (len(value) > 64 or any(ord(c) < 32 for c in value)):
        raise ConfigInvalid(f"{where} must be at most 64 printable characters")
    return value


class ConfigRefused(ConfigInvalid):
    """A change to the configuration (Connect panel) that would make it invalid: nothing is written."""


# What the Connect panel may change. store_path is not: a folder a request names would let a caller
# write anywhere this ComfyUI may write; it is set in the file or the environment only.
EDITABLE = ("store", "s3_bucket", "s3_prefix", "s3_sse", "s3_kms_key_id", "s3_max_concurrency", "region",
            "sagemaker_role_arn", "worker_image_uri", "max_instances", "allowed_hosts", "token",
            "download_allowed_hosts", "role", "display_name", "execution_retention_days", "webhook_allowed_hosts",
            "webhook_retry_seconds", "webhook_timeout_seconds")


def file_values(config_dir: Path) -> dict:
    """The file's own values (no environment); {} when there is no file. ConfigInvalid when unreadable."""
    path = Path(config_dir) / CONFIG_FILE
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ConfigInvalid(f"{path.name} is not readable JSON: {e}") from None
    if not isinstance(data, dict):
        raise ConfigInvalid(f"{path.name} must hold a JSON object")
    return data


def from_environment(environ: Mapping[str, str] | None = None) -> list[str]:
    """The keys an environment variable sets (they win over the file)."""
    environ = os.environ if environ is None else environ
    return [f.name for f in fields(Config) if ENV_PREFIX + f.name.upper() in environ]


def update(config_dir: Path, changes: dict, replace: bool = False, environ: Mapping[str, str] | None = None) -> Config:
    """Change the file's values (a None value removes the key; `replace` starts from nothing) and write it
    atomically, only if the result is a valid configuration. Returns the configuration it makes."""
    data, cfg = preview(config_dir, changes, replace, environ)
    path = Path(config_dir) / CONFIG_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{CONFIG_FILE}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # it may hold the token
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)
    return cfg


def preview(config_dir: Path, changes: dict, replace: bool = False,
            environ: Mapping[str, str] | None = None) -> tuple[dict, Config]:
    """The file's values with `changes` applied, and the configuration they make; nothing written."""
    if not isinstance(changes, dict):
        raise ConfigRefused("the changes must be an object of configuration keys")
    for key in changes:
        if key not in EDITABLE:
            raise ConfigRefused(f"{key} cannot be changed here" if key in {f.name for f in fields(Config)}
                                else f"unknown configuration key {key!r}")
    try:
        data = {} if replace else file_values(config_dir)
    except ConfigInvalid as err:
        raise ConfigRefused(f"{err.message}: fix the file, or replace it with these settings") from None
    for key, value in changes.items():
        if value is None or (key == "token" and value == ""):
            data.pop(key, None)
        else:
            data[key] = list(value) if isinstance(value, tuple) else value
    try:
        cfg = _build(data, "the change", config_dir, environ)
    except ConfigRefused:
        raise
    except ConfigInvalid as err:
        raise ConfigRefused(err.message) from None
    return data, cfg


def load(config_dir: Path | None, environ: Mapping[str, str] | None = None) -> Config:
    """Read `config_dir/config.json` (if any) under the environment's overrides.

    Raises ConfigInvalid naming the key and its source for a bad value or a
    file that is not a JSON object.
    """
    data = file_values(config_dir) if config_dir is not None else {}
    return _build(data, CONFIG_FILE, config_dir, environ)


def _build(data: dict, source: str, config_dir: Path | None, environ: Mapping[str, str] | None) -> Config:
    environ = os.environ if environ is None else environ
    keys = {f.name for f in fields(Config)}
    values: dict[str, object] = {}
    unknown = sorted(set(data) - keys)
    if unknown:
        raise ConfigInvalid(f"{source} has unknown keys: {', '.join(unknown)}")
    for k, v in data.items():
        values[k] = _coerce(k, v, source)
    for k in keys:
        env_key = ENV_PREFIX + k.upper()
        if env_key in environ:
            values[k] = _coerce(k, environ[env_key], env_key)
    cfg = Config(**values)  # type: ignore[arg-type]
    if not cfg.store_path and config_dir is not None:
        cfg = Config(**{**asdict(cfg), "store_path": str(Path(config_dir) / "store")})
    if cfg.store == "s3" and not cfg.s3_bucket:
        raise ConfigInvalid("store is s3 but s3_bucket is not set")
    return cfg
