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

    def public(self) -> dict:
        """What may be shown to a browser: never the token."""
        d = asdict(self)
        d["allowed_hosts"] = list(self.allowed_hosts)
        d["download_allowed_hosts"] = list(self.download_allowed_hosts)
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
    if key == "max_instances":
        try:
            n = int(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise ConfigInvalid(f"{where} must be a whole number, got {value!r}") from None
        if n < 1:
            raise ConfigInvalid(f"{where} must be at least 1, got {n}")
        return n
    if key in ("allowed_hosts", "download_allowed_hosts"):
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


def load(config_dir: Path | None, environ: Mapping[str, str] | None = None) -> Config:
    """Read `config_dir/config.json` (if any) under the environment's overrides.

    Raises ConfigInvalid naming the key and its source for a bad value or a
    file that is not a JSON object.
    """
    environ = os.environ if environ is None else environ
    keys = {f.name for f in fields(Config)}
    values: dict[str, object] = {}
    if config_dir is not None:
        path = Path(config_dir) / CONFIG_FILE
        if path.exists():
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as e:
                raise ConfigInvalid(f"{path.name} is not readable JSON: {e}") from None
            if not isinstance(data, dict):
                raise ConfigInvalid(f"{path.name} must hold a JSON object")
            unknown = sorted(set(data) - keys)
            if unknown:
                raise ConfigInvalid(f"{path.name} has unknown keys: {', '.join(unknown)}")
            for k, v in data.items():
                values[k] = _coerce(k, v, path.name)
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
