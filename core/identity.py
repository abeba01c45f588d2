"""Who this ComfyUI is on a shared store: a stable instance id, a display name, and (with ComfyUI's
--multi-user) the ComfyUI user a request comes from. Records that belong to someone (executions)
carry their owner; keys built from an owner use its `key`.

The instance id is made once and kept in the extension's own folder (`instance.json` beside
config.json), so it survives restarts and is distinct for every ComfyUI, even two on one machine.
"""

from __future__ import annotations

import json
import os
import re
import socket
import uuid
from dataclasses import dataclass
from pathlib import Path

from .records import OwnerJson

INSTANCE_FILE = "instance.json"
KEY_PART = re.compile(r"[^A-Za-z0-9._-]")


@dataclass(frozen=True)
class Owner:
    instance: str
    name: str
    user: str | None = None  # ComfyUI's user id under --multi-user

    @property
    def key(self) -> str:
        """A store-key segment naming this owner ([A-Za-z0-9._-] only)."""
        user = KEY_PART.sub("_", self.user)[:64] if self.user else ""
        return f"{self.instance}.{user}" if user else self.instance

    def to_json(self) -> OwnerJson:
        return {"instance": self.instance, "name": self.name, "user": self.user}

    @classmethod
    def from_json(cls, data: object) -> Owner | None:
        """An owner read from a record; None for records an older version wrote (unowned)."""
        if not isinstance(data, dict) or not isinstance(data.get("instance"), str):
            return None
        user = data.get("user")
        return cls(data["instance"], str(data.get("name") or data["instance"]), user if isinstance(user, str) else None)


def instance_id(folder: Path) -> str:
    """This ComfyUI's id, made on first use (exclusively: two processes starting at once agree)."""
    path = Path(folder) / INSTANCE_FILE
    for _ in range(3):
        try:
            data = json.loads(path.read_text())
            if isinstance(data.get("instance"), str) and re.fullmatch(r"[a-z0-9]{12}", data["instance"]):
                return data["instance"]
        except (OSError, ValueError, AttributeError):
            pass
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            continue  # another process made it: read that one
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps({"instance": uuid.uuid4().hex[:12]}))
    return json.loads(path.read_text())["instance"]


def may_change_execution(role: str, mine: bool, shared: bool = False) -> bool:
    """Who may cancel (or otherwise change) a run: its owner, always; someone else's only a designer's
    ComfyUI used by one person. Where several people act through one face as one role (`shared`: ComfyUI's
    --multi-user, whose users all get the ComfyUI's role and are told apart by a header ComfyUI does not
    authenticate; the gateway, whose callers share its token), each changes only their own runs."""
    return mine or (role == "designer" and not shared)


def display_name(configured: str) -> str:
    return configured or socket.gethostname() or "ComfyUI"
